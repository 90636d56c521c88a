"""FeatureModel: any ONNX CNN as a differentiable map from an image to named layers.

Images are `[N, C, H, W]` in [0, 1] with C the channels the network reads, taken from the model: 3 (RGB) for
most CNNs, 1 (grey) for OCR, document, medical and MNIST-like networks (`FeatureModel.in_channels`).

Example:
    >>> model = load_model("models/vgg16.onnx")
    >>> x = torch.rand(1, 3, 128, 128, requires_grad=True)
    >>> feats = model.features(x, ["conv1_1", "pool2"])      # computes nothing past pool2
    >>> feats["pool2"].sum().backward()                     # gradients reach the image
"""
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from .defaults import DEFAULT_MODEL
from .errors import InvtoolError, close_matches
from .onnx.graph import build, initializers
from .onnx.ops.quant import float_aliases
from .preprocess import Preprocess, resolve_preprocess


@dataclass(frozen=True)
class LayerInfo:
    """One addressable tensor: its ONNX name, other names for it, the op producing it, its shape."""

    name: str
    aliases: tuple[str, ...]
    op: str
    shape: tuple[int, ...] | None  # for a 1-image batch at the size asked; None when it cannot be had


class FeatureModel:
    """An ONNX model whose tensors are addressable by name and differentiable w.r.t. the input image.

    The image goes in as `[N, C, H, W]` in [0, 1], C = `in_channels` (3: RGB, 1: grey, read from the
    graph); `preprocess` (if any) maps it to what the network expects, and a channels-last input
    (tf2onnx) is transposed for it. For each set of requested names a module holding only the nodes
    they need is built once and cached.
    """

    def __init__(self, proto: onnx.ModelProto, *, path: str | None = None, sha256: str | None = None,
                 preprocess: Preprocess | None = None, pool: str = "max", padding: str = "zeros", device=None,
                 weights: dict[str, torch.Tensor] | None = None, dtype=None, channels=None):
        if pool not in ("max", "avg"):
            raise InvtoolError(f"unknown pool {pool!r}; use 'max' or 'avg'")
        if padding not in ("zeros", "circular"):
            raise InvtoolError(f"unknown padding {padding!r}; use 'zeros' or 'circular'")
        self.proto, self.path, self.sha256, self.pool, self.padding = proto, path, sha256, pool, padding
        self.metadata = {p.key: p.value for p in proto.metadata_props}
        self.device = resolve_device(device)
        stored = weights if weights is not None else initializers(proto)
        self._producer = _computed_tensors(proto, stored)
        self.dtype = self._compute_dtype(dtype)
        self._weights = weights if weights is not None else {
            k: _channels_last(_in_dtype(v, self.dtype).to(self.device)) for k, v in stored.items()}
        self.input_name, self.channels_last, self.in_channels = _image_input(proto, self._weights)
        if preprocess is not None:
            preprocess.check_channels(self.in_channels)
        self._pre = (None if preprocess is None or preprocess.is_identity()
                     else preprocess.module().to(self.device))   # in float32: see network_input
        self.preprocess = preprocess
        self.aliases: dict[str, str] = {**float_aliases(proto), **json.loads(self.metadata.get("invtool.aliases", "{}"))}
        # {tensor: the only channels read} (`variant(channels=...)`): the others may be computed as zeros
        self.narrow = self._narrow(channels or {})
        self._modules: dict[tuple[str, ...], torch.nn.Module] = {}
        self._min_sizes: dict[frozenset[str], int] = {}
        self._variants: dict[tuple, FeatureModel] = {self._key(pool, padding, self.narrow): self}   # shared by them

    def _compute_dtype(self, dtype) -> torch.dtype:
        """`resolve_dtype`'s, except for a graph that quantises its activations (QDQ pairs, QLinear ops): its
        integer arithmetic is emulated as ONNX Runtime computes it, in float32, so it computes in float32 ("auto"
        included) and a 16-bit dtype asked for is a one-line error."""
        ops = sorted({op for op in self._producer.values() if op in QUANTISED_OPS or op.startswith("QLinear")})
        if not ops:
            return resolve_dtype(dtype, self.device)
        if dtype != "auto" and resolve_dtype(dtype) != torch.float32:
            asked = str(dtype).removeprefix("torch.")
            raise InvtoolError(f"{self.path or 'this model'} quantises its activations ({', '.join(ops[:3])}), which "
                               f"compute as ONNX Runtime does, in float32: drop --dtype {asked}")
        return torch.float32

    @property
    def dtype_name(self) -> str:
        """The compute dtype as records and cache keys write it: "float32", "bfloat16", "float16"."""
        return str(self.dtype).removeprefix("torch.")

    # --- names -----------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """Every addressable tensor (node outputs that depend on the image), in graph order."""
        return list(self._producer)

    def __contains__(self, name: str) -> bool:
        """Whether `name` is an alias or an addressable tensor of this model."""
        return name in self._producer or self.aliases.get(name) in self._producer

    def resolve(self, name: str) -> str:
        """The ONNX tensor name behind an alias or tensor name; an unknown name lists close matches."""
        if name in self:
            return name if name in self._producer else self.aliases[name]
        arch = self.metadata.get("invtool.arch", "")
        if arch.endswith("-conv") and name.startswith(("fc", "classifier")):
            raise InvtoolError(f"{self.path} has no fully connected layer {name!r}: it is {arch}, the convolutional "
                               "part only; use a conv/pool layer or a model exported with its classifier")
        raise InvtoolError(f"unknown layer {name!r}{close_matches(name, [*self.aliases, *self._producer])}; "
                           f"`invtool layers {self.path or 'MODEL'}` lists them")

    def card(self) -> dict:
        """What a run record says of the model: file, sha256, metadata, and the images it reads."""
        card = {"path": str(self.path), "sha256": self.sha256, "metadata": dict(self.metadata),
                "input_channels": self.in_channels, "stored_dtype": stored_dtype(self.proto),
                "compute_dtype": self.dtype_name}
        if self.in_channels == 1:
            from .image import LUMA
            card["grey_input"] = (f"colour images are given as their luminance Y = {LUMA[0]} R + {LUMA[1]} G + "
                                  f"{LUMA[2]} B (BT.601)")
        return card

    # --- computing -------------------------------------------------------------------------------
    def features(self, x: torch.Tensor, names) -> dict[str, torch.Tensor]:
        """The tensors `names` (aliases or ONNX names) for images `x` [N, C, H, W] in [0, 1] (C = in_channels)."""
        if isinstance(names, str):
            names = [names]
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.in_channels:
            shape = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InvtoolError(f"image tensor must be {self.image_kind} in [0, 1], got {shape}"
                               + ("; `invtool.image.to_channels` converts an image" if isinstance(x, torch.Tensor)
                                  and x.dim() == 4 and x.shape[1] in (1, 3) else ""))
        wanted = {n: self.resolve(n) for n in names}
        key = tuple(sorted(set(wanted.values())))
        values = dict(zip(key, self.module(key)(self.network_input(x))))
        return {n: _in_dtype(values[t], torch.float32) for n, t in wanted.items()}   # losses in float32

    @property
    def declared_shape(self) -> list:
        """The image input's `[N, C, H, W]` as the file declares it, None where a dimension is symbolic (ONNX
        Runtime holds a model to these; the rebuilt module takes any batch and size its ops allow)."""
        dims = _dims(self._image_info)
        return [dims[0], dims[3], dims[1], dims[2]] if self.channels_last else dims

    @property
    def declared_dtype(self) -> np.dtype:
        """The image input's element type as the file declares it (what ONNX Runtime must be fed), whatever the
        compute dtype."""
        return onnx.helper.tensor_dtype_to_np_dtype(self._image_info.type.tensor_type.elem_type)

    @property
    def _image_info(self) -> onnx.ValueInfoProto:
        return next(i for i in self.proto.graph.input if i.name == self.input_name)

    @property
    def image_kind(self) -> str:
        """How messages name the images this model reads: `[N, 3, H, W] RGB` or `[N, 1, H, W] grey`."""
        return f"[N, {self.in_channels}, H, W] " + ("grey" if self.in_channels == 1 else "RGB")

    def blank(self, n: int, h: int, w: int, fill: float = 0.0) -> torch.Tensor:
        """A flat batch of images this model reads, `[n, in_channels, h, w]` on its device (for probes)."""
        return torch.full((n, self.in_channels, h, w), fill, device=self.device)

    def network_input(self, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """What the ONNX graph's input gets for images `x` (in [0, 1]): preprocessed (in float32: Caffe's
        0-255 values would lose their fractions in a 16-bit float), in `dtype` (default the compute dtype), on the
        device and channels-last where the graph wants it; ONNX Runtime, which runs the graph alone, is fed this
        too, in float32."""
        x = x.to(self.device, torch.float32)
        if self._pre is not None:
            x = self._pre(x)
        x = x.to(dtype or self.dtype)
        return x.permute(0, 2, 3, 1) if self.channels_last else _channels_last(x)

    def module(self, tensor_names: tuple[str, ...]) -> torch.nn.Module:
        """The (cached) module computing exactly these ONNX tensors from the network's input."""
        if tensor_names not in self._modules:
            self._modules[tensor_names] = build(self.proto, list(tensor_names), pool=self.pool, padding=self.padding,
                                                weights=self._weights, dtype=self.dtype,
                                                channels=self.narrow).to(self.device)
        return self._modules[tensor_names]

    # --- geometry ------------------------------------------------------------------------------
    def describe(self, size=224) -> list[LayerInfo]:
        """Every addressable tensor with its aliases, op and output shape for an input of `size`."""
        h, w = (size, size) if isinstance(size, int) else size
        shapes = _inferred_shapes(self.proto, self.input_name, (1, self.in_channels, h, w), self.channels_last)
        unknown = [n for n in self.names if n not in shapes]
        if unknown:  # inference could not tell: a dry run, one tensor at a time past any failure
            with torch.no_grad():
                x = self.blank(1, h, w)
                try:
                    shapes.update({n: tuple(t.shape) for n, t in self.features(x, unknown).items()})
                except Exception:
                    for n in unknown:
                        try:
                            shapes[n] = tuple(self.features(x, [n])[n].shape)
                        except Exception:
                            pass
        by_tensor: dict[str, list[str]] = {}
        for alias, t in self.aliases.items():
            by_tensor.setdefault(t, []).append(alias)
        return [LayerInfo(n, tuple(by_tensor.get(n, ())), self._producer[n], shapes.get(n)) for n in self.names]

    @property
    def layers(self) -> list[LayerInfo]:
        """`describe()` at 224x224, the size these networks were trained at."""
        return self.describe(224)

    def fixed_size(self, names) -> tuple[int, int] | None:
        """The input size some of these layers need (fully connected ones), or None if any size works."""
        fixed = json.loads(self.metadata.get("invtool.fixed_input", "null"))
        if fixed and {self.resolve(n) for n in names} & {self.resolve(n) for n in fixed["layers"]}:
            return tuple(fixed["size"])
        return None

    def min_size(self, names) -> int:
        """The smallest square input side for which every one of `names` can be computed (cached)."""
        key = frozenset(self.resolve(n) for n in names)
        if key not in self._min_sizes:
            self._min_sizes[key] = self._search_min_size(list(key))
        return self._min_sizes[key]

    def _search_min_size(self, names) -> int:
        if fixed := self.fixed_size(names):
            return max(fixed)

        def works(s):
            try:
                with torch.no_grad():
                    feats = self.features(self.blank(1, s, s), names)
                return all(min(f.shape[2:], default=1) >= 1 for f in feats.values())
            except RuntimeError as e:
                if _not_about_size(e):   # another size would fail the same way: say why now
                    raise InvtoolError(f"layers {', '.join(names)} cannot be computed{_probe_cause([e])}") from None
                failures.append(e)
                return False

        failures: list[RuntimeError] = []
        lo, hi = 1, 16
        while not works(hi):
            lo, hi = hi + 1, hi * 2
            if hi > 4096:
                raise InvtoolError(f"layers {', '.join(names)} cannot be computed at any input size up to 4096"
                                   + _probe_cause(failures))
        while lo < hi:  # smallest working side in [lo, hi]
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if works(mid) else (mid + 1, hi)
        return hi

    def channels(self, name: str) -> int:
        """Channels (or units, for a fully connected layer) of a layer."""
        s = self.min_size([name])
        with torch.no_grad():
            return self.features(self.blank(1, s, s), [name])[name].shape[1]

    def variant(self, *, pool: str | None = None, padding: str | None = None, channels=None) -> "FeatureModel":
        """This model with other pooling or padding (same graph and weights, no copy); itself if unchanged.

        `channels` ({layer: indices}; {} for none, None to keep this model's) declares that only those channels of
        those layers are read: their other channels may come back as zeros, and a Conv producing such a layer
        computes the listed channels only when nothing else it computes needs the layer (`onnx.graph.build`).
        Objectives on a few channels of the deepest layer (`visualize`, the atlas) skip the rest of its work.

        Example:
            >>> fast = model.variant(channels={"conv4_1": [3, 7]})   # conv4_1's other 510 channels read 0
        """
        narrow = self.narrow if channels is None else self._narrow(channels)
        key = self._key(pool or self.pool, padding or self.padding, narrow)
        if key in self._variants:
            return self._variants[key]
        model = FeatureModel(self.proto, path=self.path, sha256=self.sha256, preprocess=self.preprocess,
                             pool=key[0], padding=key[1], device=self.device, weights=self._weights, dtype=self.dtype,
                             channels=narrow)
        model._variants, model.metadata = self._variants, self.metadata   # one file's
        if narrow:   # one per set of channels (an atlas makes thousands): not kept, but sharing the sizes found
            if key[:2] == (self.pool, self.padding):
                model._min_sizes = self._min_sizes
            return model
        self._variants[key] = model   # kept, with its built modules and measurements, for the next call
        return model

    def _narrow(self, channels: dict) -> dict[str, tuple[int, ...]]:
        """{layer: indices} as {tensor: sorted distinct indices}."""
        return {self.resolve(n): tuple(sorted(set(map(int, cs)))) for n, cs in channels.items()}

    @staticmethod
    def _key(pool: str, padding: str, narrow: dict) -> tuple:
        return pool, padding, tuple(sorted(narrow.items()))

    def to(self, device) -> "FeatureModel":
        """This model and its variants (which share its weights) on `device`."""
        device = resolve_device(device)
        for name, w in self._weights.items():   # in place: the variants hold the same dict
            self._weights[name] = w.to(device)
        for model in self._variants.values():
            model.device = device
            model._pre = model._pre.to(device) if model._pre is not None else None
            model._modules.clear()
        return self


def resolve_device(device=None) -> torch.device:
    """The torch device to run on: `device` if this machine has it, else a one-line error; None: CUDA
    when present, else the CPU. A bare "cuda" becomes the current GPU's "cuda:N", the device its tensors
    report, so that `tensor.device == model.device` holds."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvtoolError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InvtoolError(f"device {device!r} asked for, but this machine has no CUDA GPU that torch can use; "
                               "use --device cpu (or install a CUDA build of torch)")
        if dev.index is not None and dev.index >= count:
            raise InvtoolError(f"device {device!r} is not there: this machine has {count} CUDA GPU(s), "
                               f"cuda:0 to cuda:{count - 1}")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    elif dev.type != "cpu":
        backend = getattr(torch, dev.type, None)
        if backend is None or not getattr(backend, "is_available", lambda: False)():
            raise InvtoolError(f"device {device!r} is not available on this machine; use --device cpu")
    return dev


def resolve_dtype(dtype=None, device=None) -> torch.dtype:
    """The compute dtype: float32 (None, the default: a float16 model's weights are upcast, so gradients are
    well-behaved on the CPU), float16 (native half compute, for CUDA; slow on the CPU), bfloat16 (8-bit mantissa,
    float32's range: the fast path of CPUs with bfloat16 instructions) or "auto": bfloat16 where `device` is a CPU
    that computes it natively (`native_bfloat16`), else float32 (on CUDA: float32 with TF32, torch's default)."""
    names = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype == "auto":
        return torch.bfloat16 if native_bfloat16(resolve_device(device)) else torch.float32
    if dtype is None or dtype in names.values():
        return dtype or torch.float32
    if dtype not in names:
        raise InvtoolError(f"unknown compute dtype {dtype!r}; use float32 (the default), float16, bfloat16 or auto")
    return names[dtype]


def native_bfloat16(device: torch.device) -> bool:
    """Whether `device` is a CPU with bfloat16 instructions (AVX512-BF16 or AMX), where oneDNN's bfloat16
    convolutions run about twice as fast as float32 ones (VGG16 on 2 AVX512-BF16 cores: docs/benchmarks.md);
    without them bfloat16 is emulated, slower than float32."""
    if device.type != "cpu":
        return False
    caps = torch.cpu.get_capabilities()
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


# ops on quantised activations (besides com.microsoft's QLinear*), computed in float32 as ONNX Runtime's kernels do
QUANTISED_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ConvInteger", "MatMulInteger", "QGemm"}


def stored_dtype(proto: onnx.ModelProto) -> str:
    """The type most of the file's weights are stored in (float32, float16, int8, ...), by element count."""
    counts: dict[int, int] = {}
    for t in proto.graph.initializer:
        counts[t.data_type] = counts.get(t.data_type, 0) + int(np.prod(t.dims))
    if not counts:
        return "none"
    return onnx.helper.tensor_dtype_to_np_dtype(max(counts, key=counts.get)).name


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    """A 4-D float tensor (an image batch, a convolution's weights) in channels-last memory order, which oneDNN's
    CPU and cuDNN's convolutions run without reordering: VGG16's forward and backward to conv4_1 took 0.52-0.66 s
    in NCHW and 0.35-0.36 s channels-last for 8 images of 128² on 2 CPU cores (1.1-1.2x at 1 x 256²). The values
    are the same tensor's; only the memory layout differs (sums may round differently)."""
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 and t.is_floating_point() else t


def _in_dtype(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A 32- or 16-bit float tensor in `dtype`; other tensors (integers, float64) as they are."""
    return t.to(dtype) if t.is_floating_point() and t.dtype != torch.float64 else t


def load_model(path, preprocess=None, pool: str = "max", device=None, dtype=None) -> FeatureModel:
    """Load an ONNX CNN for feature extraction and image optimisation.

    Args:
        path: an ONNX file: one exported by `python -m exporters` (preprocessing baked in, aliases in its
            metadata) or any other CNN, whose tensors are then addressed by their ONNX names.
        preprocess: for models that do not bake it in: "imagenet", "caffe", "tf", "none", a
            `Preprocess`, or a dict of its fields (mean, std, scale, bgr). None: the model takes RGB in
            [0, 1] as it is.
        pool: "max", or "avg" to swap every MaxPool for an AveragePool of the same geometry.
        device: torch device; CUDA when available, else CPU.
        dtype: the compute dtype, "float32" (default; a float16 model's weights are upcast) or "float16"
            (native half compute, for CUDA).

    Example:
        >>> model = load_model("resnet18-v1-7.onnx", preprocess="imagenet")
        >>> [l.name for l in model.layers][:3]
    """
    path = Path(path)
    if not path.is_file():
        raise InvtoolError(f"model file not found: {path}"
                           + ("; build the default models with `make export-models`" if path.parent.name == "models" else ""))
    try:
        proto = onnx.load(str(path))  # also reads external weight files next to it
    except Exception as e:
        raise InvtoolError(f"{path} is not a readable ONNX file ({type(e).__name__}); "
                           "is it truncated? re-export or re-download it") from None
    if not proto.graph.node:
        raise InvtoolError(f"{path} is not an ONNX model (no graph nodes); re-export or re-download it")
    pre = None if preprocess is None else resolve_preprocess(preprocess)
    return FeatureModel(proto, path=str(path), sha256=_sha256(path),
                        preprocess=pre, pool=pool, device=device, dtype=dtype)


def as_model(model=DEFAULT_MODEL, preprocess=None, pool: str = "max", device=None, dtype=None) -> FeatureModel:
    """The FeatureModel every command runs on: `model` loaded if it is a path (see `load_model`), else the
    loaded model itself, as a variant sharing its graph and weights when its pooling is not `pool` (so a
    run's record tells the pooling it really used); `preprocess` and `device` serve loading only."""
    if isinstance(model, FeatureModel):
        return model.variant(pool=pool)
    return load_model(model, preprocess=preprocess, pool=pool, device=device, dtype=dtype)


def _computed_tensors(proto: onnx.ModelProto, weights) -> dict[str, str]:
    """Node outputs that depend on the image (not constants or shape arithmetic on them) -> op type."""
    known, computed = set(weights), {}
    for node in proto.graph.node:
        outs = [o for o in node.output if o]
        if all(i == "" or i in known for i in node.input):
            known.update(outs)
        else:
            computed.update((o, node.op_type) for o in outs)
    return computed


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


SHAPE_ONLY = 1024   # initializers with more values than this reach shape inference as typed inputs, without data


def _without_weights(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `proto` whose initializers of more than SHAPE_ONLY values are graph inputs of their type and shape,
    and without value_info (inference recomputes it)."""
    m = onnx.ModelProto(ir_version=proto.ir_version)
    m.opset_import.extend(proto.opset_import)
    m.functions.extend(proto.functions)
    g, src = m.graph, proto.graph
    g.name = src.name
    g.node.extend(src.node)
    g.output.extend(src.output)
    declared = {i.name for i in src.input}
    g.input.extend(src.input)
    for t in src.initializer:
        if int(np.prod(t.dims, dtype=np.int64)) <= SHAPE_ONLY:
            g.initializer.append(t)
        elif t.name not in declared:
            g.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    g.sparse_initializer.extend(src.sparse_initializer)
    return m


def _dims(value_info) -> list:
    return [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]


IMAGE_CHANNELS = (1, 3)   # grey and RGB: what invtool makes images of


def _image_input(proto: onnx.ModelProto, weights) -> tuple[str, bool, int]:
    """(name, channels-last, channel count) of the single 4-D image input.

    The channel count is the input's own dimension where the graph states it, else the first convolution's
    (its weight's input channels times its groups). Other inputs with a default in the file (an initializer
    of the same name) are weights; any other second input is refused by name.
    """
    inputs = [i for i in proto.graph.input if i.name not in weights]
    images = [i for i in inputs if len(_dims(i)) == 4]
    if len(images) != 1:
        found = ", ".join(f"{i.name} {_dims(i)}" for i in inputs) or "none"
        raise InvtoolError(f"model needs exactly one 4-D image input [N, C, H, W] (or [N, H, W, C]); it has: {found}")
    image = images[0]
    others = [i for i in inputs if i is not image]
    if others:
        raise InvtoolError(f"model has input {others[0].name!r} {_dims(others[0])} besides the image {image.name!r}; "
                           "invtool feeds the image alone: export the model with that input fixed to a constant "
                           "(or give it a default, an initializer of the same name)")
    dims = _dims(image)
    channels_last = dims[3] in IMAGE_CHANNELS and dims[1] not in IMAGE_CHANNELS
    channels = dims[3] if channels_last else dims[1]
    if channels is None:
        channels = _first_conv_channels(proto, weights)
    if channels not in IMAGE_CHANNELS:
        what = {None: "an unknown number of", 4: "4 (RGBA or RGB + depth?)"}.get(channels, str(channels))
        raise InvtoolError(f"model input {image.name!r} {dims} reads {what} channels; invtool makes images of 1 (grey) "
                           "or 3 (RGB) channels: export the model with a grey or RGB input")
    return image.name, channels_last, channels


def _first_conv_channels(proto: onnx.ModelProto, weights) -> int | None:
    """Input channels of the graph's first Conv with a stored weight (weight channels x groups), or None."""
    for node in proto.graph.node:
        if node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in weights:
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            return int(weights[node.input[1]].shape[1]) * group
    return None


_NOT_SIZE = ("channels, but got", "scalar type", "should be the same", "dtype", "not implemented for")


def _not_about_size(e: Exception) -> bool:
    """Whether a failure of the network on a blank image is about something other than its size (the image's
    channels or dtype against the weights'), so that no larger probe can help."""
    return any(p in str(e) for p in _NOT_SIZE)


def _probe_cause(failures: list[Exception]) -> str:
    """Why the largest size probe failed, when it was not the size: what the network said."""
    if not failures:
        return ""
    first = str(failures[-1]).strip().splitlines()[0] if str(failures[-1]).strip() else type(failures[-1]).__name__
    return f"; the network fails with: {first[:300]}"


def _inferred_shapes(proto, input_name, shape, channels_last) -> dict[str, tuple[int, ...]]:
    """Static shapes from ONNX shape inference at a concrete input `shape` (N, C, H, W) (only fully known ones).

    Inference runs on a copy whose large initializers (weights) are typed graph inputs: their shapes are all it
    needs of them, and copying and serialising VGG16's 528 MB of weights took most of `invtool layers`' own time.
    Small ones keep their values, which inference reads (a Reshape's target shape)."""
    m = _without_weights(proto)
    for i in m.graph.input:
        if i.name == input_name:
            n, c, h, w = shape
            for d, v in zip(i.type.tensor_type.shape.dim, (n, h, w, c) if channels_last else (n, c, h, w)):
                d.Clear()
                d.dim_value = v
    try:
        m = onnx.shape_inference.infer_shapes(m)
    except Exception:
        return {}
    shapes = {}
    for vi in [*m.graph.value_info, *m.graph.output]:
        dims = _dims(vi)
        if vi.type.tensor_type.HasField("shape") and dims and all(d for d in dims):
            shapes[vi.name] = tuple(dims)
    return shapes
