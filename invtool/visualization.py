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
import hashlib
import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from . import memory as planner
from .defaults import OPTIMIZERS, VISUALIZE, VISUALIZE_PARAMS as PARAMS
from .errors import InvtoolError, close_matches
from .geometry import fit_to_model, size_step
from .image import contact_sheet, fit_size, read_input
from .model import DEFAULT_MODEL, FeatureModel, as_model
from .objectives import Objective, channel, neuron, on_image, parse_layers, unique_name
from .objectives import layer as layer_energy
from .optimize import Result, chain, optimize, require_size, scale_sizes, step_budgets
from .param import fourier, pixel, resize_image
from .record import Run, build_record
from .start import initial_image
from .transforms import compose, jitter as jitter_transform, rotate as rotate_transform, scale as scale_transform

KINDS = {"channel": channel, "neuron": neuron, "layer": layer_energy}


MATRIX_TILES = 64   # grids of up to this many tiles score every objective on every tile (n² evaluations, for the
                    # own-objective check); larger runs (the atlas's batches on a GPU) score each tile's own only


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
              lr: float | None = VISUALIZE["lr"], seed: int = VISUALIZE["seed"], batch: int | str = VISUALIZE["batch"],
              memory=None, cols: int | None = None, preprocess=None, pool: str = "max", device=None,
              dtype=VISUALIZE["dtype"], save_every: int = VISUALIZE["save_every"], progress: bool = True,
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
        batch: tiles optimised together, one batched run per group of `batch`: "auto" (as many as the memory
            budget holds; on the CPU at most `memory.CPU_BATCH`) or N (at most N; fewer, with a note, when N do
            not fit). Tile i starts from noise drawn from (seed, i), so the grouping never changes a tile's start.
        memory: the budget in bytes or text such as "2G" (default: what the device has free), resolved once
            for the batch and every group's run.
        cols: the grid's columns (default up to 4).
        preprocess, pool, device: as for every command.
        dtype: the compute dtype when `model` is a path (`model.resolve_dtype`): "auto" (bfloat16 on a CPU with
            bfloat16 instructions, 2x faster there; else float32), "float32", "bfloat16" or "float16".

    Returns:
        A VisualizeRun: `.image` the labelled grid (the tile itself when there is one), `.tiles`,
        `.record` (metrics: each tile's objective at the start and the end, and for grids of up to
        `MATRIX_TILES` how many tiles excite their own objective more than every other tile does; `batch`, the
        tiles a run, and `batching`, how it was chosen), `.save(path, report)`.
    """
    options = {k: v for k, v in locals().items() if k not in ("model", "image", "objectives", "callback", "progress")}
    options.update(model=str(model.path if isinstance(model, FeatureModel) else model),
                   image=str(image) if isinstance(image, (str, Path)) else None if image is None else "tensor",
                   objectives=None if objectives is None else [str(o) for o in objectives])
    param = options["param"] = param or ("fourier" if image is None else "pixel")
    lr = options["lr"] = lr or (0.1 if image is None else 0.02)
    batch = options["batch"] = parse_batch(batch)
    budget = planner.parse_memory(memory) if memory is not None else None   # bad: an error before the model loads
    if param not in PARAMS:
        raise InvtoolError(f"unknown parameterisation {param!r}; use one of {', '.join(PARAMS)}")
    if optimizer not in OPTIMIZERS:   # before the batch is planned for its state
        raise InvtoolError(f"unknown optimizer {optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
    if octaves < 1 or octave_scale <= 1:
        raise InvtoolError(f"octaves must be at least 1 and the octave scale above 1 (got {octaves}, {octave_scale})")
    if steps < octaves:
        raise InvtoolError(f"{steps} steps cannot be shared by {octaves} octaves; use at least --steps {octaves}")
    chose_bfloat16 = dtype == "auto" and not isinstance(model, FeatureModel)
    model = as_model(model, preprocess, pool, device, dtype)
    chose_bfloat16 &= model.dtype == torch.bfloat16
    budget = budget if budget is not None else planner.available_memory(model.device)   # once: the same for every run
    read = {}   # layer -> the tensor its channel and neuron terms read

    def tensor_of(name):
        read[name] = relu_input(model, name)
        return read[name]
    tile_objectives, labels = _tile_objectives(layer, channels, objectives, tensor_of)
    layers = list(parse_layers(model, list(dict.fromkeys(name for o in tile_objectives for name in o.layers))))
    model = model.variant(channels=sum(tile_objectives).read_channels(model.resolve))   # those channels alone
    n = len(tile_objectives)
    pre = [f"{name} ({tensor})" for name, tensor in read.items() if tensor != model.resolve(name)]
    start, notes = _start(model, layers, n, image, size, param, seed)
    if chose_bfloat16:
        notes.append("computed in bfloat16: this CPU has bfloat16 instructions (--dtype float32 for float32)")
    if pre:
        notes.append(f"channel and neuron terms read the input of the ReLU of {', '.join(pre)}, so that channels "
                     f"dead on the start image still get a gradient")
    group, batching = tile_batch(model, layers, n, *start.shape[-2:], batch, optimizer=optimizer, memory=budget,
                                 notes=notes)
    result, metrics = _run_tiles(model, tile_objectives, start, group, fourier if param == "fourier" else pixel,
                                 octaves, octave_scale, optimizer=optimizer, lr=lr, steps=steps, callback=callback,
                                 transforms=compose(jitter_transform(jitter), scale_transform(scale_jitter),
                                                    rotate_transform(rotate)),
                                 save_every=save_every, seed=seed, progress=progress, memory=budget)
    record = build_record("visualize", options, result, model=model, layers=layers, metrics=metrics, notes=notes,
                          labels=labels, batch=group, batching=batching)

    def sheet(tiles):
        return contact_sheet(list(tiles.split(1)), labels, cols) if len(tiles) > 1 else tiles
    inputs = {"image": start[:1].cpu()} if image is not None else {}
    return VisualizeRun(sheet(result.image), record, inputs,
                        [(s, sheet(x)) for s, x in result.snapshots if len(x) == n],
                        tiles=result.image, labels=labels)


def _run_tiles(model, objectives: list[Objective], start: torch.Tensor, group: int, *args, **kwargs):
    """(the Result of optimising every tile, a run per `group` tiles, and the metrics: each tile's objective at
    the start and the end, and for grids of up to MATRIX_TILES how many excite their own objective most)."""
    n = len(objectives)
    full = 1 < n <= MATRIX_TILES
    score = objective_matrix if full else own_objectives
    before = score(model, objectives, start, group)   # also checks the channel indices, before any step
    result = _run_groups(model, objectives, start, group, *args, **kwargs)
    after = score(model, objectives, result.image, group)
    if not full:
        return result, {"objective_start": before, "objective_final": after}
    own = [i for i in range(n) if all(after[i][i] > after[k][i] for k in range(n) if k != i)]
    return result, {"objective_start": [row[i] for i, row in enumerate(before)],
                    "objective_final": [row[i] for i, row in enumerate(after)],
                    "own_objective_highest": f"{len(own)}/{n}"}


def tile_batch(model: FeatureModel, layers: list[str], n: int, h: int, w: int, batch: int | str, *,
               optimizer: str, memory, notes: list[str]) -> tuple[int, dict]:
    """(tiles a batched run, how that was chosen, for the record) for n tiles of h x w reading `layers`.

    "auto": as many as the memory budget holds (`memory.batch_size`), at most `memory.CPU_BATCH` on the CPU (a
    larger batch is no faster there, and Ctrl-C would lose more) and at most all n elsewhere. N: at most N, and
    fewer, said in `notes`, when N do not fit. The tiles' terms read features only, so `layers` is what costs.
    """
    cpu = torch.device(model.device).type == "cpu"
    cap = min(n, planner.CPU_BATCH if cpu else n) if batch == "auto" else min(n, batch)
    probe = Objective(lambda f, x: 0.0, layers, name="tiles")
    size = planner.batch_size(model, probe, cap, h, w, optimizer=optimizer, memory=memory, notes=notes)
    how = (f"--batch {batch}" if batch != "auto" else f"auto: all {n} tiles" if not cpu else
           f"auto: at most {planner.CPU_BATCH} tiles a run on the CPU (memory.CPU_BATCH)")
    how += ", as many as the memory budget holds"
    return size, {"asked": batch, "cap": cap, "budget": memory, "runs": -(-n // size), "how": how}


def tile_seed(seed: int, i: int) -> int:
    """The seed of tile i's starting noise: from the run's seed and the tile's index alone."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{i}".encode()).digest()[:8], "big") >> 1


def _start(model: FeatureModel, layers: list[str], n: int, image, size, param: str, seed: int):
    """(the n tiles' starting images, notes): `image` resized (its longer side `size`), else lucid's Fourier start
    or grey noise at `size`, tile i's drawn from `tile_seed(seed, i)` (the same in any batch); at the one size
    fully connected layers take, or rounded to the layers' alignment where the model needs it."""
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
    kind = "fourier" if param == "fourier" else "normal"
    return torch.cat([initial_image(kind, (1, model.in_channels, h, w), seed=tile_seed(seed, i))
                      for i in range(n)]), notes


def objective_matrix(model: FeatureModel, objectives: list[Objective], images: torch.Tensor,
                     batch: int | None = None) -> list[list[float]]:
    """`m[i][j]`: objective j on image i (no transforms), the images `batch` at a time (default all); a grid
    is right when each column peaks on its own tile."""
    return _scores(model, objectives, images, batch, lambda i: range(len(objectives)))


def own_objectives(model: FeatureModel, objectives: list[Objective], images: torch.Tensor,
                   batch: int | None = None) -> list[float]:
    """Objective i on image i, the images `batch` at a time: n evaluations where the matrix takes n²."""
    return [row[0] for row in _scores(model, objectives, images, batch, lambda i: [i])]


def _scores(model, objectives, images, batch, which) -> list[list[float]]:
    """For each image i, the objectives `which(i)` on it, one forward pass per `batch` images."""
    layers = list(dict.fromkeys(name for o in objectives for name in o.layers))
    batch, rows = batch or len(images), []
    with torch.no_grad():
        for a in range(0, len(images), batch):
            x = images[a:a + batch].to(model.device)
            feats = model.features(x, layers)
            rows += [[float(on_image(objectives[j], i)(feats, x)) for j in which(a + i)] for i in range(len(x))]
    return rows


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


def parse_batch(value) -> int | str:
    """`batch` / `--batch`: "auto", or a whole number of at least 1 (an int or its text)."""
    text = str(value).strip()
    if text.lower() == "auto":
        return "auto"
    if not isinstance(value, (bool, float)) and text.isdigit() and int(text) >= 1:
        return int(text)
    raise InvtoolError(f"--batch {text or repr(value)} is not a batch size; give auto (sized by the memory planner) "
                       "or a whole number of at least 1, e.g. --batch 8")


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


def _run_groups(model, objectives: list[Objective], start: torch.Tensor, group: int, make_param, octaves: int,
                octave_scale: float, **kwargs) -> Result:
    """`_dream` over the tiles `group` at a time, each group one batched run from its tiles' starts, as one
    Result in the tiles' order. A run that is interrupted or stops ends the whole: later groups are not run."""
    results = []
    for a in range(0, len(objectives), group):
        tiles = objectives[a:a + group]
        total = sum(on_image(o, i) for i, o in enumerate(tiles)) if len(tiles) > 1 else tiles[0]
        results.append(_dream(model, -total, start[a:a + group].to(model.device), make_param, octaves, octave_scale,
                              **kwargs))
        if results[-1].interrupted or results[-1].stopped_early:
            break
    return results[0] if group >= len(objectives) else _join(results, start)


def _join(results: list[Result], start: torch.Tensor) -> Result:
    """One Result for groups of tiles run one after another: their images in order (tiles whose group never ran:
    their starting images), the losses summed step by step (the total over every tile, as one batched run logs
    it) over the steps every group ran, snapshots where every group has one, the times added."""
    done, runs = sum(len(r.image) for r in results), -(-len(start) // len(results[0].image))
    steps = min(r.steps for r in results)
    terms = {}
    for r in results:   # a name that two groups share (the same objective twice) is told apart as Objective's sum does
        for name, values in r.term_history.items():
            terms[unique_name(name, terms)] = values[:steps]
    shots = [dict(r.snapshots) for r in results]
    notes = [note for r in results for note in r.notes]
    if done < len(start):
        notes.append(f"the run ended in its batch {len(results)} of {runs}: tiles {done + 1}-{len(start)} are their "
                     "starting images")
    wall = sum(r.wall_time for r in results)
    return replace(results[0], image=torch.cat([r.image for r in results] + [start[done:].cpu()]),
                   loss=sum(r.loss for r in results), steps=steps, wall_time=wall,
                   steps_per_sec=steps / wall if wall > 0 else 0.0,
                   history=[sum(r.history[s] for r in results) for s in range(steps)], term_history=terms,
                   snapshots=[(s, torch.cat([d[s] for d in shots])) for s in shots[0] if all(s in d for d in shots)],
                   interrupted=any(r.interrupted for r in results), stopped_early=any(r.stopped_early for r in results),
                   stop_reason=next((r.stop_reason for r in results if r.stop_reason), ""),
                   notes=list(dict.fromkeys(notes)))
