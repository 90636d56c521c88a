"""Image parameterisations: what the optimiser actually moves, and how that becomes an image.

A `Param` holds the tensors to optimise (`params`) and `image_fn()`, which maps them to the image the
model sees: `[N, 3, H, W]`, RGB in [0, 1]. `project` (optional) is applied before each evaluation (so
after each step), and `resize` (optional) gives the same image as a new Param of another size, which is
what lets the engine run coarse to fine. Unpacks as `params, image_fn = param` (lucent style).

Example:
    >>> params, image_fn = pixel(torch.rand(1, 3, 64, 64))
    >>> image_fn().shape
    torch.Size([1, 3, 64, 64])
"""
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F


@dataclass
class Param:
    params: list[torch.Tensor]
    image_fn: Callable[[], torch.Tensor]
    project: Callable[[], None] | None = None
    resize: Callable[[int, int], "Param"] | None = None

    def __iter__(self):
        return iter((self.params, self.image_fn))


def pixel(init: torch.Tensor) -> Param:
    """The pixels themselves, kept in [0, 1] by clamping before each evaluation (projected gradient descent).

    Args:
        init: the starting image `[N, 3, H, W]` in [0, 1] (copied; it sets the device and the size).
    """
    x = init.detach().clone().clamp_(0, 1).requires_grad_(True)

    def project():
        with torch.no_grad():
            x.clamp_(0, 1)

    def resize(h: int, w: int) -> Param:
        return pixel(resize_image(x.detach(), h, w))

    return Param([x], lambda: x, project, resize)


def resize_image(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Bicubic resize of `[N, C, H, W]` images, antialiased when shrinking, clamped to [0, 1]."""
    if x.shape[-2:] == (h, w):
        return x
    return F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
