"""Where a network changes resolution: each tensor's stride, the network's stages, default layers, its conv layers.

A *stage* is the last activation before a change of resolution (VGG16's conv1_2 … conv5_3 and pool5,
ResNet18's conv1, res2 … res5). They are found from layer shapes alone, so every command can choose
sensible layers for any CNN: a tensor is *spatial* when its height and width grow with the input, its
*stride* is input pixels per feature pixel, and a stage is a *cut* of the graph (no other tensor at its
resolution or coarser is still needed past it: not a branch of an Inception block, nor the residual
input of a ResNet block) that ends a run of cuts at one stride. A detector's upsampling neck ends the
walk, so its stages are the backbone's.

Example:
    >>> model = load_model("models/resnet18.onnx")
    >>> [(s.name, s.stride) for s in stages(model)]
    [('conv1', 2), ('res2b', 4), ('res3b', 8), ('res4b', 16), ('res5b', 32)]
    >>> default_layers(model, "texture")       # one per stage, or VGG16's Gatys layers on VGG16
"""
import math
import sys
from dataclasses import dataclass

import torch

from .defaults import KNOWN_DEFAULTS
from .errors import InvtoolError
from .onnx.graph import node_attributes

# sizes at which shapes are measured: their difference (128) is a multiple of any stride up to 128
_SIZES = (256, 384)
_CONVS = ("Conv", "ConvTranspose")

ROLES = ("texture", "style", "content", "invert", "compare", "atlas")


@dataclass(frozen=True)
class Stage:
    """A stage: its ONNX tensor name, stride (input pixels per feature pixel) and channel count."""

    name: str
    stride: int
    channels: int


def strides(model) -> dict[str, int]:
    """Stride of every spatial tensor (its H and W grow with the input), from shapes at two sizes."""
    cache = model.__dict__.setdefault("_geometry", {})
    if "strides" not in cache:
        small, large = ({i.name: i.shape for i in model.describe(s)} for s in _SIZES)
        out = {}
        for name, a in small.items():
            b = large.get(name)
            if a and b and len(a) == 4 and b[2] > a[2] and b[3] > a[3]:
                out[name] = max(1, round((_SIZES[1] - _SIZES[0]) / (b[2] - a[2])))
        cache["strides"] = out
        cache["channels"] = {n: small[n][1] for n in out}
    return cache["strides"]


def stride(model, name: str) -> int:
    """Input pixels per feature pixel of layer `name` (1 for a layer at the input's resolution)."""
    tensor = model.resolve(name)
    found = strides(model)
    if tensor not in found:
        raise InvtoolError(f"layer {name!r} has no spatial resolution (its size does not follow the input's); "
                           "choose a convolutional layer")
    return found[tensor]


def alignment(model, layers) -> int:
    """The step that tile offsets must be multiples of for the features of `layers` to line up with the whole
    image's (every pooling and strided convolution window in the same place): the lcm of the strides of every
    tensor they are computed from; the deepest layer's stride in a plain backbone."""
    for name in layers:
        stride(model, name)   # the one-line error for a layer without spatial resolution
    found = strides(model)
    producer = {o: node for node in model.proto.graph.node for o in node.output}
    todo, seen = [model.resolve(n) for n in layers], set()
    while todo:
        t = todo.pop()
        if t not in seen:
            seen.add(t)
            todo.extend(producer[t].input if t in producer else ())
    return math.lcm(*(found[t] for t in seen if t in found))


def size_step(model, layers) -> int:
    """The multiple that every size invtool chooses for `layers` is rounded to (coarse scales, octaves, style
    images, tiles): their `alignment`, at which every stride-s map has a whole number of positions, so that a
    network joining maps of several strides (a detector's FPN) takes it; 1 when some layer has no spatial
    resolution (such layers take one fixed size, `FeatureModel.fixed_size`)."""
    tensors = [model.resolve(n) for n in layers]
    found = strides(model)
    return alignment(model, layers) if tensors and all(t in found for t in tensors) else 1


def fit_to_model(model, layers, h: int, w: int, notes: list[str], what: str = "the output") -> tuple[int, int]:
    """(h, w) when the model takes an h x w input for `layers`; else the nearest multiple of their alignment, with
    a note; an InvtoolError naming the alignment when that does not help either."""
    step = size_step(model, layers)
    if step == 1 or _takes(model, layers, h, w, step):
        return h, w
    ah, aw = (max(step, step * round(n / step)) for n in (h, w))
    if not _takes(model, layers, ah, aw, step):
        raise InvtoolError(f"{what} is {w}x{h}, which the model cannot take for layers {', '.join(layers)}, nor "
                           f"{aw}x{ah}, the nearest multiple of their alignment {step} px; choose other layers")
    notes.append(f"{what} {w}x{h} rounded to {aw}x{ah}: the model takes multiples of {step} px for layers "
                 f"{', '.join(layers)} (their alignment)")
    return ah, aw


def _takes(model, layers, h: int, w: int, step: int) -> bool:
    """Whether the model computes `layers` at h x w, tried at a small size of the same remainders modulo `step`
    (what decides whether maps of several strides line up), so that a large output costs no large probe."""
    k = -(-max(4 * step, model.min_size(layers)) // step)   # whole steps above the layers' minimum size
    small = [n if n < (k + 1) * step else n % step + k * step for n in (h, w)]
    try:
        with torch.no_grad():
            model.features(model.blank(1, *small), layers)
        return True
    except RuntimeError:
        return False


_PROBE_SIDES = (256, 512, 1024, 2048, 4096)


def reach(model, layers) -> tuple[int, int]:
    """(before, after): how many input pixels before and after its own block of `stride` pixels a feature position
    of `layers` depends on, the most over both axes and every layer: the halo a tile needs for the features of its
    interior to equal the whole image's (invtool/tiled.py). Cached on the model.

    Measured by a dry run rather than read from the graph (`receptive_field`, which the atlas crops by, ignores a
    squeeze-excitation branch's whole-image context; exact tiles cannot), so that it is what the features really
    depend on, whatever the ops: a row of NaN in an image of zeros spreads to exactly the feature rows that depend
    on it, and a column to the columns. An InvtoolError when a layer depends on more than the largest probe (a
    global pooling): it cannot be tiled.
    """
    cache = model.__dict__.setdefault("_geometry", {}).setdefault("reach", {})
    key = tuple(sorted({model.resolve(n) for n in layers}))
    if key not in cache:
        cache[key] = _measure_reach(model, list(layers))
    return cache[key]


def _measure_reach(model, names) -> tuple[int, int]:
    narrow, steps = model.min_size(names), {n: stride(model, n) for n in names}
    for side in _PROBE_SIDES:   # a larger probe until no layer's NaN reaches the probe's edges
        found = [_probe(model, names, steps, side, narrow, axis) for axis in (2, 3)]
        if None not in found:
            return max(b for b, _ in found), max(a for _, a in found)
    raise InvtoolError(f"layers {', '.join(names)} depend on more than {_PROBE_SIDES[-1] // 2} px on each side of "
                       "a position (a global pooling?), so they cannot be evaluated in tiles; give more --memory or "
                       "choose convolutional layers")


def _probe(model, names, steps, side: int, narrow: int, axis: int) -> tuple[int, int] | None:
    """(before, after) along `axis` from a NaN line across a side-long image; None if some layer's NaN reaches
    the probe's edge (the probe is too small to tell)."""
    h, w = (side, narrow) if axis == 2 else (narrow, side)
    x = model.blank(1, h, w)
    c = side // 2
    x.narrow(axis, c, 1).fill_(float("nan"))
    with torch.no_grad():
        feats = model.features(x, names)
    before = after = 0
    for name in names:
        f = feats[name].isnan().movedim(axis, 0).flatten(1).any(1)
        hit = f.nonzero().flatten().tolist()
        if not hit or hit[0] == 0 or hit[-1] == len(f) - 1:
            return None
        # position j reads pixels j s - before ... j s + s - 1 + after; the NaN at c reaches j = hit[0] ... hit[-1]
        s = steps[name]
        before, after = max(before, hit[-1] * s - c + s - 1), max(after, c - hit[0] * s)
    return before, after


def stages(model) -> list[Stage]:
    """The stages of the network, shallowest first (see the module docstring)."""
    cache = model.__dict__.setdefault("_geometry", {})
    if "stages" not in cache:
        cache["stages"] = _find_stages(model)
    return cache["stages"]


def _find_stages(model) -> list[Stage]:
    found = strides(model)
    channels = model._geometry["channels"]
    nodes = list(model.proto.graph.node)
    first_conv = next((i for i, n in enumerate(nodes) if n.op_type in _CONVS), None)
    if first_conv is None or not found:
        raise InvtoolError("found no convolutional stages in this model (no Conv node with a spatial output); "
                           "name the layers yourself (--layers)")
    last_use = {}
    for i, node in enumerate(nodes):
        for t in node.input:
            if t in found:
                last_use[t] = i
    cuts, live = [], {}
    for i, node in enumerate(nodes):
        for t in node.input:     # inputs whose last consumer is this node are no longer live after it
            if last_use.get(t) == i:
                live.pop(t, None)
        for t in node.output:
            if t not in found:
                continue
            if i > first_conv and not any(found[u] >= found[t] for u in live):
                cuts.append(t)
            if last_use.get(t, -1) > i:
                live[t] = found[t]
    result: list[Stage] = []
    for t in cuts:
        s = found[t]
        if result and s < result[-1].stride:   # upsampling: a detector's neck, past the backbone
            break
        stage = Stage(t, s, channels[t])
        if result and s == result[-1].stride:
            result[-1] = stage
        else:
            result.append(stage)
    return result


def default_layers(model, role: str) -> list[str]:
    """Layers for a command's `role` when the user names none: today's choices on invtool's VGG16 and
    ResNet18 exports (found by their aliases); otherwise texture, style, compare and atlas take one layer per
    stage, content and invert the middle stage."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    if known := _known_defaults(model):
        return list(known[role])
    found = [s.name for s in stages(model)]
    return found if role in ("texture", "style", "compare", "atlas") else [found[(len(found) - 1) // 2]]


def choose_layers(model, given, role: str, notes: list[str], progress: bool = False):
    """`given` when the user named layers; else the model's `default_layers` for `role`, said in `notes`
    (so in the run record) and, with `progress`, on stderr before the run starts."""
    if given:
        return given
    chosen = default_layers(model, role)
    note = f"{role} layers {', '.join(chosen)}: " + (
        "invtool's defaults for this architecture" if _known_defaults(model) else "the model's stages") + " (none given)"
    notes.append(note)
    if progress:
        print(note, file=sys.stderr)
    return chosen


def conv_layers(model) -> list[str]:
    """Every convolution of the model with a spatial output, in graph order, as a layer (`atlas --layers all`):
    the Relu a Conv alone feeds (whose channels visualize and the atlas read at its input, the Conv's output:
    see `visualization.relu_input`), else the Conv's own output; by the model's friendliest name for it (VGG16:
    conv1_1 … conv5_3)."""
    found = strides(model)
    consumers: dict[str, list] = {}
    for node in model.proto.graph.node:
        for t in node.input:
            consumers.setdefault(t, []).append(node)
    layers = []
    for node in model.proto.graph.node:
        if node.op_type in _CONVS and node.output[0] in found:
            after = consumers.get(node.output[0], [])
            tensor = after[0].output[0] if len(after) == 1 and after[0].op_type == "Relu" else node.output[0]
            layers.append(_friendly_name(model, tensor))
    if not layers:
        raise InvtoolError("found no convolution with a spatial output in this model; name the layers yourself "
                           "(--layers, see `invtool layers MODEL`)")
    return layers


def _friendly_name(model, tensor: str) -> str:
    """The tensor's own name, unless it is an exporter's path (`/features.0/Conv_output_0`, `conv1/Relu:0`) and an
    alias is not: then the shortest such alias."""
    def generated(name):
        return "/" in name or ":" in name
    plain = sorted((a for a, t in model.aliases.items() if t == tensor and not generated(a)), key=lambda a: (len(a), a))
    return plain[0] if generated(tensor) and plain else tensor


def _known_defaults(model) -> dict | None:
    """KNOWN_DEFAULTS of the architecture whose aliases the model has, if any."""
    return next((c for c in KNOWN_DEFAULTS.values() if all(n in model for names in c.values() for n in names)), None)


# --- receptive fields ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ReceptiveField:
    """The input pixels a unit of a layer depends on, per axis (rows, columns): the unit at feature
    position (y, x) sees rows `start[0] + y * stride[0]` … `+ size[0] - 1`, and columns likewise; `start`
    is negative where zero padding lies before the image."""

    size: tuple[int, int]
    stride: tuple[int, int]
    start: tuple[int, int]

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) in input pixels, bottom and right exclusive; may reach past the image."""
        top, left = self.start[0] + y * self.stride[0], self.start[1] + x * self.stride[1]
        return top, left, top + self.size[0], left + self.size[1]


# ops that map each spatial position to the same position (any number of spatial inputs: their union)
_POINTWISE = {
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Softplus",
    "Softsign", "Mish", "Gelu", "Erf", "Exp", "Log", "Sqrt", "Pow", "Abs", "Neg", "Reciprocal", "Floor", "Ceil",
    "Round", "Sign", "Clip", "Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "Where", "Cast", "Identity",
    "Dropout", "BatchNormalization", "LRN", "Concat", "Split", "Softmax", "LogSoftmax", "QuantizeLinear",
    "DequantizeLinear", "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Not", "And", "Or"}
_WINDOWED = {"Conv", "MaxPool", "AveragePool", "LpPool"}
# ops whose output has no spatial axes left (a squeeze-excitation branch's context is ignored where it
# multiplies back into the spatial path: it depends on the whole image, which no crop can show)
_GLOBAL = {"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "Flatten", "Reshape", "Gemm", "MatMul",
           "ReduceMean", "ReduceMax", "ReduceSum", "ReduceMin", "ReduceL2", "Shape", "Size", "Squeeze",
           "Unsqueeze"}
_MOVING = {"Transpose", "Pad", "Slice", "Gather"}   # ops that move the spatial axes or their start


def receptive_field(model, name: str) -> ReceptiveField:
    """The receptive field of layer `name`, from the ONNX graph: sizes, strides, padding and dilation of
    every convolution and pooling on the way from the image, the union where branches meet (a residual
    shortcut, an Inception block's concatenation).

    Checked against the stride `strides` measures from shapes. auto_pad SAME is taken at input sizes that
    are multiples of the stride. An op that moves pixels in other ways (upsampling, a spatial reshape) is
    an error naming it.

    Example:
        >>> receptive_field(load_model("models/vgg16.onnx"), "conv3_1")
        ReceptiveField(size=(24, 24), stride=(4, 4), start=(-10, -10))
    """
    tensor = model.resolve(name)
    cache = model.__dict__.setdefault("_geometry", {}).setdefault("receptive_fields", {})
    if not cache:
        cache.update(_receptive_fields(model))
    found = cache.get(tensor)
    if found is None:
        stride(model, name)   # the one-line error for a layer with no spatial resolution
        raise InvtoolError(f"layer {name!r} has no receptive field in the image: its graph drops the spatial "
                           "axes on the way; choose a convolutional layer")
    if isinstance(found, str):
        raise InvtoolError(f"cannot tell the receptive field of layer {name!r}: {found}; choose a layer before it")
    return found


def _receptive_fields(model) -> dict[str, "ReceptiveField | str"]:
    """ReceptiveField of every spatial tensor, or why it cannot be had (a string), walking the graph once.

    Per tensor, its spatial axes -> (size, stride, start) per axis; a tensor with no entry is not spatial."""
    input_axes = (1, 2) if model.channels_last else (2, 3)
    geo: dict[str, dict[int, tuple[int, int, int]] | str] = {model.input_name: {a: (1, 1, 0) for a in input_axes}}
    for node in model.proto.graph.node:
        inputs = [geo[i] for i in node.input if i in geo]
        if not inputs:
            continue
        outputs = [o for o in node.output if o]
        why = next((g for g in inputs if isinstance(g, str)), None)
        try:
            out = why or _through(model, node, [g for g in inputs if not isinstance(g, str)])
        except _Unknown as e:
            out = str(e)
        if out is not None:
            geo.update((o, out) for o in outputs)
    measured = strides(model)
    found = {}
    for t, g in geo.items():
        if t == model.input_name or t not in model._producer:
            continue
        if isinstance(g, str):
            found[t] = g
            continue
        (ah, (rh, jh, lh)), (aw, (rw, jw, lw)) = sorted(g.items())
        if t in measured and measured[t] not in (jh, jw):   # a rule above went wrong: say so, never crop wrongly
            found[t] = f"the graph gives stride {jh} where the shapes give {measured[t]}"
        else:
            found[t] = ReceptiveField((rh, rw), (jh, jw), (lh, lw))
    return found


class _Unknown(Exception):
    """An op on the spatial path whose geometry the walk does not know."""


def _through(model, node, inputs) -> dict | None:
    """The spatial geometry of `node`'s outputs from its inputs' (None: not spatial). Attributes are decoded only
    for the ops the walk knows (a node with a subgraph is unknown here, not an error)."""
    op = node.op_type
    if op in _GLOBAL:
        return None
    if op not in _POINTWISE | _WINDOWED | _MOVING:
        raise _Unknown(f"op {op} (node {node.name!r}) moves pixels in a way the receptive-field walk does not know")
    attrs = node_attributes(node)
    if op == "Transpose":
        perm = attrs["perm"]
        return {i: inputs[0][p] for i, p in enumerate(perm) if p in inputs[0]}
    if op in _POINTWISE:
        axes = set(inputs[0])
        if any(set(g) != axes for g in inputs):
            raise _Unknown(f"{op} node {node.name!r} meets tensors with different spatial axes")
        if op in ("Concat", "Split", "Softmax", "LogSoftmax") and attrs.get("axis", 1 if op != "Split" else 0) in axes:
            raise _Unknown(f"{op} node {node.name!r} works along a spatial axis")
        return {a: _union([g[a] for g in inputs]) for a in axes}
    if op in _WINDOWED:
        return _window(model, node, attrs, inputs[0])
    if op == "Pad":
        return _pad(model, node, attrs, inputs[0])
    if op == "Slice":
        return _slice(model, node, attrs, inputs[0])
    if op == "Gather" and attrs.get("axis", 0) not in inputs[0]:
        return inputs[0]
    raise _Unknown(f"op {op} (node {node.name!r}) moves pixels in a way the receptive-field walk does not know")


def _union(geos):
    """The smallest field covering each of these (same stride): where branches meet."""
    if len({j for _, j, _ in geos}) > 1:
        raise _Unknown("branches of different strides meet")
    start = min(l for _, _, l in geos)
    end = max(l + r for r, _, l in geos)
    return end - start, geos[0][1], start


def _window(model, node, attrs, g):
    """Conv and pools over axes 2 and 3: size grows by the dilated kernel less one, in input strides."""
    from .onnx.ops.conv import same_pads

    if set(g) != {2, 3}:
        raise _Unknown(f"{node.op_type} node {node.name!r} does not see the image's rows and columns as axes 2, 3")
    kernel = attrs.get("kernel_shape") or list(_constant(model, node.input[1]).shape[2:])
    strides_ = attrs.get("strides", [1, 1])
    dilations = attrs.get("dilations", [1, 1])
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = same_pads([64 * s * g[a][1] for a, s in zip((2, 3), strides_)], kernel, strides_, dilations, auto_pad)
    else:
        pads = attrs.get("pads", [0, 0, 0, 0]) if auto_pad != "VALID" else [0, 0, 0, 0]
    out = {}
    for i, a in enumerate((2, 3)):
        r, j, l = g[a]
        out[a] = (r + (kernel[i] - 1) * dilations[i] * j, j * strides_[i], l - pads[i] * j)
    return out


def _pad(model, node, attrs, g):
    """Pad: the begin pads of the spatial axes move the start back."""
    pads = attrs.get("pads") if "pads" in attrs else [int(v) for v in _constant(model, node.input[1]).flatten()]
    rank = len(pads) // 2
    axes = list(range(rank))
    if len(node.input) > 3 and node.input[3]:
        axes = [int(a) % 4 for a in _constant(model, node.input[3]).flatten()]
    begins = dict(zip(axes, pads[:rank]))
    return {a: (r, j, l - begins.get(a, 0) * j) for a, (r, j, l) in g.items()}


def _slice(model, node, attrs, g):
    """Slice: a start on a spatial axis moves the start on, a step multiplies the stride."""
    def values(k, key, default):
        if key in attrs:
            return list(attrs[key])
        if len(node.input) > k and node.input[k]:
            return [int(v) for v in _constant(model, node.input[k]).flatten()]
        return default
    starts = values(1, "starts", [])
    axes = [a % 4 for a in values(3, "axes", list(range(len(starts))))]
    steps = values(4, "steps", [1] * len(starts))
    out = dict(g)
    for a, start, step in zip(axes, starts, steps):
        if a in out:
            if start < 0 or step < 1:
                raise _Unknown(f"Slice node {node.name!r} counts a spatial axis from its end or backwards")
            r, j, l = out[a]
            out[a] = (r, j * step, l + start * j)
    return out


def _constant(model, name: str):
    """The value of a constant tensor (an initializer or a Constant node's output)."""
    if name in model._weights:
        t = model._weights[name].cpu()
        return (t.float() if t.dtype == torch.bfloat16 else t).numpy()   # numpy has no bfloat16
    for node in model.proto.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            value = node_attributes(node).get("value")
            if value is None:
                raise _Unknown(f"Constant {name!r} holds no tensor value")
            return value.numpy()
    raise _Unknown(f"tensor {name!r} is computed, not constant")
