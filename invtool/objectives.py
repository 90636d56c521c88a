"""Objectives: what the engine minimises, as weighted sums of named terms (lucent style).

An `Objective` wraps `fn(features, image) -> scalar tensor` and the layers `fn` reads from `features`.
Objectives compose with `+`, `-` and `*` / `/` by numbers; the sum keeps every named term, so the engine
asks the model once per step for the union of all layers and logs each term's weighted contribution.

The engine calls an objective at every coarse-to-fine scale, so `features` and `image` may have several
sizes over one run: a term whose target depends on the image size (a feature map to reconstruct) must
adapt to the size it is given (e.g. resize the target features); statistics such as Gram matrices
(normalised per pixel) and sorted activations (resampled to the pixel count) need nothing.
`image` is the image as parameterised, before any transform (jitter, roll) that the model sees.

A term given as a `Sum` (a function of a sum over one layer's positions: Gram matrices, squared feature
errors) can also be evaluated over tiles of an image too large for one pass (invtool/tiled.py), as can a term
that reads no layer (TV, evaluated on the whole image).

Example:
    >>> style = Objective(lambda f, x: f["conv1_1"].square().mean(), layers=["conv1_1"], name="energy")
    >>> smooth = Objective(lambda f, x: losses.tv_loss(x), name="tv")
    >>> total = style - 0.1 * smooth          # terms: {"energy": 1.0, "tv": -0.1}
    >>> loss, terms = total.evaluate(features, image)
"""
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import torch

from .errors import InvtoolError

Fn = Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Region:
    """Where some feature positions lie: `rows` and `cols` of the whole image's feature map of the layer, for an
    image of `size` (h, w). `tiling` is how the engine evaluates that image (a `memory.Tiling`, None for one pass):
    a term computing a target of that size may compute it the same way, within the same memory."""
    rows: slice
    cols: slice
    size: tuple[int, int]
    tiling: Any = None


@dataclass(frozen=True)
class Sum:
    """A term that is a function of a sum over the positions of one layer's features, so that it can be evaluated
    over tiles of the image exactly (invtool/tiled.py): the term is `loss(Σ statistic(F, region), shape, whole)`,
    the sum over the image's positions, in one region or the tiles' interiors.

    statistic: features at some positions `[N, C, h, w]` and their `Region` -> a tensor summed over those positions
        (`losses.gram_sum`, `losses.squared_error` against a target's same positions).
    loss: the statistic summed over every position, the whole feature map's shape and its Region -> the term.
    stored: bytes the term keeps for an h x w image (a target feature map), for the memory plan; None: nothing
        that grows with the image.
    """
    layer: str
    statistic: Callable[[torch.Tensor, Region], torch.Tensor]
    loss: Callable[[torch.Tensor, tuple[int, ...], Region], torch.Tensor]
    stored: Callable[[int, int], int] | None = None

    def __call__(self, features, image) -> torch.Tensor:
        """The term in one pass over the whole image, as an Objective's `fn`."""
        f = features[self.layer]
        whole = Region(slice(0, f.shape[-2]), slice(0, f.shape[-1]), tuple(image.shape[-2:]))
        return self.loss(self.statistic(f, whole), f.shape, whole)


class Term(NamedTuple):
    """One named term of an Objective: `weight * fn(features, image)`, reading `layers`; `sums` says how to
    evaluate it over tiles (None: it cannot be, unless it reads no layer and is evaluated on the whole image);
    `channels`, the only channels of its one layer that it reads (None: any)."""
    weight: float
    name: str
    fn: Fn
    layers: tuple[str, ...]
    sums: Sum | None = None
    channels: tuple[int, ...] | None = None


def unique_name(name: str, taken) -> str:
    """`name`, or `name#2`, `name#3`, ... : the first not in `taken` (terms of a sum that share a name)."""
    unique, k = name, 2
    while unique in taken:
        unique, k = f"{name}#{k}", k + 1
    return unique


class Objective:
    """A weighted sum of named terms; each term is `fn(features, image) -> scalar tensor`.

    Args:
        fn: the term, reading `features[name]` for names in `layers` and/or the image `[N, 3, H, W]`; or a `Sum`,
            which also lets the term be evaluated over tiles (its layer is then the term's).
        layers: the feature names `fn` needs (as the model resolves them).
        name: the term's name in logs, records and error messages.
        channels: the only channels of its one layer that `fn` reads (channel and neuron terms), so that a model
            may compute those alone (`read_channels`); None: any.
    """

    def __init__(self, fn: Fn | Sum, layers=(), name: str = "objective", channels=None):
        sums = fn if isinstance(fn, Sum) else None
        layers = (sums.layer,) if sums else tuple(dict.fromkeys(layers))
        if channels is not None and len(layers) != 1:
            raise ValueError(f"channels are those of one layer; term {name!r} reads {len(layers)}")
        self.parts: list[Term] = [Term(1.0, name, fn, layers, sums, None if channels is None else tuple(channels))]
        self.layers: tuple[str, ...] = layers

    @classmethod
    def _of(cls, parts, layers) -> "Objective":
        obj = cls.__new__(cls)
        obj.parts, obj.layers = parts, tuple(dict.fromkeys(layers))
        return obj

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.parts]

    def evaluate(self, features, image) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The total and each term's weighted contribution to it (tensors; no host sync)."""
        terms = {t.name: t.weight * t.fn(features, image) for t in self.parts}
        return sum(terms.values()), terms

    def __call__(self, features, image) -> torch.Tensor:
        return self.evaluate(features, image)[0]

    def read_channels(self, resolve=lambda name: name) -> dict[str, tuple[int, ...]]:
        """{layer: the channels read} for the layers that only channel and neuron terms read (`FeatureModel.variant`
        then computes just those); `resolve` maps names to tensors first (`FeatureModel.resolve`), so that an alias
        and its tensor count as one layer."""
        read: dict[str, set | None] = {}
        for t in self.parts:
            for name in map(resolve, t.layers):
                known = read.get(name, set())
                read[name] = None if t.channels is None or known is None else known | set(t.channels)
        return {name: tuple(sorted(cs)) for name, cs in read.items() if cs is not None}

    def at(self, model, image: torch.Tensor) -> float:
        """The total at `image`, without gradients: to score an image no optimiser produced."""
        with torch.no_grad():
            x = image.to(model.device)
            return float(self(model.features(x, self.layers), x))

    def terms(self, features, image) -> dict[str, float]:
        """Each named term's weighted value as a float, for logging."""
        return {k: float(v) for k, v in self.evaluate(features, image)[1].items()}

    def __add__(self, other):
        if isinstance(other, (int, float)) and other == 0:
            return self   # so that sum([...]) works
        if not isinstance(other, Objective):
            return NotImplemented
        taken, parts = set(self.names), list(self.parts)
        for t in other.parts:
            unique = unique_name(t.name, taken)
            taken.add(unique)
            parts.append(t._replace(name=unique))
        return Objective._of(parts, self.layers + other.layers)

    __radd__ = __add__

    def __mul__(self, k):
        if not isinstance(k, (int, float)):
            return NotImplemented
        return Objective._of([t._replace(weight=t.weight * k) for t in self.parts], self.layers)

    __rmul__ = __mul__

    def __truediv__(self, k):
        return self * (1.0 / k)

    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        return self + (-other)

    def __repr__(self):
        return " + ".join(f"{t.weight:g}*{t.name}" for t in self.parts)


MAX_WEIGHT = 1e4   # past this a term drowns all others: surely a typo


def layer_weights(spec, what: str = "", known=None, normalise: bool = False) -> dict[str, float]:
    """{name: weight}, in order: the one rule every command reads weighted layers by.

    The rule: "LAYER[:WEIGHT],…" (or a list of "LAYER[:WEIGHT]" strings or (name, weight) pairs, or a
    {name: weight} dict); a layer given without a weight gets 1; a layer listed twice is an error (the
    weights would be ambiguous). The command then normalises: statistics (texture, style layers) take
    `normalise`, the weights divided by their sum, since only their proportions matter and the loss weight
    keeps its scale; feature matching (invert, style's content layers) takes them as given.

    Args:
        spec: the layers, as above. Names are not checked against a model here.
        what: the kind of layer, for error messages ("style", "content"; "" for plain layers).
        known: `name in known` for a model's names; a known name is never split at a colon, so a tf2onnx
            tensor such as "model/conv1/Relu:0" is a name, not "model/conv1/Relu" weighted 0.
        normalise: divide the weights by their sum.

    Example:
        >>> layer_weights("conv3_1,fc6:0.5")
        {'conv3_1': 1.0, 'fc6': 0.5}
        >>> layer_weights("conv1_1,conv2_1:3", normalise=True)
        {'conv1_1': 0.25, 'conv2_1': 0.75}
    """
    def split(part):   # "name:weight" -> (name, weight); a bare or known name -> (name, None)
        if not isinstance(part, str):
            return part
        if ":" not in part or (known is not None and part in known):
            return part, None
        return tuple(part.rsplit(":", 1))

    kind = f"{what} layer" if what else "layer"
    if isinstance(spec, dict):
        items = list(spec.items())
    else:
        items = [split(p.strip() if isinstance(p, str) else p)
                 for p in (spec.split(",") if isinstance(spec, str) else spec)]
    if not items or any(not str(name).strip() for name, _ in items):
        raise InvtoolError(f"no {kind}s in {spec!r}; give names like conv1_1, or conv1_1:0.5,conv2_1")
    weights: dict[str, float] = {}
    for name, w in items:
        try:
            w = 1.0 if w is None else float(w)
        except (TypeError, ValueError):
            raise InvtoolError(f"bad weight {w!r} for {kind} {name}; write {name}:0.5") from None
        if not (0 < w <= MAX_WEIGHT):
            raise InvtoolError(f"weight {w:g} for {kind} {name} is out of range; give a number in "
                               f"(0, {MAX_WEIGHT:g}]")
        if str(name) in weights:
            raise InvtoolError(f"{kind} {name} is listed twice in {spec!r}; give each layer once, with its weight")
        weights[str(name)] = w
    total = sum(weights.values()) if normalise else 1.0
    return {name: w / total for name, w in weights.items()}


def parse_layers(model, spec, what: str = "", normalise: bool = False) -> dict[str, float]:
    """`layer_weights` of `spec` with every name checked against `model` (`FeatureModel.resolve`: an unknown name
    lists close matches): the one place where commands read and check the layers they are given.

    Example:
        >>> parse_layers(model, "conv3_1,conv1_1:0.5")
        {'conv3_1': 1.0, 'conv1_1': 0.5}
    """
    weights = layer_weights(spec, what, known=model, normalise=normalise)
    for name in weights:
        model.resolve(name)
    return weights


# --- feature visualisation: quantities to maximise (the engine minimises, so optimise their negation) ---

def channel(layer: str, index: int, tensor: str | None = None) -> Objective:
    """The mean activation of one channel of `layer` over the image (for a fully connected layer, a unit).

    `tensor` is the feature to read when it is not `layer` itself: `visualize` reads the input of the
    layer's ReLU, so that a channel dead on the starting image still gets a gradient.

    Example:
        >>> objective = channel("conv4_1", 12) - 0.5 * channel("conv4_1", 40)
        >>> optimize(model, -objective, init)
    """
    tensor = tensor or layer
    return Objective(lambda f, x: _channel(f[tensor], layer, index).mean(), [tensor], name=f"channel:{layer}:{index}",
                     channels=[index])


def neuron(layer: str, index: int, tensor: str | None = None) -> Objective:
    """The activation of the centre unit of one channel of `layer` (for a fully connected layer, the unit);
    `tensor` as in `channel`."""
    tensor = tensor or layer

    def fn(f, x):
        a = _channel(f[tensor], layer, index)
        return a[(slice(None), *(s // 2 for s in a.shape[1:]))].mean()
    return Objective(fn, [tensor], name=f"neuron:{layer}:{index}", channels=[index])


def layer(name: str) -> Objective:
    """DeepDream's objective: the energy of the whole layer, the mean of its squared activations."""
    return Objective(lambda f, x: f[name].square().mean(), [name], name=f"layer:{name}")


def on_image(objective: Objective, i: int) -> Objective:
    """`objective` seen by image `i` of the batch only.

    A batch of N images with one such objective each optimises N pictures in one run: the network treats
    the images independently, and so does Adam (its steps are per element), so the sum of the N objectives
    gives each image the run it would have had alone, N times faster than N runs. A 0-d tensor (a scale, a zero
    point) has no images to pick: it is given whole, for the terms' own errors to name.
    """
    def mine(f):
        return {k: v[i:i + 1] if v.dim() else v for k, v in f.items()}
    parts = [t._replace(fn=lambda f, x, fn=t.fn: fn(mine(f), x[i:i + 1]), sums=None) for t in objective.parts]
    return Objective._of(parts, objective.layers)


def _channel(f: torch.Tensor, layer: str, index: int) -> torch.Tensor:
    """Channel (or unit) `index` of features `f`, or an InvtoolError naming the layer's channel count."""
    if f.dim() < 2:
        raise InvtoolError(f"layer {layer} has no channels (its output is {list(f.shape)}); "
                           f"choose a convolutional or fully connected layer")
    count, what = f.shape[1], "channels" if f.dim() > 2 else "units"
    if not 0 <= index < count:
        raise InvtoolError(f"channel {index} is out of range: {layer} has {count} {what}, 0-{count - 1}")
    return f[:, index]
