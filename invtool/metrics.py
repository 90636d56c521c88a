"""How good a reconstruction is: PSNR and SSIM against the original image (scikit-image's), and the
normalised feature error at the layers it was reconstructed from. scikit-image (and with it scipy) is
imported when PSNR or SSIM is first computed, not with this module: `invtool invert --help` and the
commands that compute no such metric do not load it.

Example:
    >>> reconstruction_metrics(model, original, result, ["conv3_1"])   # {'psnr', 'ssim', 'feature_error': {layer: ...}}
"""
import numpy as np
import torch

from . import losses


def _hwc(x: torch.Tensor) -> np.ndarray:
    """`[1, 3, H, W]` in [0, 1] -> H x W x 3 float64, clipped to [0, 1] as the written PNG is."""
    return x.detach().cpu().double()[0].clamp(0, 1).permute(1, 2, 0).numpy()


def psnr(original: torch.Tensor, image: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of `image` against `original` (both `[1, 3, H, W]` in [0, 1])."""
    from skimage.metrics import peak_signal_noise_ratio

    return float(peak_signal_noise_ratio(_hwc(original), _hwc(image), data_range=1.0))


def ssim(original: torch.Tensor, image: torch.Tensor) -> float:
    """Structural similarity (Wang et al. 2004, 7x7 windows, mean over the colour channels), in [-1, 1]."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(_hwc(original), _hwc(image), data_range=1.0, channel_axis=2))


def feature_errors(model, original: torch.Tensor, image: torch.Tensor, layers) -> dict[str, float]:
    """‖Φ(image) − Φ(original)‖² / ‖Φ(original)‖² at each layer (0: the layer cannot tell them apart)."""
    layers = list(layers)
    with torch.no_grad():
        both = model.features(torch.cat([original, image]).to(model.device), layers)
    return {n: float(losses.normalized_feature_error(f[1:], f[:1])) for n, f in both.items()}


def reconstruction_metrics(model, original: torch.Tensor, image: torch.Tensor, layers) -> dict:
    """PSNR and SSIM against the original, and the feature error at each of `layers`, rounded for records."""
    return {"psnr": round(psnr(original, image), 3), "ssim": round(ssim(original, image), 4),
            "feature_error": {n: round(v, 5) for n, v in feature_errors(model, original, image, layers).items()}}


def neighbour_differences(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean |difference| of each pair of neighbouring columns, and of rows, of `[1, 3, H, W]`, the wrap-around
    pair (last, first) at the end of each: what a tiled image's seams are compared with."""
    x = image.detach().double()[0]
    cols = torch.cat([x, x[..., :1]], 2)
    rows = torch.cat([x, x[:, :1]], 1)
    return ((cols[..., 1:] - cols[..., :-1]).abs().mean((0, 1)),
            (rows[:, 1:] - rows[:, :-1]).abs().mean((0, 2)))


def seam_ratios(image: torch.Tensor) -> tuple[float, float]:
    """How visible a tiled image's seams are: mean |first - last column| over the mean difference of
    neighbouring columns, and the same for rows. About 1 when the wrap-around is like the interior."""
    return tuple(float(d[-1] / d[:-1].mean()) for d in neighbour_differences(image))
