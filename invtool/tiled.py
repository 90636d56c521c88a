"""Objectives evaluated over tiles of the image, for images larger than memory allows (issue #20): the same loss
and the same gradient as one pass over the whole image, with the memory of one tile.

A term that is a function of a sum over feature positions (`objectives.Sum`: Gram matrices, squared feature
errors) is exact over tiles: each tile is padded by a halo that holds what its interior's features depend on
(`geometry.reach`), its offsets are multiples of `geometry.alignment` so that every pooling window lines up with
the whole image's, at the image's border the crop stops at the border (the network pads it as it pads the whole
image), and each feature position belongs to the interior of exactly one tile, in each layer's own coordinates.
A step takes two passes:
1. without gradients, each term's statistic is summed over the tiles; the loss L and ∂L/∂S with respect to the
   sums S follow from the sums alone;
2. tile by tile, with gradients, Σ_terms ⟨∂L/∂S, S_tile⟩ is back-propagated to the tile's pixels and added into
   the whole image's gradient.
Terms that read no layer (TV) are evaluated on the whole image. With `wrap` (tileable textures, through the
circular-padding network) the halo wraps around the image.

`plan` decides, for one image size and a memory budget, between one pass and tiles, and the optimiser's state.

Example:
    >>> tiling = Tiling.of(model, objective.layers, tile=128)
    >>> loss, terms = evaluate(model, objective, image, image, tiling)
    >>> loss.backward()     # image.grad as from objective(model.features(image, objective.layers), image)
"""
import math
import re
from dataclasses import dataclass, field

import torch

from .errors import InvtoolError
from .geometry import alignment, reach, stride
from .objectives import Objective, Region, Term
from .optimize import LBFGS_HISTORY, available_memory, estimate_memory

PASSES = 2            # a statistics pass without gradients, then a gradient pass
IMAGE_BUFFERS = 4     # image-sized tensors a run keeps besides the optimiser's: the pixels, the best image, the
                      # starting image, and the tiles' gradient, which becomes the pixels' (handed on in place)
TERM_BUFFERS = 4      # and each term that reads the image itself (TV: its differences and their gradients)
LBFGS_BUFFERS = 8     # L-BFGS's besides its history: gradients, direction, the line search's copies
STATE = {"adam": 2, "sgd": 2, None: 0}   # Adam's moments (its fused step makes no temporaries); SGD's momentum and one
MIN_HISTORY = 5       # with room for fewer L-BFGS pairs than this, Adam takes over
ADAM_LR = 0.02        # Adam's learning rate on pixels when it takes over (the commands' own)
MAX_VALUES = 2**31 - 1   # values in one image tensor: OpenCV's and many kernels' 32-bit indexing
UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


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


# --- evaluation --------------------------------------------------------------------------------------------

def evaluate(model, objective: Objective, seen: torch.Tensor, image: torch.Tensor, tiling: Tiling, *,
             wrap: bool = False, between=None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(loss, terms) of `objective` for the image as the model sees it, `seen`, and as parameterised, `image`:
    what `objective.evaluate(model.features(seen, layers), image)` gives, evaluated over `tiling`'s tiles.

    `loss.backward()` gives the exact gradient, the feature terms' reaching `image` through `seen` (so any
    transform from `image` to `seen` is applied to the whole image, as in one pass). Without gradients on `seen`
    only the statistics pass runs. `between()` is called before each tile (the engine stops a run there).
    """
    summed, image_terms = _split(objective)
    x, (h, w) = seen.detach(), seen.shape[-2:]
    tiles = tiling.tiles(h, w, wrap)
    stats = [(t.sums.layer, t.sums.statistic) for t in summed]
    values, slopes = {}, []
    totals, kept = _sum_over(model, x, stats, tiles, tiling, between, keep_last=seen.requires_grad)
    for t, (total, shape) in zip(summed, totals):
        total.requires_grad_(seen.requires_grad)
        with torch.enable_grad():
            value = t.sums.loss(total, shape, Region(slice(0, shape[-2]), slice(0, shape[-1]), (h, w), tiling))
        values[t.name] = t.weight * value.detach()
        if seen.requires_grad:
            slopes.append(t.weight * torch.autograd.grad(value, total)[0])
    loss = sum(values.values())
    if seen.requires_grad:
        loss = _WithGradient.apply(loss, seen, _gradient(model, x, summed, slopes, tiles, tiling, between, kept))
    for t in image_terms:
        values[t.name] = t.weight * t.fn({}, image)
        loss = loss + values[t.name]
    return loss, {name: values[name] for name in objective.names}


def features(model, x: torch.Tensor, layers, tiling: Tiling | None = None) -> dict[str, torch.Tensor]:
    """The feature maps of `layers` for images `x`, as `model.features` gives them, without gradients; computed
    tile by tile when a tiling is given (a target's features at a size one pass would not fit)."""
    layers = list(layers)
    with torch.no_grad():
        if tiling is None:
            return model.features(x, layers)
        (h, w), out = x.shape[-2:], {}
        tiles = tiling.tiles(h, w)
        for tile in tiles[-1:] + tiles[:-1]:   # the last first: its interior ends where the maps end
            feats = model.features(_crop(x, tile), layers)
            for name, f in feats.items():
                (rows, cols), (at_rows, at_cols) = _interior(tile, stride(model, name), f.shape, h, w)
                if name not in out:
                    out[name] = f.new_empty(*f.shape[:2], at_rows.stop, at_cols.stop)
                out[name][..., at_rows, at_cols] = f[..., rows, cols]
            del feats, f   # freed before the next tile's forward pass
    return out


def sums(model, x: torch.Tensor, statistics: dict, tiling: Tiling | None = None) -> dict[str, tuple]:
    """{layer: (Σ statistic over the feature positions of images `x`, the feature maps' shape)} for statistics
    {layer: fn(features, region)} (see `objectives.Sum`), without gradients, tile by tile when a tiling is given."""
    (h, w) = x.shape[-2:]
    tiles = tiling.tiles(h, w) if tiling else [Tile((0, h), (0, w), (0, h), (0, w))]
    return dict(zip(statistics, _sum_over(model, x.detach(), list(statistics.items()), tiles, tiling, None)[0]))


def score(model, objective: Objective, image: torch.Tensor, memory=None) -> tuple[float, dict[str, float]]:
    """The objective's value and its terms at `image`, without gradients, in tiles when one pass would not fit
    `memory`: to score an image no optimiser produced."""
    n, _, h, w = image.shape
    tiling = plan(model, objective, n, h, w, optimizer=None, memory=memory).tiling
    x = image.to(model.device)
    with torch.no_grad():
        if tiling is None:
            loss, terms = objective.evaluate(model.features(x, objective.layers), x)
        else:
            loss, terms = evaluate(model, objective, x, x, tiling)
    return float(loss), {k: float(v) for k, v in terms.items()}


def _split(objective: Objective) -> tuple[list[Term], list[Term]]:
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


def _sum_over(model, x, stats, tiles, tiling, between,
              keep_last=False) -> tuple[list[tuple[torch.Tensor, tuple]], list]:
    """Pass 1: [(Σ over tiles of statistic(interior features), whole map shape)] for stats [(layer, statistic)],
    and with `keep_last` a list holding the last tile's (crop, features) computed with gradients, for pass 2 to
    take from instead of repeating that tile's forward pass (empty without). Each tile's features are freed
    before the next tile's forward pass (`_tile_sums`), so one tile's activations are alive at a time."""
    (h, w), layers = x.shape[-2:], list(dict.fromkeys(layer for layer, _ in stats))
    totals, shapes, kept = [None] * len(stats), {}, []
    for tile in tiles:
        if between:
            between()
        keep = kept if keep_last and tile is tiles[-1] else None
        sums = _tile_sums(model, x, tile, layers, stats, tiling, shapes, keep)
        totals = [s if t is None else t + s for t, s in zip(totals, sums)]   # float64: many tiles add up
    return [(t.float(), shapes[name]) for t, (name, _) in zip(totals, stats)], kept


def _tile_sums(model, x, tile, layers, stats, tiling, shapes, keep: list | None) -> list[torch.Tensor]:
    """One tile's statistics (float64), its feature maps' extent added into `shapes`; with `keep`, the tile is
    computed with gradients and its (crop, features) appended to `keep`."""
    (h, w) = x.shape[-2:]
    with torch.set_grad_enabled(keep is not None):
        crop = _crop(x, tile).clone().requires_grad_(True) if keep is not None else _crop(x, tile)
        feats = model.features(crop, layers)
    if keep is not None:
        keep.append((crop, feats))
    with torch.no_grad():   # the statistics, also of the kept tile's features, without a graph
        where = {}
        for name, f in feats.items():
            (rows, cols), (at_rows, at_cols) = where[name] = _interior(tile, stride(model, name), f.shape, h, w)
            end = shapes.get(name, (0, 0, 0, 0))
            shapes[name] = (*f.shape[:2], max(end[2], at_rows.stop), max(end[3], at_cols.stop))
        sums = []
        for name, statistic in stats:
            (rows, cols), (at_rows, at_cols) = where[name]
            sums.append(statistic(feats[name][..., rows, cols], Region(at_rows, at_cols, (h, w), tiling)).double())
        return sums


def _gradient(model, x, summed: list[Term], slopes, tiles, tiling, between, kept=()) -> torch.Tensor:
    """Pass 2: the gradient of the summed terms with respect to the image x, tile by tile: the surrogate
    Σ ⟨∂L/∂S, S_tile⟩ back-propagated to each tile's crop and added into the whole image's gradient. The last
    tile goes first, taken out of `kept` when pass 1 left its (crop, features) there."""
    grad = torch.zeros_like(x)
    for tile in tiles[-1:] + tiles[:-1]:
        if between:
            between()
        _add(grad, tile, _tile_gradient(model, x, tile, summed, slopes, tiling, kept.pop() if kept else None))
    return grad


def _tile_gradient(model, x, tile, summed: list[Term], slopes, tiling, computed=None) -> torch.Tensor:
    """The gradient of Σ ⟨slope, statistic of the tile's interior features⟩ with respect to the tile's crop; from
    `computed` (crop, features) when pass 1 computed them. Its activations are freed when it returns."""
    (h, w), layers = x.shape[-2:], list(dict.fromkeys(t.sums.layer for t in summed))
    if computed is not None:
        crop, feats = computed
    else:
        crop = _crop(x, tile).clone().requires_grad_(True)
        with torch.enable_grad():
            feats = model.features(crop, layers)
    with torch.enable_grad():
        surrogate = 0
        for t, slope in zip(summed, slopes):
            f = feats[t.sums.layer]
            (rows, cols), (at_rows, at_cols) = _interior(tile, stride(model, t.sums.layer), f.shape, h, w)
            stat = t.sums.statistic(f[..., rows, cols], Region(at_rows, at_cols, (h, w), tiling))
            surrogate = surrogate + (slope * stat).sum()
    return torch.autograd.grad(surrogate, crop)[0]


class _WithGradient(torch.autograd.Function):
    """`value` (a 0-d tensor), whose gradient with respect to `x` is `grad`: the tiles' gradient, handed to
    autograd so that `loss.backward()` carries it on through `x` (a transform, a parameterisation)."""

    @staticmethod
    def forward(ctx, value, x, grad):
        ctx.save_for_backward(grad)
        return value.clone()

    @staticmethod
    def backward(ctx, out):   # in place: no second image-sized buffer (the graph is freed after this)
        return None, ctx.saved_tensors[0].mul_(out), None


def _interior(tile: Tile, s: int, shape, h: int, w: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """The tile's interior in a crop's feature map of `shape` and stride s: (rows, cols) in the crop's map and
    (rows, cols) in the whole image's map. Position j of a layer stands for pixels [j s, j s + s), so the
    interior [y0, y1) holds positions [y0 / s, y1 / s); the last tile's runs to the map's end."""
    def axis(span, crop, n, length):
        (start, end), (lo, hi) = span, crop
        b = min(length, length if end == n and hi == n else (end - lo) // s)
        a = min((start - lo) // s, b)
        return slice(a, b), slice(start // s, start // s + b - a)
    rows, at_rows = axis(tile.rows, tile.crop_rows, h, shape[-2])
    cols, at_cols = axis(tile.cols, tile.crop_cols, w, shape[-1])
    return (rows, cols), (at_rows, at_cols)


def _take(x: torch.Tensor, span: tuple[int, int], dim: int) -> torch.Tensor:
    lo, hi = span
    n = x.shape[dim]
    if 0 <= lo and hi <= n:
        return x.narrow(dim, lo, hi - lo)
    return x.index_select(dim, torch.arange(lo, hi, device=x.device) % n)   # wraps around


def _crop(x: torch.Tensor, tile: Tile) -> torch.Tensor:
    """The pixels the model sees for `tile`."""
    return _take(_take(x, tile.crop_rows, -2), tile.crop_cols, -1)


def _add(grad: torch.Tensor, tile: Tile, g: torch.Tensor) -> None:
    """Add a crop's gradient `g` into the whole image's `grad`, at the crop's pixels (wrapped around)."""
    (top, bottom), (left, right) = tile.crop_rows, tile.crop_cols
    h, w = grad.shape[-2:]
    if 0 <= top and bottom <= h and 0 <= left and right <= w:
        grad[..., top:bottom, left:right] += g
        return
    cols = torch.arange(left, right, device=g.device) % w
    rows = torch.arange(top, bottom, device=g.device) % h
    grad.index_add_(grad.dim() - 2, rows, g.new_zeros(*g.shape[:-1], w).index_add_(g.dim() - 1, cols, g))


# --- the memory plan ---------------------------------------------------------------------------------------

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
    pass's activations (`optimize.estimate_memory`); not the weights. When it all fits, one pass and 50 L-BFGS
    pairs, as without a budget. Otherwise L-BFGS's state gets at most half of what the image's buffers leave
    (fewer pairs; Adam at lr 0.02 below 5 pairs), and the rest is one pass if that fits, else tiles: the
    tiling that fits with the fewest pixels evaluated per pass. InvtoolError when the size overflows, when a
    term cannot be tiled, or when not even the smallest tile fits (naming the smallest budget that would).
    """
    check_pixels(n, h, w)
    layers = list(objective.layers)
    budget = parse_memory(memory) if memory is not None else available_memory(model.device)
    image = 4 * n * 3 * h * w
    fixed = (image * (IMAGE_BUFFERS + TERM_BUFFERS * sum(not t.layers for t in objective.parts))
             + sum(t.sums.stored(h, w) for t in objective.parts if t.sums and t.sums.stored))
    whole = estimate_memory(model, layers, h, w, n) if layers else 0
    info = {"size": [w, h], "budget": budget, "one_pass": whole, "tiled": False}

    def state(opt, history=LBFGS_HISTORY):
        return image * (2 * history + LBFGS_BUFFERS if opt == "lbfgs" else STATE[opt])

    if budget is None or fixed + state(optimizer) + whole <= budget:
        return Plan(optimizer, LBFGS_HISTORY, None, None, [],
                    {**info, "optimizer": optimizer, "history": LBFGS_HISTORY if optimizer == "lbfgs" else None})
    tileable = _tileable(objective)
    least = min(whole, _crop_memory(model, layers, n, h, w, Tiling.of(model, layers, 1), wrap)) if tileable else whole
    history, lr, notes, size = LBFGS_HISTORY, None, [], f"{w}x{h}"
    if optimizer == "lbfgs":   # at most half of what the image's buffers leave, and room for the least evaluation
        history = min(LBFGS_HISTORY, int(((budget - fixed) / 2 / image - LBFGS_BUFFERS) // 2),
                      int(((budget - fixed - least) / image - LBFGS_BUFFERS) // 2))
        if history < MIN_HISTORY:
            optimizer, lr = "adam", ADAM_LR
            notes.append(f"{size}: Adam (lr {ADAM_LR:g}) instead of L-BFGS, whose state of {MIN_HISTORY} pairs "
                         f"({_gb(state('lbfgs', MIN_HISTORY))}) does not fit the memory budget of {_gb(budget)}")
        elif history < LBFGS_HISTORY:
            notes.append(f"{size}: L-BFGS keeps {history} curvature pairs instead of {LBFGS_HISTORY}, to fit the "
                         f"memory budget of {_gb(budget)}")
    info.update(optimizer=optimizer, history=history if optimizer == "lbfgs" else None)
    room = budget - fixed - state(optimizer, history)
    if whole <= room:
        return Plan(optimizer, history, lr, None, notes, info)
    if not tileable:
        try:
            _split(objective)
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


def check_pixels(n: int, h: int, w: int) -> None:
    """InvtoolError, before anything is allocated, when n images of h x w would hold more values than one tensor
    can index with 32-bit integers (OpenCV's images and many kernels)."""
    if n * 3 * h * w > MAX_VALUES:
        raise InvtoolError(f"an output of {w}x{h} has {h * w:,} pixels, more than invtool can hold in one image "
                           f"(3 values a pixel, at most {MAX_VALUES:,}); use a smaller --size or --out-size")


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
