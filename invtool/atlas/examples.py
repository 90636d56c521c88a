"""Dataset examples: the parts of real images that drive each unit hardest.

One forward-only pass over a folder, in batches: each image is resized so that its shorter side is
`size` and centre-cropped to size x size (so that a batch stacks), and for every layer and channel the
pass keeps each image's maximum over positions and where it lies. A channel's examples are the K images
with the highest maxima (each image once), each cropped to the unit's receptive field around that
position; the part of the field past the image's border is grey.

The pass runs on ONNX Runtime where it can (`engine="auto"`: the CPU, max pooling, onnxruntime
installed), since on the CPU it is faster than the rebuilt torch graph (`tests/bench/bench_atlas.py`
measures both); on the rebuilt graph otherwise (a GPU torch sees, average pooling).

Example:
    >>> paths, skipped = scan_images("examples/images")
    >>> maxima, stats = activation_maxima(model, paths, ["conv3_1"], size=224)
    >>> top_examples(*maxima["conv3_1"], channel=5, k=9)     # [(image index, value, y, x), ...]
"""
import hashlib
import time
from pathlib import Path

import numpy as np
import onnx
import torch

from ..errors import InvtoolError
from ..image import read_image, read_input
from ..param import resize_image

ENGINES = ("auto", "ort", "torch")
GREY = 0.5


def scan_images(folder) -> tuple[list[Path], list[dict]]:
    """The readable image files of `folder` (sorted by name; hidden files and folders left out) and the
    unreadable ones, each `{"file", "reason"}`; no readable image at all is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvtoolError(f"--images {folder}: no such folder; give a folder of images")
    readable, skipped = [], []
    for path in sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file()):
        try:
            read_image(path)
            readable.append(path)
        except InvtoolError as e:
            skipped.append({"file": path.name, "reason": str(e).removeprefix(f"{path}: ")})
    if not readable:
        raise InvtoolError(f"--images {folder} holds no image OpenCV can read ({len(skipped)} other files); "
                           "give a folder of PNG or JPEG images")
    return readable, skipped


def load_example(path, size: int, channels: int = 3) -> torch.Tensor:
    """`[1, channels, size, size]`: the image (as luminance for a grey model) resized so its shorter side is
    `size`, centre-cropped."""
    x, _ = read_input(path, channels=channels)
    h, w = x.shape[-2:]
    k = size / min(h, w)
    rh, rw = max(size, round(h * k)), max(size, round(w * k))
    x = resize_image(x, rh, rw)
    top, left = (rh - size) // 2, (rw - size) // 2
    return x[..., top:top + size, left:left + size]


def choose_engine(model, engine: str = "auto") -> str:
    """"ort" or "torch" for `engine`: auto takes ONNX Runtime on the CPU with max pooling when installed, unless
    the file fixes the batch or the image size (ONNX Runtime would refuse a batch of other sizes)."""
    if engine not in ENGINES:
        raise InvtoolError(f"unknown examples engine {engine!r}; use one of {', '.join(ENGINES)}")
    if engine != "auto":
        return engine
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "torch"
    n, _, h, w = model.declared_shape
    fixed = any(d is not None for d in (n, h, w))
    return "ort" if model.device.type == "cpu" and model.pool == "max" and not fixed else "torch"


def activation_maxima(model, paths, tensors, *, size: int, batch: int = 8, engine: str = "auto"):
    """For each tensor, `(values [N, C], positions [N, C, 2])`: each image's maximum per channel and its
    (y, x); and the pass's stats (`engine`, `images`, `seconds` in the forward passes, `images_per_sec`)."""
    engine = choose_engine(model, engine)
    forward = _ort_forward(model, tensors) if engine == "ort" else _torch_forward(model, tensors)
    values = {t: [] for t in tensors}
    positions = {t: [] for t in tensors}
    seconds = 0.0
    for i in range(0, len(paths), batch):
        x = torch.cat([load_example(p, size, model.in_channels) for p in paths[i:i + batch]])
        t0 = time.perf_counter()
        outs = forward(x)
        seconds += time.perf_counter() - t0
        for t, f in zip(tensors, outs):
            n, c, _, w = f.shape
            flat = f.reshape(n, c, -1)
            best = flat.argmax(axis=2)
            values[t].append(np.take_along_axis(flat, best[..., None], axis=2)[..., 0])
            positions[t].append(np.stack([best // w, best % w], axis=-1))
    stats = {"engine": engine, "images": len(paths), "seconds": round(seconds, 3),
             "images_per_sec": round(len(paths) / seconds, 2) if seconds else None}
    return {t: (np.concatenate(values[t]), np.concatenate(positions[t])) for t in tensors}, stats


def _torch_forward(model, tensors):
    def forward(x):
        with torch.no_grad():
            feats = model.features(x, tensors)
        return [feats[t].float().cpu().numpy() for t in tensors]
    return forward


def _ort_forward(model, tensors):
    """ONNX Runtime on the graph cut down to `tensors`, fed what the graph's input gets (network_input)."""
    from ..runtime import ort_session

    session = ort_session(_cut(model.proto, model.input_name, tensors).SerializeToString())

    def forward(x):
        with torch.no_grad():
            feed = model.network_input(x, torch.float32).cpu().numpy().astype(model.declared_dtype)
        return session.run(list(tensors), {model.input_name: feed})
    return forward


def _cut(proto: onnx.ModelProto, input_name: str, tensors) -> onnx.ModelProto:
    """The graph down to the nodes `tensors` need, with those as its outputs (so nothing past them runs)."""
    from ..onnx.graph import needed_nodes

    nodes = needed_nodes(proto.graph, tensors)
    used = {i for node in nodes for i in node.input}
    graph = onnx.helper.make_graph(
        nodes, proto.graph.name, [i for i in proto.graph.input if i.name == input_name],
        [onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in tensors],
        [t for t in proto.graph.initializer if t.name in used])
    return onnx.helper.make_model(graph, opset_imports=proto.opset_import, ir_version=proto.ir_version)


def top_examples(values: np.ndarray, positions: np.ndarray, channel: int, k: int) -> list[tuple[int, float, int, int]]:
    """The `k` images with the highest maxima of `channel`, best first (ties: the earlier file):
    `(image index, value, y, x)`."""
    order = np.argsort(-values[:, channel], kind="stable")[:k]
    return [(int(i), float(values[i, channel]), int(positions[i, channel, 0]), int(positions[i, channel, 1]))
            for i in order]


def crop(image: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """The `(top, left, bottom, right)` box of `image` [1, C, H, W]; outside the image, grey."""
    top, left, bottom, right = box
    h, w = image.shape[-2:]
    out = torch.full((1, image.shape[1], bottom - top, right - left), GREY)
    t, l, b, r = max(top, 0), max(left, 0), min(bottom, h), min(right, w)
    if t < b and l < r:
        out[..., t - top:b - top, l - left:r - left] = image[..., t:b, l:r]
    return out


def file_digest(path) -> str:
    """sha256 of a file's bytes (the examples' cache key holds every image's)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
