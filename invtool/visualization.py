"""Feature visualisation: images that excite a channel, a unit or a whole layer (activation maximisation),
and DeepDream on an image.

Plain gradient ascent on pixels gives high-frequency noise; as lucid/lucent showed (Olah et al. 2017),
two things make the pictures readable: robustness to small random transforms (jitter, scale, rotation)
at every step, and a decorrelated Fourier parameterisation (`param.fourier`). A grid of N tiles is one
run over a batch of N images, each with its own objective (`objectives.on_image`).

Objectives are written as text — `"channel:conv4_1:12 - 0.5*channel:conv4_1:40"`, terms
`channel:LAYER:INDEX`, `neuron:LAYER:INDEX`, `layer:LAYER` joined by `+`/`-` with `number*` weights —
or built in Python from `objectives.channel`, `neuron` and `layer`.

Example:
    >>> run = visualize("conv4_1", "0-15")        # a 4x4 grid, one tile per channel
    >>> run.save("out/conv4_1.png", report=True)
    >>> dream = visualize("conv4_2", image="examples/images/astronaut.png", octaves=3)
"""
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .defaults import VISUALIZE, VISUALIZE_PARAMS as PARAMS
from .errors import InvtoolError, close_matches
from .geometry import fit_to_model, size_step
from .image import contact_sheet, fit_size, read_input
from .model import DEFAULT_MODEL, FeatureModel, as_model
from .objectives import Objective, channel, neuron, on_image, parse_layers
from .objectives import layer as layer_energy
from .optimize import Result, chain, optimize, require_size, scale_sizes, step_budgets
from .param import fourier, pixel, resize_image
from .record import Run, build_record
from .start import initial_image
from .transforms import compose, jitter as jitter_transform, rotate as rotate_transform, scale as scale_transform

KINDS = {"channel": channel, "neuron": neuron, "layer": layer_energy}


@dataclass
class VisualizeRun(Run):
    """A Run whose image is the labelled grid, plus the tiles themselves `[N, 3, H, W]` and their labels."""
    tiles: torch.Tensor | None = None
    labels: list[str] | None = None


def visualize(layer: str | None = None, channels=None, *, objectives=None, model: str | FeatureModel = DEFAULT_MODEL,
              param: str | None = None, size=VISUALIZE["size"], image=None, octaves: int = VISUALIZE["octaves"],
              octave_scale: float = VISUALIZE["octave_scale"], jitter: int = VISUALIZE["jitter"],
              scale_jitter: float = VISUALIZE["scale_jitter"], rotate: float = VISUALIZE["rotate"],
              optimizer: str = VISUALIZE["optimizer"], steps: int = VISUALIZE["steps"],
              lr: float | None = VISUALIZE["lr"], seed: int = VISUALIZE["seed"], cols: int | None = None,
              preprocess=None, pool: str = "max", device=None,
              save_every: int = VISUALIZE["save_every"], progress: bool = True,
              callback=None) -> VisualizeRun:
    """Images that maximise objectives on a model's features: one tile per channel, or per objective.

    What is maximised: each `objectives` entry (one tile each); else `channel(layer, c)` for each of
    `channels`; else the energy of `layer` (DeepDream). With `image` the tiles start from that image
    instead of noise, and `octaves` > 1 runs DeepDream's octaves: from the image shrunk by
    `octave_scale`^(octaves-1) up to full size, the detail dreamt at each octave carried to the next.

    Args:
        layer: a layer name (alias or ONNX name), for `channels` or the DeepDream energy.
        channels: channel (or unit) indices: a list, or text such as "0-15" or "3,7,12-15".
        objectives: strings such as "channel:conv4_1:12 - 0.5*channel:conv4_1:40", or Objectives.
        model: an ONNX path or a loaded FeatureModel.
        param: "fourier" (decorrelated colour, 1/f frequency scaling; readable pictures from noise) or
            "pixel"; default "fourier" from noise and "pixel" from an image (DeepDream's own: the
            sigmoid of the Fourier parameterisation hardly moves an image's near-black and near-white pixels).
        size: the tiles' size: N (square; with `image`, its longer side) or (height, width). Layers that
            need a fixed input (VGG16's fc6-fc8) impose their own.
        image: an image file or `[1, 3, H, W]` tensor in [0, 1] to start from.
        jitter, scale_jitter, rotate: the random transforms at each step: a shift of up to `jitter` px, a
            zoom by up to ±`scale_jitter`, a rotation of up to ±`rotate` degrees.
        optimizer, steps, lr, seed, save_every, progress, callback: passed to `optimize` (`steps` is the
            total over the octaves); `lr` defaults to 0.1 from noise and 0.02 from an image (more
            dreams the image away). 64 steps at 0.1 reach 94-95% of the objective of 128 steps at 0.05
            in under half the time, with tiles that look the same (held-out channels conv3_1 40-43,
            conv4_1 100-103): about 7 s a 128 px tile of conv4_1 on 2 CPU cores.
        cols: the grid's columns (default up to 4).

    Returns:
        A VisualizeRun: `.image` the labelled grid (the tile itself when there is one), `.tiles`,
        `.record` (metrics: each tile's objective at the start and the end, and for grids how many tiles
        excite their own objective more than every other tile does), `.save(path, report)`.
    """
    options = {k: v for k, v in locals().items() if k not in ("model", "image", "objectives", "callback", "progress")}
    options.update(model=str(model.path if isinstance(model, FeatureModel) else model),
                   image=str(image) if isinstance(image, (str, Path)) else None if image is None else "tensor",
                   objectives=None if objectives is None else [str(o) for o in objectives])
    param = options["param"] = param or ("fourier" if image is None else "pixel")
    lr = options["lr"] = lr or (0.1 if image is None else 0.02)
    if param not in PARAMS:
        raise InvtoolError(f"unknown parameterisation {param!r}; use one of {', '.join(PARAMS)}")
    if octaves < 1 or octave_scale <= 1:
        raise InvtoolError(f"octaves must be at least 1 and the octave scale above 1 (got {octaves}, {octave_scale})")
    if steps < octaves:
        raise InvtoolError(f"{steps} steps cannot be shared by {octaves} octaves; use at least --steps {octaves}")
    model = as_model(model, preprocess, pool, device)
    read = {}   # layer -> the tensor its channel and neuron terms read

    def tensor_of(name):
        read[name] = relu_input(model, name)
        return read[name]
    tile_objectives, labels = _tile_objectives(layer, channels, objectives, tensor_of)
    layers = list(parse_layers(model, list(dict.fromkeys(name for o in tile_objectives for name in o.layers))))
    n = len(tile_objectives)
    pre = [f"{name} ({tensor})" for name, tensor in read.items() if tensor != model.resolve(name)]
    start, notes = _start(model, layers, n, image, size, param, seed)
    if pre:
        notes.append(f"channel and neuron terms read the input of the ReLU of {', '.join(pre)}, so that channels "
                     f"dead on the start image still get a gradient")

    before = objective_matrix(model, tile_objectives, start)   # also checks the channel indices, before any step
    total = sum(on_image(o, i) for i, o in enumerate(tile_objectives)) if n > 1 else tile_objectives[0]
    transforms = compose(jitter_transform(jitter), scale_transform(scale_jitter), rotate_transform(rotate))
    make_param = fourier if param == "fourier" else pixel
    result = _dream(model, -total, start.to(model.device), make_param, octaves, octave_scale, optimizer=optimizer,
                    lr=lr, steps=steps, transforms=transforms, callback=callback, save_every=save_every, seed=seed,
                    progress=progress)

    after = objective_matrix(model, tile_objectives, result.image)
    metrics = {"objective_start": [row[i] for i, row in enumerate(before)],
               "objective_final": [row[i] for i, row in enumerate(after)]}
    if n > 1:
        own = [i for i in range(n) if all(after[i][i] > after[k][i] for k in range(n) if k != i)]
        metrics["own_objective_highest"] = f"{len(own)}/{n}"
    record = build_record("visualize", options, result, model=model, layers=layers, metrics=metrics, notes=notes,
                          labels=labels)

    def sheet(batch):
        return contact_sheet(list(batch.split(1)), labels, cols) if n > 1 else batch
    inputs = {"image": start[:1].cpu()} if image is not None else {}
    return VisualizeRun(sheet(result.image), record, inputs, [(s, sheet(x)) for s, x in result.snapshots],
                        tiles=result.image, labels=labels)


def _start(model: FeatureModel, layers: list[str], n: int, image, size, param: str, seed: int):
    """(the n tiles' starting images, notes): `image` resized (its longer side `size`), else lucid's Fourier start
    or grey noise at `size`; at the one size fully connected layers take, or rounded to the layers' alignment
    where the model needs it."""
    notes = []
    if image is not None:
        start, notes = read_input(image, channels=model.in_channels)
        h, w = fit_size(*start.shape[-2:], size)
    else:
        h, w = (size, size) if isinstance(size, int) else size
    fixed = model.fixed_size(layers)
    if fixed and fixed != (h, w):
        h, w = fixed
        notes.append(f"size {w}x{h}: {', '.join(layers)} take only that input size")
    require_size(model, layers, h, w, "the tiles")
    h, w = fit_to_model(model, layers, h, w, notes, "the tiles")
    if image is not None:
        return resize_image(start, h, w).expand(n, -1, -1, -1), notes
    return initial_image("fourier" if param == "fourier" else "normal", (n, model.in_channels, h, w), seed=seed), notes


def objective_matrix(model: FeatureModel, objectives: list[Objective], images: torch.Tensor) -> list[list[float]]:
    """`m[i][j]`: objective j on image i (no transforms); a grid is right when each column peaks on its
    own tile."""
    layers = list(dict.fromkeys(name for o in objectives for name in o.layers))
    with torch.no_grad():
        images = images.to(model.device)
        feats = model.features(images, layers)
        return [[float(on_image(o, i)(feats, images)) for o in objectives] for i in range(len(images))]


def relu_input(model: FeatureModel, name: str) -> str:
    """The tensor a ReLU layer is computed from (its pre-activation), or the layer's own tensor otherwise.

    Channel objectives read it (as lucid's `_pre_relu` layers): a channel that is zero all over the start
    image has no gradient after its ReLU, and many are (on noise, over half of VGG16's conv5_1). Layers
    with a fixed input size (fc6, fc7) are read as they are: the model knows their size by their names.
    """
    tensor = model.resolve(name)
    node = next((node for node in model.proto.graph.node if tensor in node.output), None)
    if node is None or node.op_type != "Relu" or model.fixed_size([name]):
        return tensor
    return node.input[0]


def _tile_objectives(layer, channels, objectives, tensor_of) -> tuple[list[Objective], list[str]]:
    """One objective and one label per tile, from whichever of the three ways the tiles were given;
    channel and neuron terms read `tensor_of(layer)`."""
    if objectives is not None:
        if channels is not None:
            raise InvtoolError("give channels or objectives, not both")
        objectives = [objectives] if isinstance(objectives, (str, Objective)) else list(objectives)
        if not objectives:
            raise InvtoolError("no objectives given; write e.g. channel:conv4_1:12")
        return ([parse_objective(o, tensor_of) if isinstance(o, str) else o for o in objectives],
                [o if isinstance(o, str) else repr(o) for o in objectives])
    if layer is None:
        raise InvtoolError("nothing to visualise: give a layer (and channels for one tile per channel) or objectives")
    if channels is None:
        return [layer_energy(layer)], [f"layer:{layer}"]
    indices = parse_channels(channels)
    tensor = tensor_of(layer)
    return [channel(layer, c, tensor) for c in indices], [f"{layer}:{c}" for c in indices]


def parse_channels(spec) -> list[int]:
    """Channel indices from a list of ints or text such as "0-15" or "3,7,12-15"."""
    if not isinstance(spec, str):
        indices = [int(c) for c in ([spec] if isinstance(spec, int) else spec)]
    else:
        indices = []
        for part in spec.replace(" ", "").split(","):
            m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if not m or (m[2] and int(m[2]) < int(m[1])):
                raise InvtoolError(f"bad channel list {spec!r} at {part!r}; write indices and ranges such as 0-15 or 3,7,12-15")
            indices += range(int(m[1]), int(m[2] or m[1]) + 1)
    if not indices:
        raise InvtoolError("no channels given; write indices and ranges such as 0-15 or 3,7,12-15")
    return indices


_TOKEN = re.compile(r"""\s*(?:
      (?P<unit>(?P<kind>channel|neuron):(?P<layer>[^\s+*()]+):(?P<index>\d+)(?![\w.]))
    | (?P<energy>layer:(?P<energy_layer>[^\s+*()]+))
    | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w.:])
    | (?P<op>[-+*()])
    | (?P<word>[^\s+*()]+)
    )""", re.X)
_GRAMMAR = ("terms are channel:LAYER:INDEX, neuron:LAYER:INDEX or layer:LAYER, joined by + and - with "
            "number* weights, e.g. channel:conv4_1:12 - 0.5*channel:conv4_1:40")


def parse_objective(text: str, tensor_of=None) -> Objective:
    """An Objective (a quantity to maximise) from text such as `"channel:conv4_1:12 - 0.5*channel:conv4_1:40"`.

    Grammar: sums and differences of terms, each optionally multiplied by numbers and grouped in
    parentheses; a term is `channel:LAYER:INDEX` (mean activation of a channel), `neuron:LAYER:INDEX`
    (its centre unit) or `layer:LAYER` (the layer's energy). Layer names may hold `:`, `/`, `.` and `-`;
    put spaces around a `-` that follows `layer:NAME`. An error names the column where parsing failed.
    `tensor_of(layer)`, if given, names the feature that channel and neuron terms read (see `relu_input`).

    Example:
        >>> parse_objective("2*(neuron:conv5_1:7 + channel:conv5_1:7) - layer:conv3_1").names
        ['neuron:conv5_1:7', 'channel:conv5_1:7', 'layer:conv3_1']
    """
    return _Parser(text, tensor_of or (lambda name: name)).parse()


class _Parser:
    """Recursive descent: expr := product (('+'|'-') product)*; product := unary ('*' unary)*;
    unary := ('-'|'+') unary | number | term | '(' expr ')'. Tokens are (kind, match, column)."""

    def __init__(self, text: str, tensor_of):
        self.text, self.tensor_of, self.tokens, self.i, pos = text, tensor_of, [], 0, 0
        while text[pos:].strip():
            m = _TOKEN.match(text, pos)
            self.tokens.append((m.lastgroup, m, m.end() - len(m.group().lstrip())))
            pos = m.end()

    def parse(self) -> Objective:
        if not self.tokens:
            raise InvtoolError(f"empty objective; {_GRAMMAR}")
        value = self.expr()
        if self.i < len(self.tokens):
            self.fail(self.tokens[self.i][2], f"unexpected {self.tokens[self.i][1].group().strip()!r}")
        if not isinstance(value, Objective):
            self.fail(0, "the expression is a number, not an objective")
        return value

    def peek(self, *ops) -> bool:
        return self.i < len(self.tokens) and self.tokens[self.i][0] == "op" and self.tokens[self.i][1]["op"] in ops

    def expr(self):
        value = self.product()
        while self.peek("+", "-"):
            _, m, pos = self.tokens[self.i]
            self.i += 1
            rhs = self.product()
            if isinstance(value, Objective) != isinstance(rhs, Objective):
                self.fail(pos, f"cannot {'add' if m['op'] == '+' else 'subtract'} a number and an objective")
            value = value + rhs if m["op"] == "+" else value - rhs
        return value

    def product(self):
        value = self.unary()
        while self.peek("*"):
            pos = self.tokens[self.i][2]
            self.i += 1
            rhs = self.unary()
            if isinstance(value, Objective) and isinstance(rhs, Objective):
                self.fail(pos, "cannot multiply two objectives; weights are numbers")
            value = value * rhs
        return value

    def unary(self):
        if self.i >= len(self.tokens):
            self.fail(len(self.text), "the expression ends too early")
        kind, m, pos = self.tokens[self.i]
        self.i += 1
        if kind == "op" and m["op"] in "+-":
            value = self.unary()
            return -value if m["op"] == "-" else value
        if kind == "op" and m["op"] == "(":
            value = self.expr()
            if not self.peek(")"):
                self.fail(self.tokens[self.i][2] if self.i < len(self.tokens) else len(self.text), "missing ')'")
            self.i += 1
            return value
        if kind == "number":
            return float(m["number"])
        if kind == "unit":
            return KINDS[m["kind"]](m["layer"], int(m["index"]), self.tensor_of(m["layer"]))
        if kind == "energy":
            return layer_energy(m["energy_layer"])
        if kind == "word":
            word = m["word"]
            head = word.split(":")[0]
            if ":" not in word:
                self.fail(pos, f"{word!r} is not a term{close_matches(word, KINDS)}")
            if head in ("channel", "neuron"):
                self.fail(pos, f"{word!r} needs a layer and a channel index, as {head}:LAYER:INDEX")
            self.fail(pos, f"unknown term kind {head!r}{close_matches(head, KINDS)}")
        self.fail(pos, f"unexpected {m.group().strip()!r}")

    def fail(self, pos: int, problem: str):
        raise InvtoolError(f'bad objective at column {pos + 1}, {problem}: "{self.text[:pos]} >>> '
                           f'{self.text[pos:]}"; {_GRAMMAR}')


def _dream(model, objective, start, make_param, octaves, octave_scale, *, steps, **kwargs) -> Result:
    """`optimize` over DeepDream's octaves, as one Result; one octave is a plain run from `start`.

    Octave k starts from the start image at its size plus the detail dreamt so far (the previous octave's
    result minus its own start, upsampled), so the image's own detail is never blurred away.
    """
    n, _, h, w = start.shape
    layers = list(objective.layers)
    sizes, notes = scale_sizes(h, w, octaves, model.min_size(layers), octave_scale, size_step(model, layers), "octaves")
    budgets = step_budgets(steps, len(sizes), 0)   # even over the octaves
    results, detail = [], None
    for (sh, sw), budget in zip(sizes, budgets):
        base = resize_image(start, sh, sw)
        init = base if detail is None else (base + resize_image(detail, sh, sw, clamp=False)).clamp(0, 1)
        res = optimize(model, objective, make_param(init), steps=budget, **kwargs)
        results.append(res)
        detail = res.image.to(start.device) - base
        if res.interrupted or res.stopped_early:
            break
    if len(results) == 1 and not notes:
        return results[0]
    return chain(results, (h, w), notes)
