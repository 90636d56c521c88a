"""Where a network changes resolution: each tensor's stride, the network's stages, and default layers.

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
import sys
from dataclasses import dataclass

from .errors import InvtoolError

# sizes at which shapes are measured: their difference (128) is a multiple of any stride up to 128
_SIZES = (256, 384)
_CONVS = ("Conv", "ConvTranspose")

# today's choices on the models whose aliases invtool's exporters write (Gatys et al. on VGG16)
KNOWN_DEFAULTS = {
    "vgg16": {"texture": ("conv1_1", "pool1", "pool2", "pool3", "pool4"),
              "style": ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"),
              "content": ("conv4_2",), "invert": ("conv3_1",),
              "compare": ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")},
    "resnet18": {"texture": ("conv1", "res2", "res3", "res4"),
                 "style": ("conv1", "res2", "res3", "res4", "res5"),
                 "content": ("res4",), "invert": ("res3",),
                 "compare": ("conv1", "res2", "res3", "res4", "res5")},
}
ROLES = ("texture", "style", "content", "invert", "compare")


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
    ResNet18 exports (found by their aliases); otherwise texture, style and compare take one layer per
    stage, content and invert the middle stage."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    if known := _known_defaults(model):
        return list(known[role])
    found = [s.name for s in stages(model)]
    return found if role in ("texture", "style", "compare") else [found[(len(found) - 1) // 2]]


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


def _known_defaults(model) -> dict | None:
    """KNOWN_DEFAULTS of the architecture whose aliases the model has, if any."""
    return next((c for c in KNOWN_DEFAULTS.values() if all(n in model for names in c.values() for n in names)), None)
