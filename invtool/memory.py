"""Memory planning: how a run at one image size fits a memory budget (issue #20), and the estimates it rests on.

- the budget: `parse_memory` ("2G", "512M", bytes), `available_memory` (what the device has free), and
  `check_pixels` (sizes no tensor can index with 32-bit integers);
- the estimate: `estimate_memory`, the bytes one forward+backward pass needs beyond the weights;
- the tiles: a `Tiling` of the image, aligned to the layers' pooling, each tile padded by a halo that holds what
  its interior's features depend on (`tiled` evaluates an objective over them);
- the plan: `plan` decides, for one image size and a budget, between one pass and tiles, and the optimiser's
  state (L-BFGS's curvature pairs, or Adam in their place).

Nothing here runs the optimiser or evaluates tiles: `optimize` and `tiled` import this module, not the reverse.

Example:
    >>> p = plan(model, objective, 1, 4096, 4096, memory="2G")
    >>> p.optimizer, p.history, p.tiling, p.notes
"""
import math
import os
import re
from dataclasses import dataclass, field

import torch

from .errors import InvtoolError
from .geometry import alignment, reach
from .objectives import Objective, Term

LBFGS_HISTORY = 50    # curvature pairs L-BFGS keeps (fewer when the budget is short)
PASSES = 2            # a statistics pass without gradients, then a gradient pass
IMAGE_BUFFERS = 4     # image-sized tensors a run keeps besides the optimiser's: the pixels, the best image, the
                      # starting image, and the tiles' gradient, which becomes the pixels' (handed on in place)
TERM_BUFFERS = 4      # and each term that reads the image itself (TV: its differences and their gradients)
LBFGS_BUFFERS = 8     # L-BFGS's besides its history: gradients, direction, the line search's copies (torch's;
                      # invtool.lbfgs's: 7, its ring's spare pair included)
LBFGS_KINDS = ("lbfgs", "lbfgs-torch")   # invtool's device-side L-BFGS and torch's: the same state
STATE = {"adam": 2, "sgd": 2, None: 0}   # Adam's moments (one temporary in a step); SGD's momentum and one
CPU_BATCH = 8         # `--batch auto`'s most images a batched run on the CPU (visualize's tiles, the atlas's two a
                      # channel): past a few images a batch is no faster there, and Ctrl-C loses the whole batch
MIN_HISTORY = 5       # with room for fewer L-BFGS pairs than this, Adam takes over
# each optimiser's step on pixels in [0, 1] where a command names none (texture's and style's); Adam's also when it
# takes over from L-BFGS under a budget (`plan`)
PIXEL_LR = {"lbfgs": 1.0, "adam": 0.02, "sgd": 0.02}
ADAM_LR = PIXEL_LR["adam"]
MAX_VALUES = 2**31 - 1   # values in one image tensor: OpenCV's and many kernels' 32-bit indexing
UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


# --- the budget --------------------------------------------------------------------------------------------

def parse_memory(text) -> int:
    """Bytes from a budget such as 2G, 512M, 1.5GB, 300MiB or a plain number of bytes (units are powers of 1024)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool) and text > 0:
        return int(text)
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGT]?)(?:I?B)?\s*", str(text), re.IGNORECASE)
    if not m or float(m.group(1)) <= 0:
        raise InvtoolError(f"bad memory budget {text!r}; give a size like 2G, 512M or 1.5G")
    return int(float(m.group(1)) * UNITS[m.group(2).upper()])


def _gb(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{math.ceil(n / 2**20)} MB"


def available_memory(device) -> int | None:
    """Bytes free for a run on `device`: free GPU memory, or the OS's MemAvailable; None if unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_pixels(n: int, h: int, w: int) -> None:
    """InvtoolError, before anything is allocated, when n images of h x w would hold more values than one tensor
    can index with 32-bit integers (OpenCV's images and many kernels)."""
    if n * 3 * h * w > MAX_VALUES:
        raise InvtoolError(f"an output of {w}x{h} has {h * w:,} pixels, more than invtool can hold in one image "
                           f"(3 values a pixel, at most {MAX_VALUES:,}); use a smaller --size or --out-size")


# --- the estimate ------------------------------------------------------------------------------------------

def estimate_memory(model, layers, h: int, w: int, batch: int = 1) -> int:
    """Bytes one forward+backward pass at h x w needs beyond the weights.

    Measures what autograd saves for the backward pass at two small sizes; the difference is the part
    that grows with the pixel count (the weights it also saves do not), scaled to h x w and doubled for
    the gradients flowing back through it. Layers that run at one input size only (fully connected ones)
    are measured at that size. The measurements are cached on the model, so only its first call for
    these layers runs the model (every command checks memory before optimising, and `optimize` again).
    """
    if model.fixed_size(layers):
        return int(2 * batch * _saved_bytes(model, layers, model.min_size(layers)))
    side = max(model.min_size(layers), 32)
    saved = [_saved_bytes(model, layers, s) for s in (side, 2 * side)]
    per_pixel = (saved[1] - saved[0]) / (3 * side * side)
    return int(2 * per_pixel * batch * h * w)


def _saved_bytes(model, layers, side: int) -> int:
    """Bytes autograd saves for the backward pass of one side x side image (cached on the model, per
    layers, side, pooling, padding and device)."""
    cache = vars(model).setdefault("_saved_bytes_cache", {})
    key = (tuple(layers), side, getattr(model, "pool", None), getattr(model, "padding", None), str(model.device))
    if key not in cache:
        cache[key] = _measure_saved_bytes(model, layers, side)
    return cache[key]


def _measure_saved_bytes(model, layers, side: int) -> int:
    seen = {}

    def pack(t):
        seen[t.data_ptr()] = t.numel() * t.element_size()
        return t

    x = torch.rand(1, model.in_channels, side, side, device=model.device, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.features(x, layers)
    return sum(seen.values())


# --- the tiles ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tile:
    """One tile: its interior, rows [y0, y1) and columns [x0, x1) in pixels, and the crop around it that the model
    sees; a crop past the image's edge wraps around (only with `wrap`)."""
    rows: tuple[int, int]
    cols: tuple[int, int]
    crop_rows: tuple[int, int]
    crop_cols: tuple[int, int]


@dataclass(frozen=True)
class Tiling:
    """Tiles of `tile` (h, w) pixels, multiples of `align` (the last of a row or column smaller), each padded by
    `halo` (before, after) pixels, `before` a multiple of `align`."""
    tile: tuple[int, int]
    halo: tuple[int, int]
    align: int

    @classmethod
    def of(cls, model, layers, tile) -> "Tiling":
        """Tiles of `tile` pixels (a side or (h, w)), rounded up to the alignment, for `layers` of `model`."""
        align = alignment(model, layers)
        before, after = reach(model, layers)
        th, tw = (tile, tile) if isinstance(tile, int) else tile
        return cls((_round_up(th, align), _round_up(tw, align)), (_round_up(before, align), after), align)

    def tiles(self, h: int, w: int, wrap: bool = False) -> list[Tile]:
        """The tiles of an h x w image, row by row."""
        if wrap and any(n > t and n % self.align for n, t in zip((h, w), self.tile)):
            raise InvtoolError(f"a tileable {w}x{h} image evaluated in tiles needs sides that are multiples of "
                               f"{self.align} (the layers' alignment); use --out-size "
                               f"{_round_up(w, self.align)}x{_round_up(h, self.align)}")
        rows = _segments(h, self.tile[0], *self.halo, wrap)
        cols = _segments(w, self.tile[1], *self.halo, wrap)
        return [Tile(r[:2], c[:2], r[2:], c[2:]) for r in rows for c in cols]

    def describe(self, h: int, w: int, wrap: bool = False) -> dict:
        """The tiling of an h x w image for the run record."""
        rows, cols = (_segments(n, t, *self.halo, wrap) for n, t in zip((h, w), self.tile))
        crops = sum(r[3] - r[2] for r in rows) * sum(c[3] - c[2] for c in cols)
        return {"tile": [min(self.tile[1], w), min(self.tile[0], h)], "grid": [len(cols), len(rows)],
                "tiles": len(rows) * len(cols), "halo": list(self.halo), "align": self.align, "passes": PASSES,
                "pixels_per_pass": crops, "overhead": round(crops / (h * w), 3), "wrap": wrap}


def _segments(n: int, t: int, before: int, after: int, wrap: bool) -> list[tuple[int, int, int, int]]:
    """(start, end, crop start, crop end) of each tile along an axis of n pixels: one tile holds the whole axis
    when t >= n; a crop stops at the image's edges, or passes them to wrap around."""
    if t >= n:
        return [(0, n, 0, n)]
    spans = [(start, min(n, start + t)) for start in range(0, n, t)]
    if wrap:
        return [(a, b, a - before, b + after) for a, b in spans]
    return [(a, b, max(0, a - before), min(n, b + after)) for a, b in spans]


def _round_up(v: int, step: int) -> int:
    return -(-v // step) * step


def split_terms(objective: Objective) -> tuple[list[Term], list[Term]]:
    """The terms summed over feature positions and those that read the image only; an InvtoolError naming any
    other term, which cannot be evaluated in tiles."""
    summed = [t for t in objective.parts if t.sums is not None]
    image_terms = [t for t in objective.parts if t.sums is None and not t.layers]
    other = [t.name for t in objective.parts if t.sums is None and t.layers]
    if other:
        raise InvtoolError(f"term {other[0]} cannot be evaluated in tiles: the Gram (texture, style), content and "
                           "image (TV) terms can, the sorted and swd losses cannot (they compare all positions at "
                           "once); use --loss gram, a smaller size or a larger --memory")
    return summed, image_terms


# --- the plan ----------------------------------------------------------------------------------------------

@dataclass
class Plan:
    """How a run at one image size fits a memory budget: the optimiser (its `lr` when it replaces the one asked
    for) and L-BFGS's `history`, and the tiling (None: one pass over the whole image); `info` for the run record."""
    optimizer: str | None
    history: int
    lr: float | None
    tiling: Tiling | None
    notes: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)


def plan(model, objective: Objective, n: int, h: int, w: int, *, optimizer: str | None = "lbfgs", memory=None,
         wrap: bool = False) -> Plan:
    """The Plan for optimising n images of h x w within `memory` bytes (or "2G"; None: what the device has free).

    The budget holds the image-sized buffers, the targets the objective keeps, the optimiser's state and one
    pass's activations (`estimate_memory`); not the weights. When it all fits, one pass and 50 L-BFGS
    pairs, as without a budget. Otherwise L-BFGS's state gets at most half of what the image's buffers leave
    (fewer pairs; Adam at lr 0.02 below 5 pairs), and the rest is one pass if that fits, else tiles: the
    tiling that fits with the fewest pixels evaluated per pass. InvtoolError when the size overflows, when a
    term cannot be tiled, or when not even the smallest tile fits (naming the smallest budget that would).
    """
    check_pixels(n, h, w)
    layers = list(objective.layers)
    budget = parse_memory(memory) if memory is not None else available_memory(model.device)
    image, fixed, whole = _run_bytes(model, objective, n, h, w)
    info = {"size": [h, w], "budget": budget, "one_pass": whole, "tiled": False}

    def state(opt, history=LBFGS_HISTORY):
        return image * (2 * history + LBFGS_BUFFERS if opt in LBFGS_KINDS else STATE[opt])

    if budget is None or fixed + state(optimizer) + whole <= budget:
        return Plan(optimizer, LBFGS_HISTORY, None, None, [],
                    {**info, "optimizer": optimizer, "history": LBFGS_HISTORY if optimizer in LBFGS_KINDS else None})
    tileable = _tileable(objective)
    least = min(whole, _crop_memory(model, layers, n, h, w, Tiling.of(model, layers, 1), wrap)) if tileable else whole
    history, lr, notes, size = LBFGS_HISTORY, None, [], f"{w}x{h}"
    if optimizer in LBFGS_KINDS:   # at most half of what the image's buffers leave, and room for the least evaluation
        history = min(LBFGS_HISTORY, int(((budget - fixed) / 2 / image - LBFGS_BUFFERS) // 2),
                      int(((budget - fixed - least) / image - LBFGS_BUFFERS) // 2))
        if history < MIN_HISTORY:
            optimizer, lr = "adam", ADAM_LR
            notes.append(f"{size}: Adam (lr {ADAM_LR:g}) instead of L-BFGS, whose state of {MIN_HISTORY} pairs "
                         f"({_gb(state('lbfgs', MIN_HISTORY))}) does not fit the memory budget of {_gb(budget)}")
        elif history < LBFGS_HISTORY:
            notes.append(f"{size}: L-BFGS keeps {history} curvature pairs instead of {LBFGS_HISTORY}, to fit the "
                         f"memory budget of {_gb(budget)}")
    info.update(optimizer=optimizer, history=history if optimizer in LBFGS_KINDS else None)
    room = budget - fixed - state(optimizer, history)
    if whole <= room:
        return Plan(optimizer, history, lr, None, notes, info)
    if not tileable:
        try:
            split_terms(objective)
        except InvtoolError as e:
            raise InvtoolError(f"a {size} image through {layers[-1]} needs about {_gb(whole)} for one pass, more "
                               f"than the memory budget of {_gb(budget)} leaves, and {e}") from None
    if wrap and (h % (a := alignment(model, layers)) or w % a):
        Tiling((1, 1), (0, 0), a).tiles(h, w, wrap)   # the one-line error with the size to use
    tiling = _fit(model, layers, n, h, w, room, wrap)
    if tiling is None:
        smallest = Tiling.of(model, layers, 1)
        need = fixed + state("sgd" if optimizer == "sgd" else "adam") + least
        raise InvtoolError(f"a memory budget of {_gb(budget)} is too small for a {size} image through "
                           f"{', '.join(layers)}: one tile of {smallest.align} px with its halo of "
                           f"{'/'.join(map(str, smallest.halo))} px needs {_gb(least)}, the image's buffers and "
                           f"the optimiser's state {_gb(need - least)}; use --memory {math.ceil(need / 2**20)}M or more")
    info.update(tiled=True, **tiling.describe(h, w, wrap))
    notes.append(f"{size}: evaluated in {info['tiles']} tiles of {info['tile'][0]}x{info['tile'][1]} px "
                 f"({info['grid'][0]}x{info['grid'][1]}), halo {tiling.halo[0]}/{tiling.halo[1]} px, {PASSES} passes "
                 f"a step ({info['overhead']:g}x the pixels), to fit the memory budget of {_gb(budget)} "
                 f"(one pass needs about {_gb(whole)})")
    return Plan(optimizer, history, lr, tiling, notes, info)


def _run_bytes(model, objective: Objective, n: int, h: int, w: int) -> tuple[int, int, int]:
    """(one image batch, the buffers and targets a run keeps, one pass's activations), in bytes, for n images."""
    image = 4 * n * model.in_channels * h * w   # bytes of one image: float32, the channels the model reads
    fixed = (image * (IMAGE_BUFFERS + TERM_BUFFERS * sum(not t.layers for t in objective.parts))
             + sum(t.sums.stored(h, w) for t in objective.parts if t.sums and t.sums.stored))
    layers = list(objective.layers)
    return image, fixed, estimate_memory(model, layers, h, w, n) if layers else 0


def batch_size(model, objective: Objective, most: int, h: int, w: int, *, optimizer: str = "adam",
               memory=None, notes: list[str] | None = None) -> int:
    """The most images of h x w (at most `most`, at least 1) that one pass can optimise together within `memory`
    (bytes or "2G"; None: what the device has free): `--batch` of visualize and the atlas. Every cost grows
    with the batch, so the largest fitting batch is the budget over one image's cost (checked against the
    batch's own estimate, so that `plan` finds it fits in one pass). Fewer than `most` is said in `notes`."""
    budget = parse_memory(memory) if memory is not None else available_memory(model.device)
    if budget is None:
        return most

    def cost(n):
        image, fixed, whole = _run_bytes(model, objective, n, h, w)
        return fixed + whole + image * (2 * LBFGS_HISTORY + LBFGS_BUFFERS if optimizer in LBFGS_KINDS
                                        else STATE[optimizer])
    size = max(1, min(most, budget // cost(1)))
    while size > 1 and cost(size) > budget:   # the estimate's rounding
        size -= 1
    if size < most and notes is not None:
        notes.append(f"batch {most} lowered to {size} to fit the memory budget of {_gb(budget)} (about "
                     f"{_gb(cost(1))} an image of {w}x{h})")
    return size


def _tileable(objective: Objective) -> bool:
    return all(t.sums is not None or not t.layers for t in objective.parts)


def _fit(model, layers, n: int, h: int, w: int, room: int, wrap: bool) -> Tiling | None:
    """The tiling whose largest crop fits `room` bytes with the fewest pixels per pass, or None."""
    base = Tiling.of(model, layers, 1)
    limit = room / (estimate_memory(model, layers, 1024, 1024, n) / 2**20)   # crop pixels
    options = [{t: _axis_cost(size, t, base, wrap) for t in _tile_sides(size, base.align, wrap)} for size in (h, w)]
    best = None
    for th, (h_max, h_sum) in options[0].items():
        for tw, (w_max, w_sum) in options[1].items():
            if h_max * w_max <= limit and (best is None or h_sum * w_sum < best[0]):
                best = (h_sum * w_sum, th, tw)
    return None if best is None else Tiling((best[1], best[2]), base.halo, base.align)


def _tile_sides(n: int, align: int, wrap: bool) -> set[int]:
    """Tile sides worth trying along an axis of n pixels: n (one tile), and n / k rounded up to the alignment."""
    if wrap and n % align:
        return {n}
    return {n} | {_round_up(-(-n // k), align) for k in range(2, -(-n // align) + 1)}


def _axis_cost(n: int, t: int, tiling: Tiling, wrap: bool) -> tuple[int, int]:
    """(the largest crop, the crops' total) along an axis of n pixels with tiles of t."""
    crops = [b - a for _, _, a, b in _segments(n, t, *tiling.halo, wrap)]
    return max(crops), sum(crops)


def _crop_memory(model, layers, n: int, h: int, w: int, tiling: Tiling, wrap: bool) -> int:
    """Bytes one pass over the largest crop of `tiling` needs."""
    (rows, _), (cols, _) = (_axis_cost(size, t, tiling, wrap) for size, t in zip((h, w), tiling.tile))
    return estimate_memory(model, layers, rows, cols, n)

