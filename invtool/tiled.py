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

The tiles (`memory.Tiling`) and the choice between one pass and tiles under a memory budget (`memory.plan`) are
memory planning's, in invtool/memory.py.

Example:
    >>> tiling = Tiling.of(model, objective.layers, tile=128)
    >>> loss, terms = evaluate(model, objective, image, image, tiling)
    >>> loss.backward()     # image.grad as from objective(model.features(image, objective.layers), image)
"""
import torch

from .geometry import stride
from .memory import Tile, Tiling, plan, split_terms
from .objectives import Objective, Region, Term


# --- evaluation --------------------------------------------------------------------------------------------

def evaluate(model, objective: Objective, seen: torch.Tensor, image: torch.Tensor, tiling: Tiling, *,
             wrap: bool = False, between=None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(loss, terms) of `objective` for the image as the model sees it, `seen`, and as parameterised, `image`:
    what `objective.evaluate(model.features(seen, layers), image)` gives, evaluated over `tiling`'s tiles.

    `loss.backward()` gives the exact gradient, the feature terms' reaching `image` through `seen` (so any
    transform from `image` to `seen` is applied to the whole image, as in one pass). Without gradients on `seen`
    only the statistics pass runs. `between()` is called before each tile (the engine stops a run there).
    """
    summed, image_terms = split_terms(objective)
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


def _sum_over(model, x, stats, tiles, tiling, between,
              keep_last=False) -> tuple[list[tuple[torch.Tensor, tuple]], list]:
    """Pass 1: [(Σ over tiles of statistic(interior features), whole map shape)] for stats [(layer, statistic)],
    and with `keep_last` a list holding the last tile's (crop, features) computed with gradients, for pass 2 to
    take from instead of repeating that tile's forward pass (empty without). Each tile's features are freed
    before the next tile's forward pass (`_tile_sums`), so one tile's activations are alive at a time."""
    layers = list(dict.fromkeys(layer for layer, _ in stats))
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
