"""Losses as pure functions of tensors: feature statistics (Gram, sorted, sliced Wasserstein), feature
reconstruction and the natural-image priors (total variation, alpha-norm).

Features are `[N, C, H, W]` tensors. Every statistic loss compares a batch against a target computed
once from the source (`gram_matrix(source)`, `sorted_channels(source)`) or against the raw source
features (`sliced_wasserstein_loss`), and is independent of the two images' pixel counts, so the output
may have any size and the same targets serve every coarse-to-fine scale.

Example:
    >>> target = gram_matrix(source_feats)            # once
    >>> loss = gram_loss(gram_matrix(feats), target)  # every step
"""
import torch
import torch.nn.functional as F

# Gram normalisations: the divisor of F Fᵀ, given C channels and M = H·W pixels. `gram_loss` is the
# mean squared difference of two Grams, so "gatys" gives exactly Gatys et al. (2015) eq. 4,
# 1/(4 C² M²) Σ (G - A)², with G = F Fᵀ.
GRAM_NORMS = {
    "gatys": lambda c, m: 2.0 * m,   # Gatys et al.'s E_l; the default
    "pixels": lambda c, m: float(m),  # the mean outer product of the channel vectors (4x "gatys")
    "elements": lambda c, m: float(c * m),  # the PyTorch tutorial's; deep layers weigh C² less
    "none": lambda c, m: 1.0,         # raw F Fᵀ; grows with M², so it depends on the image size
}


def gram_matrix(f: torch.Tensor, norm: str = "gatys") -> torch.Tensor:
    """Gram matrices `[N, C, C]` of features `[N, C, H, W]`, divided as `GRAM_NORMS[norm]` says."""
    return normalize_gram(gram_sum(f), f.shape, norm)


def gram_sum(f: torch.Tensor) -> torch.Tensor:
    """Σ over positions of f fᵀ, `[N, C, C]`, for features `[N, C, H, W]`: the unnormalised Gram matrix, a sum
    over positions, so the sums over tiles of an image add up to the whole image's (invtool/tiled.py)."""
    n, c, h, w = f.shape
    flat = f.reshape(n, c, h * w)
    return torch.bmm(flat, flat.transpose(1, 2))


def normalize_gram(total: torch.Tensor, shape, norm: str = "gatys") -> torch.Tensor:
    """The Gram matrix from `gram_sum` over features of `shape` [N, C, H, W], divided as `GRAM_NORMS[norm]` says."""
    return total / GRAM_NORMS[norm](shape[1], shape[2] * shape[3])


def guided_gram_sum(f: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ over positions of m(p)² f(p) f(p)ᵀ, `[N, C, C]`, for features `[N, C, H, W]` and a mask `[N or 1, 1, H, W]`
    at the features' resolution (`pool_mask`): the Gram sum of the mask-weighted features F·M (Gatys et al. 2017
    §4, guided Gram matrices). A sum over positions, so it tiles as `gram_sum` does."""
    return gram_sum(f * mask)


def normalize_guided_gram(total: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The guided Gram matrix from `guided_gram_sum` over the positions of `mask` (the whole feature map's):
    total / (2 Σ m²), Gatys' "gatys" normalisation with the pixel count M replaced by the mask's weight Σ m², so
    that a region's Gram is the mean outer product over the region, comparable to a whole image's `gram_matrix`
    (a mask that is 1 everywhere, or any constant, gives exactly `gram_matrix`). An empty mask gives zeros."""
    return total / (2.0 * mask.square().sum().clamp_min(1e-12))


def pool_mask(mask: torch.Tensor, s: int) -> torch.Tensor:
    """A mask `[N, 1, H, W]` at the resolution of a layer of stride `s`: position j stands for pixels
    [j s, j s + s) (as invtool/tiled.py counts them), so it gets their mean (area downsampling); a partial window at
    the border averages the pixels it holds. The map may be a position longer than the layer's (its rows and
    columns are taken as the features' Region says)."""
    return mask if s == 1 else F.avg_pool2d(mask, s, s, ceil_mode=True)


def gram_loss(gram: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of Gram matrices `[N, C, C]` and a target `[N or 1, C, C]`."""
    return (gram - target).square().mean()


def sorted_channels(f: torch.Tensor) -> torch.Tensor:
    """Each channel's activations sorted ascending: `[N, C, H, W]` -> `[N, C, H·W]`."""
    return f.flatten(2).sort(dim=2).values


def resample_sorted(values: torch.Tensor, m: int) -> torch.Tensor:
    """Sorted samples `[..., K]` resampled to `m` quantiles `[..., m]` by linear interpolation.

    Sample i of the result is the (i + 1/2)/m quantile of the K values, each of which sits at the
    (j + 1/2)/K quantile; so resampling to K gives the values back, and a distribution compared at
    another pixel count keeps its shape.
    """
    k = values.shape[-1]
    if k == m:
        return values
    pos = ((torch.arange(m, device=values.device, dtype=values.dtype) + 0.5) * (k / m) - 0.5).clamp(0, k - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=k - 1)
    frac = pos - lo
    return values[..., lo] * (1 - frac) + values[..., hi] * frac


def sorted_loss(f: torch.Tensor, target_sorted: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of per-channel sorted activations: a 1-D Wasserstein-2 per channel.

    `target_sorted` is `sorted_channels(source)` `[N or 1, C, K]`; when K differs from the pixel count of
    `f` it is resampled to matching quantiles. Invariant to any spatial permutation of `f`.
    """
    s = sorted_channels(f)
    return (s - resample_sorted(target_sorted, s.shape[-1])).square().mean()


def sliced_wasserstein_loss(f: torch.Tensor, target: torch.Tensor, n_projections: int | None = None,
                            generator: torch.Generator | None = None) -> torch.Tensor:
    """Sliced Wasserstein-2 distance between the channel vectors of `f` and of `target` (Heitz et al. 2021).

    The C-dimensional activation vectors of every pixel are projected on `n_projections` (default C)
    random unit directions, drawn afresh on each call from `generator`; along each direction both sets are
    sorted and compared like `sorted_loss`. Over the steps of an optimisation the directions cover the
    space, so the whole feature distribution is matched, not only its second moments as with Gram.
    """
    n, c = f.shape[:2]
    p = n_projections or c
    directions = torch.randn(c, p, generator=generator, device=generator.device if generator else None)
    directions = (directions / directions.norm(dim=0, keepdim=True)).to(f.device, f.dtype)
    proj = torch.einsum("ncm,cp->npm", f.flatten(2), directions).sort(dim=2).values
    proj_t = torch.einsum("ncm,cp->npm", target.flatten(2), directions).sort(dim=2).values
    return (proj - resample_sorted(proj_t, proj.shape[-1])).square().mean()


def feature_mse(f: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of two feature tensors of the same shape."""
    return squared_error(f, target) / f.numel()


def squared_error(f: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Σ (f - target)²: `feature_mse` times the element count, a sum over positions (see `gram_sum`)."""
    return (f - target).square().sum()


def normalized_feature_error(f: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """‖f - target‖² / ‖target‖² (Mahendran & Vedaldi 2015): 0 is exact, 1 is as far as all zeros.

    A batch `f` against one `target` gives the mean of its images' errors (batched restarts)."""
    batch = f.shape[0] // target.shape[0] if f.ndim and target.ndim else 1
    return (f - target).square().sum() / target.square().sum().clamp_min(1e-12) / batch


def tv_loss(x: torch.Tensor, beta: float = 2.0, scale: float = 1.0) -> torch.Tensor:
    """Total variation R_TV^β of images `[N, C, H, W]`, per pixel, in units of `scale`.

    (1/(N·H·W)) Σ_{n,c,u,v} ((∂x² + ∂y²) / scale²)^(β/2), with forward differences (zero past the last
    row and column), so a constant image gives exactly 0 and the value does not depend on the image size.
    Mahendran & Vedaldi (2016) take `scale` = V, a typical neighbour difference of natural images, so
    that R_TV ≈ 1 for them. β = 2 is the smooth quadratic prior; β < 2 tolerates sharp edges.

    Example:
        >>> step = torch.zeros(1, 1, 4, 4); step[..., 2:] = 1
        >>> tv_loss(step)          # one unit jump per row, 4 rows, over 16 pixels
        tensor(0.2500)
    """
    dx = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1))
    dy = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    sq = (dx.square() + dy.square()) / scale ** 2
    if beta != 2:  # below β = 2 the power's gradient is infinite at 0: exact zeros stay zeros, with no gradient
        sq = torch.where(sq > 0, sq.clamp_min(1e-12).pow(beta / 2), 0.0)
    return sq.sum() / (x.shape[0] * x.shape[-2] * x.shape[-1])


def alpha_norm(x: torch.Tensor, alpha: float = 6.0, scale: float = 1.0) -> torch.Tensor:
    """The α-norm prior R_α of images `[N, C, H, W]`, per pixel: (1/(N·H·W)) Σ |x / scale|^α.

    With a large α (Mahendran & Vedaldi use 6) it barely acts inside [-scale, scale] and grows steeply
    outside, keeping the (centred) image within the range natural images have.

    Example:
        >>> alpha_norm(torch.full((1, 3, 2, 2), 0.5), alpha=2, scale=0.5)   # 3 channels at |x| = scale
        tensor(3.)
    """
    return (x / scale).abs().pow(alpha).sum() / (x.shape[0] * x.shape[-2] * x.shape[-1])


def range_penalty(x: torch.Tensor, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """How far images `[N, C, H, W]` leave [low, high]: (1/(N·H·W)) Σ (distance outside)², 0 inside.

    A soft box for parameterisations that are not clamped (`param.pyramid`).

    Example:
        >>> range_penalty(torch.tensor([[[[-0.5, 0.5, 2.0]]]]))   # (0.25 + 0 + 1) over 3 pixels
        tensor(0.4167)
    """
    outside = F.relu(low - x) + F.relu(x - high)
    return outside.square().sum() / (x.shape[0] * x.shape[-2] * x.shape[-1])
