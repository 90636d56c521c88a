"""Random transforms applied to the image before the model at each step (lucent style).

A transform is `t(image, generator) -> image`: differentiable in `image`, its randomness drawn from the
run's `torch.Generator` so a seeded run repeats exactly. `compose` chains them; `deterministic` marks one
that draws nothing (a fixed function of the image), which L-BFGS can follow across calls.

Example:
    >>> t = compose(jitter(8), random_roll())
    >>> y = t(torch.rand(1, 3, 64, 64), torch.Generator().manual_seed(0))
"""
from typing import Callable

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def deterministic(transform: Transform) -> Transform:
    """Mark `transform` as a fixed function of the image that draws nothing from the generator. L-BFGS must
    restart its curvature memory for each new draw of a random transform, but not for this one."""
    transform.random = False
    return transform


def is_random(transform: Transform) -> bool:
    """Whether `transform` draws from the generator: true unless marked `deterministic`."""
    return getattr(transform, "random", True)


def _randint(high: int, generator: torch.Generator) -> int:
    return int(torch.randint(high, (1,), generator=generator))


def jitter(px: int) -> Transform:
    """Shift the image by up to `px` pixels each way (reflect-padded, cropped back to its size)."""
    def t(x, generator):
        if px <= 0:
            return x
        h, w = x.shape[-2:]
        dy, dx = _randint(2 * px + 1, generator), _randint(2 * px + 1, generator)
        padded = F.pad(x, (px, px, px, px), mode="reflect")
        return padded[..., dy:dy + h, dx:dx + w]
    return t


def random_roll() -> Transform:
    """Shift the image circularly by a random offset, so the model sees the wrap-around seams.

    Used for tileable output: each step a different part of the torus sits at the borders, the statistics
    of the wrapped image are matched, and the seams of the result vanish.
    """
    def t(x, generator):
        h, w = x.shape[-2:]
        return torch.roll(x, shifts=(_randint(h, generator), _randint(w, generator)), dims=(-2, -1))
    return t


def scale(amount: float) -> Transform:
    """Zoom the image by a random factor in [1 - amount, 1 + amount] about its centre, keeping its size
    (bilinear, reflected at the borders): features must survive small changes of scale."""
    def t(x, generator):
        if amount <= 0:
            return x
        factor = 1 + amount * (2 * float(torch.rand(1, generator=generator)) - 1)
        return _affine(x, torch.eye(2) / factor)
    return t


def rotate(degrees: float) -> Transform:
    """Rotate the image by a random angle in [-degrees, degrees] about its centre, keeping its size
    (bilinear, reflected at the borders)."""
    def t(x, generator):
        if degrees <= 0:
            return x
        angle = torch.deg2rad(degrees * (2 * torch.rand(1, generator=generator) - 1))[0]
        cos, sin = torch.cos(angle), torch.sin(angle)
        return _affine(x, torch.stack([torch.stack([cos, -sin]), torch.stack([sin, cos])]))
    return t


def _affine(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Resample `x` at the points `matrix @ p` (p in the image's normalised [-1, 1] coordinates)."""
    h, w = x.shape[-2:]
    half = torch.tensor([w / 2, h / 2])
    m = matrix * half[None, :] / half[:, None]   # the map in pixels, conjugated into normalised coordinates
    theta = torch.cat([m, torch.zeros(2, 1)], dim=1).to(x.device, x.dtype).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def compose(*transforms: Transform) -> Transform:
    """Apply the transforms in order (deterministic when each of them is)."""
    def t(x, generator):
        for tr in transforms:
            x = tr(x, generator)
        return x
    return t if any(map(is_random, transforms)) else deterministic(t)
