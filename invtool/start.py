"""Starting images: every command's first image from one function, `initial_image(spec, shape, ...)`.

The random ones draw from a generator seeded with `seed`, so a seeded run repeats exactly.

| spec | image | used by |
|---|---|---|
| `noise` | uniform in [0, 1] | invert, style |
| `gray` | 0.5 everywhere | invert (its default) |
| `blur` | uniform noise at 1/8 of the size, upsampled: smooth random colours | invert |
| `mean-noise` | `like`'s mean colour plus uniform noise of range `MEAN_NOISE` (grey noise for a grey `like`) | texture |
| `normal` | 0.5 plus normal noise of sd 0.1 | visualize with `--param pixel` |
| `fourier` | lucid's start: a random spectrum of sd 0.01 through `param.fourier`, a nearly grey image | visualize |
| `content`, `style` | `like` (the content); the `styles` blended by `blend` at its size | style |
| `blend:W`, `blend:W:style` | W x `like` + (1 - W) x noise (or x the blended styles) | style |
| a file or a tensor | that image with `shape`'s channels, resized to `shape` | invert, visualize |

Example:
    >>> x = initial_image("mean-noise", (1, 3, 128, 128), seed=0, like=source)
    >>> x = initial_image("blend:0.5", content.shape, seed=0, like=content)
"""
from pathlib import Path

import torch

from .errors import InvtoolError
from .image import is_grey, read_input
from .param import fourier, resize_image

MEAN_NOISE = 0.2   # texture: the range of the noise around the source's mean colour (see `initial_image`)
SPECS = ("noise", "gray", "blur", "mean-noise", "normal", "fourier", "content", "style", "blend:W", "blend:W:style")


def initial_image(spec, shape, *, seed: int = 0, like: torch.Tensor | None = None, styles=(), blend=()) -> torch.Tensor:
    """The starting image of `shape` (N, C, H, W) for `spec` (see the module's table): a name, or a file or tensor.

    `mean-noise`, texture's start: Gatys' full-range white noise leaves pixel-level colour noise that the Gram
    losses hardly see: on VGG16 (brick, 128 px, 200 L-BFGS steps, one scale) the Gram loss ends at 12.4 from white
    noise and 6.9 from 0.5 +- 0.1; on ihc 7.9 from 0.5 +- 0.1 and 6.2 from its mean colour +- 0.1.
    """
    n, c, h, w = shape
    generator = torch.Generator().manual_seed(seed)
    if isinstance(spec, torch.Tensor) or spec not in _NAMED and not str(spec).startswith("blend:"):
        if not isinstance(spec, torch.Tensor) and not Path(spec).is_file():
            raise InvtoolError(f"bad init {str(spec)!r}: neither one of {', '.join(SPECS)} nor an image file")
        start = read_input(spec, channels=c, what="starting image")[0]
        return resize_image(start, h, w).expand(n, c, h, w).contiguous()   # contiguous: L-BFGS views it flat
    if spec == "noise":
        return torch.rand(shape, generator=generator)
    if spec == "gray":
        return torch.full(shape, 0.5)
    if spec == "blur":
        return resize_image(torch.rand(n, c, max(1, h // 8), max(1, w // 8), generator=generator), h, w)
    if spec == "mean-noise":
        noise = torch.rand(n, 1 if is_grey(like) else c, h, w, generator=generator) - 0.5
        return (like.mean((2, 3), keepdim=True) + MEAN_NOISE * noise).clamp(0, 1)
    if spec == "normal":
        return (0.5 + 0.1 * torch.randn(shape, generator=generator)).clamp(0, 1)
    if spec == "fourier":
        return fourier(tuple(shape), generator=generator).image_fn().detach()
    if spec == "content":
        return like
    style = sum(b * resize_image(s, h, w) for b, s in zip(blend, styles))
    if spec == "style":
        return style
    return _blend(spec, like, style, generator)


_NAMED = ("noise", "gray", "blur", "mean-noise", "normal", "fourier", "content", "style")


def _blend(spec: str, like: torch.Tensor, style: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """`blend:W` (W x like + (1 - W) x noise) or `blend:W:style` (W x like + (1 - W) x style)."""
    parts = spec.split(":")
    if len(parts) in (2, 3) and parts[2:] in ([], ["noise"], ["style"]):
        try:
            k = float(parts[1])
        except ValueError:
            k = -1.0
        if 0 <= k <= 1:
            other = style if parts[2:] == ["style"] else torch.rand(like.shape, generator=generator)
            return k * like + (1 - k) * other
    raise InvtoolError(f"bad init {spec!r}; use content, style, noise, blend:W or blend:W:style with W in [0, 1] "
                       "(the content's share)")
