"""Image parameterisations: what the optimiser actually moves, and how that becomes an image.

A `Param` holds the tensors to optimise (`params`) and `image_fn()`, which maps them to the image the
model sees: `[N, 3, H, W]`, RGB in [0, 1] (`pyramid`: kept there by a prior, see it). `project`
(optional) is applied before each evaluation (so after each step). `remake` (optional) builds the same
kind of Param (same levels, same spectrum scaling) from an image of any size; `resize` uses it to give an
image as a Param of another size, which is what lets the engine run coarse to fine without losing the
parameterisation. Unpacks as `params, image_fn = param` (lucent style).

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
    remake: Callable[[torch.Tensor], "Param"] | None = None  # image -> the same kind of Param from it

    def __iter__(self):
        return iter((self.params, self.image_fn))

    def resize(self, h: int, w: int, wrap: bool = False, image: torch.Tensor | None = None) -> "Param":
        """The same kind of Param at h x w, started from `image` (default: this Param's image) resized.

        `image` lets the engine carry the *best* image of a scale, not the last one, into the next scale;
        `wrap` resizes periodically (a tileable texture), see `resize_image`.
        """
        if self.remake is None:
            raise ValueError("this parameterisation cannot be resized (it has no `remake`)")
        with torch.no_grad():
            image = self.image_fn() if image is None else image
            return self.remake(resize_image(image.detach(), h, w, wrap=wrap))


def pixel(init: torch.Tensor) -> Param:
    """The pixels themselves, kept in [0, 1] by clamping before each evaluation (projected gradient descent).

    Args:
        init: the starting image `[N, 3, H, W]` in [0, 1] (copied; it sets the device and the size).
    """
    x = init.detach().clone().clamp_(0, 1).requires_grad_(True)

    def project():
        with torch.no_grad():
            x.clamp_(0, 1)

    return Param([x], lambda: x, project, pixel)


def pyramid(init: torch.Tensor, levels: int = 5) -> Param:
    """The image as a sum of `levels` images at 1, 1/2, 1/4, … of its size, upsampled (a Laplacian pyramid).

    A coarse level moves a whole patch in one coordinate, so smooth, large-scale changes (the colour and
    shading of regions) are as easy for the optimiser as pixel-level ones; with pixels alone they take
    many small coordinated steps, and feature inversion settles with regions in the wrong colour.
    The image is not clamped: a clamp would undo the coarse levels' moves at saturated pixels and break
    L-BFGS's line search, so the objective keeps it in [0, 1] (`losses.range_penalty`) and `optimize`
    clamps the image it returns.

    Args:
        init: the starting image `[N, 3, H, W]` in [0, 1] (held by the full-size level; the others start at 0).
        levels: pyramid levels, the coarsest at 1/2^(levels-1) of the size (fewer if the image is too small).

    Example:
        >>> params, image_fn = pyramid(torch.full((1, 3, 128, 128), 0.5))
        >>> [p.shape[-1] for p in params], image_fn().shape[-1]
        ([128, 64, 32, 16, 8], 128)
    """
    n, c, h, w = init.shape
    sizes = [(h >> k, w >> k) for k in range(levels) if min(h >> k, w >> k) >= 1]
    fine = init.detach().clone().clamp_(0, 1).requires_grad_(True)
    coarse = [init.new_zeros(n, c, sh, sw, requires_grad=True) for sh, sw in sizes[1:]]

    def image_fn():
        return fine + sum(F.interpolate(p, size=(h, w), mode="bilinear", align_corners=False) for p in coarse)

    return Param([fine, *coarse], image_fn, None, lambda image: pyramid(image, levels))


# The square root of ImageNet's RGB covariance (from lucid): colours are optimised in its decorrelated
# basis, each column scaled so the largest has unit norm.
_COLOR_SQRT_COV = torch.tensor([[0.26, 0.09, 0.02],
                                [0.27, 0.00, -0.05],
                                [0.27, -0.09, 0.03]])
_COLOR_SQRT_COV = _COLOR_SQRT_COV / _COLOR_SQRT_COV.norm(dim=0).max()
_FOURIER_GAIN = 4.0   # lucid's divisor of the inverse FFT: smaller values saturate colours sooner


def fourier(init: torch.Tensor | tuple[int, int, int, int], *, decay_power: float = 1.0, sd: float = 0.01,
            generator: torch.Generator | None = None, device=None) -> Param:
    """A decorrelated Fourier parameterisation (Olah et al. 2017, lucid): the optimiser moves the image's
    spectrum, scaled by 1/f^decay_power, in a decorrelated colour basis (for RGB; a grey image has one
    channel and no basis); a sigmoid keeps it in (0, 1).

    Equal steps on every coefficient then change low frequencies as much as high ones, which plain pixel
    ascent does not (it makes high-frequency noise): activation maximisation gives readable pictures.

    Args:
        init: a starting image `[N, 3, H, W]` in [0, 1] (reproduced exactly, up to clamping to
            [0.001, 0.999]) or a shape `(N, 3, H, W)` for lucid's start: a random spectrum of std `sd`,
            a nearly grey image.
        decay_power: the exponent of the 1/f scaling (0: a plain Fourier basis).
        generator: the random spectrum's generator (for a shape).
        device: where a random spectrum lives (for a shape; an image keeps its own device).

    Example:
        >>> params, image_fn = fourier((1, 3, 128, 128), generator=torch.Generator().manual_seed(0))
        >>> image_fn().shape
        torch.Size([1, 3, 128, 128])
    """
    image = init if isinstance(init, torch.Tensor) else None
    n, c, h, w = init.shape if image is not None else init
    device = image.device if image is not None else torch.device(device or "cpu")
    fy = torch.fft.fftfreq(h, device=device)[:, None]
    fx = torch.fft.rfftfreq(w, device=device)[None, :]
    scale = 1.0 / torch.maximum(torch.sqrt(fx * fx + fy * fy), torch.tensor(1.0 / max(h, w))) ** decay_power
    color = (_COLOR_SQRT_COV if c == 3 else torch.eye(c)).to(device)   # grey: no colours to decorrelate
    if image is None:
        spectrum = (torch.randn(n, c, h, w // 2 + 1, 2, generator=generator) * sd).to(device)
    else:   # invert image_fn: logit, undo the colour mixing, forward FFT, undo the 1/f scaling
        logits = torch.logit(image.detach().float().clamp(1e-3, 1 - 1e-3))
        decorrelated = torch.einsum("ij,njhw->nihw", torch.linalg.inv(color), logits)
        spectrum = torch.view_as_real(torch.fft.rfft2(decorrelated * _FOURIER_GAIN, norm="ortho") / scale)
    spectrum = spectrum.contiguous().requires_grad_(True)

    def image_fn():
        flat = torch.fft.irfft2(torch.view_as_complex(spectrum) * scale, s=(h, w), norm="ortho") / _FOURIER_GAIN
        return torch.sigmoid(torch.einsum("ij,njhw->nihw", color, flat))

    return Param([spectrum], image_fn, None, lambda image: fourier(image, decay_power=decay_power))


def resize_image(x: torch.Tensor, h: int, w: int, clamp: bool = True, wrap: bool = False) -> torch.Tensor:
    """Bicubic resize of `[N, C, H, W]` images, antialiased when shrinking, clamped to [0, 1] unless
    `clamp` is False (for differences of images, which may be negative).

    `wrap`: the image is periodic (a tileable texture): it is resized in the Fourier domain (its spectrum
    cut or zero-padded), the exact band-limited resize of a periodic signal. The result tiles, and every
    output pixel is interpolated alike: bicubic's kernel weighs the pixels at and between the input's
    samples differently, which left a 2-pixel lattice after each coarse-to-fine scale (neighbouring
    column differences alternating 1.25 / 0.76 of their mean on ResNet18 textures) that the wrap-around
    seam, falling on that lattice, showed as a seam."""
    if x.shape[-2:] == (h, w):
        return x
    if wrap:
        y = _fourier_resize(x, h, w)
        return y.clamp(0, 1) if clamp else y
    y = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
    return y.clamp(0, 1) if clamp else y


def _fourier_resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Periodic images resized by cutting or zero-padding their 2-D spectrum (mean kept).

    In float64, one image plane at a time into the output: a complex128 spectrum is 16 bytes a pixel, so all
    planes at once added 1.88 GiB to resize 1x3x2048² to 4096² (the step before a print-size `--tile` run's
    last scale), nearly a 2G `--memory` budget; a plane at a time adds 0.76 GiB there, the output included."""
    out = x.new_empty(*x.shape[:-2], h, w)
    gain = h * w / (x.shape[-2] * x.shape[-1])
    for src, dst in zip(x.reshape(-1, *x.shape[-2:]), out.view(-1, h, w)):
        spectrum = torch.fft.fft2(src.double())
        for dim, size in ((-2, h), (-1, w)):
            spectrum = _spectrum_resize(spectrum, size, dim)
        dst.copy_(torch.fft.ifft2(spectrum).real).mul_(gain)
    return out


def _spectrum_resize(spectrum: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    """An FFT along `dim` with its frequencies kept up to n's Nyquist and zeros added above the input's.

    An even length's Nyquist bin stands for both +n/2 and -n/2: split in two when the spectrum grows,
    the two summed when it shrinks to an even length, so a real image stays real."""
    m = spectrum.shape[dim]
    k = min(m, n)
    low, high = (k + 1) // 2, k // 2          # frequencies 0..low-1 and -high..-1 are kept
    pos, neg = spectrum.narrow(dim, 0, low), spectrum.narrow(dim, m - high, high)
    if k % 2 == 0 and k == n and m > n:       # shrinking to an even n: fold +n/2 onto -n/2
        neg = torch.cat([neg.narrow(dim, 0, 1) + spectrum.narrow(dim, high, 1), neg.narrow(dim, 1, high - 1)], dim)
    if k % 2 == 0 and k == m and n > m:       # growing from an even m: split its Nyquist bin
        half = neg.narrow(dim, 0, 1) / 2
        pos, neg = torch.cat([pos, half], dim), torch.cat([half, neg.narrow(dim, 1, high - 1)], dim)
    shape = list(spectrum.shape)
    shape[dim] = n - pos.shape[dim] - neg.shape[dim]
    return torch.cat([pos, spectrum.new_zeros(shape), neg], dim)
