"""Resize and Upsample: nearest, (multi)linear and cubic, every coordinate transformation mode.

Interpolation is separable, so each resized axis is done on its own: map every output coordinate to
a source coordinate (the ONNX coordinate_transformation_mode), then pick (nearest) or blend
(linear, cubic) input slices along that axis. One code path serves every mode and opset, with float32
coordinates as ONNX Runtime computes them, and stays differentiable.
"""
import math

import torch

from ...errors import InvtoolError
from ..registry import converter


def _source_coords(out_len: int, in_len: int, scale: float, mode: str, roi=(0.0, 1.0),
                   device=None) -> torch.Tensor:
    """The input coordinate each output index samples (float32, unclamped, on `device`)."""
    x = torch.arange(out_len, dtype=torch.float32, device=device)
    scale = torch.tensor(scale, dtype=torch.float32, device=device)
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        adjustment = out_len / (scale * in_len)
        offset = in_len / 2 * (1 - adjustment)
        return offset + (x + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if out_len > 1 else torch.zeros_like(x)
    if mode == "align_corners":  # the integer output length, as ONNX Runtime and torch divide by (ONNX's
        # reference takes in_len * scale, so its cases test_resize_downsample_scales_*_align_corners differ)
        return x * ((in_len - 1) / (out_len - 1)) if out_len > 1 else torch.zeros_like(x)
    if mode == "asymmetric":
        return x / scale
    if mode == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    if mode == "tf_crop_and_resize":
        start, end = roi
        if out_len > 1:
            return start * (in_len - 1) + x * ((end - start) * (in_len - 1) / (out_len - 1))
        return torch.full_like(x, 0.5 * (start + end) * (in_len - 1))
    raise InvtoolError(f"unsupported Resize coordinate_transformation_mode {mode!r}")


_ROUND = {
    "round_prefer_floor": lambda c: torch.ceil(c - 0.5),
    "round_prefer_ceil": lambda c: torch.floor(c + 0.5),
    "floor": torch.floor,
    "ceil": torch.ceil,
}


def _take(x, axis, index):
    return x.index_select(axis, index.clamp(0, x.shape[axis] - 1).long())


def _along(w: torch.Tensor, x: torch.Tensor, axis: int) -> torch.Tensor:
    """Per-position weights shaped to broadcast along `axis` of x."""
    return w.to(x.dtype).reshape(-1, *[1] * (x.dim() - axis - 1))


def _cubic_weights(t: torch.Tensor, a: float) -> list[torch.Tensor]:
    """Keys cubic convolution weights of the taps at offsets -1, 0, 1, 2 from floor(coordinate)."""
    def near(d):  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def _resize_axis(x, axis, out_len, scale, *, mode, coord_mode, nearest_mode, roi, cubic_coeff_a,
                 exclude_outside, extrapolation_value):
    n = x.shape[axis]
    c = _source_coords(out_len, n, scale, coord_mode, roi, x.device)
    if mode == "nearest":
        if nearest_mode == "simple":  # Upsample and Resize-10 in ONNX Runtime: floor up, ceil down
            nearest_mode = "ceil" if scale < 1 else "floor"
        y = _take(x, axis, _ROUND[nearest_mode](c))
    elif mode == "linear":
        inside = c.clamp(0, n - 1)
        i0 = torch.floor(inside)
        w = _along(inside - i0, x, axis)
        y = _take(x, axis, i0) * (1 - w) + _take(x, axis, i0 + 1) * w
    else:  # cubic
        i0 = torch.floor(c)
        taps = [i0 + k for k in (-1, 0, 1, 2)]
        weights = _cubic_weights(c - i0, cubic_coeff_a)
        if exclude_outside:
            weights = [w * ((i >= 0) & (i <= n - 1)) for w, i in zip(weights, taps)]
            total = sum(weights)
            weights = [w / total for w in weights]
        y = sum(_take(x, axis, i) * _along(w, x, axis) for i, w in zip(taps, weights))
    if coord_mode == "tf_crop_and_resize":
        outside = _along((c < 0) | (c > n - 1), x, axis).bool()
        y = torch.where(outside, torch.as_tensor(extrapolation_value, dtype=y.dtype, device=y.device), y)
    return y


def _interpolate(x, scales, sizes, *, mode="nearest", coord_mode="half_pixel", nearest_mode="round_prefer_floor",
                 roi=None, cubic_coeff_a=-0.75, exclude_outside=0, extrapolation_value=0.0):
    """Resize every axis whose scale is not 1 (or that tf_crop_and_resize crops)."""
    mode = {"bilinear": "linear", "trilinear": "linear"}.get(mode, mode)
    if mode not in ("nearest", "linear", "cubic"):
        raise InvtoolError(f"unsupported Resize mode {mode!r}; supported: nearest, linear, cubic")
    if nearest_mode not in (*_ROUND, "simple"):
        raise InvtoolError(f"unsupported Resize nearest_mode {nearest_mode!r}; supported: {', '.join(_ROUND)}")
    rank = x.dim()
    roi = roi if roi is not None else [0.0] * rank + [1.0] * rank
    for axis in range(rank):
        crop = coord_mode == "tf_crop_and_resize" and (roi[axis], roi[axis + rank]) != (0.0, 1.0)
        if sizes[axis] == x.shape[axis] and scales[axis] == 1.0 and not crop:
            continue
        x = _resize_axis(x, axis, sizes[axis], scales[axis], mode=mode, coord_mode=coord_mode,
                         nearest_mode=nearest_mode, roi=(roi[axis], roi[axis + rank]),
                         cubic_coeff_a=cubic_coeff_a, exclude_outside=exclude_outside,
                         extrapolation_value=extrapolation_value)
    return x


def _scaled(length: int, scale: float) -> int:
    """floor(length * scale) in float32, as ONNX Runtime computes it (0.9 * 10 gives 9, not 8)."""
    return int(torch.tensor(scale, dtype=torch.float32) * length)


def _floats(v):
    return None if v is None or (isinstance(v, torch.Tensor) and v.numel() == 0) else [
        float(s) for s in (v.tolist() if isinstance(v, torch.Tensor) else v)]


@converter("Upsample", host_inputs=("scales",))
@converter("Resize", since=10, host_inputs=("scales",))
def upsample(x, scales=None, *, mode="nearest"):
    """Upsample (scales an attribute at 7, an input from 9) and Resize-10: asymmetric coordinates."""
    scales = _floats(scales)
    sizes = [_scaled(n, s) for n, s in zip(x.shape, scales)]
    return _interpolate(x, scales, sizes, mode=mode, coord_mode="asymmetric", nearest_mode="simple")


@converter("Resize", since=11, host_inputs=("roi", "scales", "sizes"))
def resize(x, roi=None, scales=None, sizes=None, *, antialias=0, axes=None,
           coordinate_transformation_mode="half_pixel", cubic_coeff_a=-0.75, exclude_outside=0,
           extrapolation_value=0.0, keep_aspect_ratio_policy="stretch", mode="nearest",
           nearest_mode="round_prefer_floor"):
    """Resize from opset 11: output from `scales` or `sizes` (optionally over `axes`, opset 18)."""
    rank = x.dim()
    axes = [a + rank if a < 0 else a for a in (axes if axes is not None else range(rank))]
    roi_given = _floats(roi)
    roi = [0.0] * rank + [1.0] * rank
    if roi_given is not None and coordinate_transformation_mode == "tf_crop_and_resize":
        k = len(axes)
        for j, a in enumerate(axes):
            roi[a], roi[a + rank] = roi_given[j], roi_given[j + k]
    scale_of, size_of = [1.0] * rank, list(x.shape)
    given_sizes = None if sizes is None or sizes.numel() == 0 else [int(s) for s in sizes.tolist()]
    if given_sizes is not None:
        if keep_aspect_ratio_policy == "stretch":
            for a, s in zip(axes, given_sizes):
                size_of[a], scale_of[a] = s, s / x.shape[a]
        else:
            pick = min if keep_aspect_ratio_policy == "not_larger" else max
            common = pick(s / x.shape[a] for a, s in zip(axes, given_sizes))
            for a in axes:
                size_of[a], scale_of[a] = math.floor(common * x.shape[a] + 0.5), common
    else:
        given = _floats(scales)
        if given is None:
            raise InvtoolError("Resize needs scales or sizes; the node has neither")
        for a, s in zip(axes, given):  # ONNX Runtime ignores the roi here, unlike the spec's formula
            size_of[a], scale_of[a] = _scaled(x.shape[a], s), s
    if antialias and mode != "nearest" and any(s < 1 for s in scale_of):
        raise InvtoolError("Resize with antialias=1 when downsampling is not supported; "
                           "export with antialias off")
    return _interpolate(x, scale_of, size_of, mode=mode, coord_mode=coordinate_transformation_mode,
                        nearest_mode=nearest_mode, roi=roi, cubic_coeff_a=cubic_coeff_a,
                        exclude_outside=exclude_outside, extrapolation_value=extrapolation_value)
