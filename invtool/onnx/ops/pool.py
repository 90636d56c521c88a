"""MaxPool, AveragePool and their global forms, with ONNX padding and ceil_mode semantics.

The common case (symmetric pads within half the kernel, no ceil overhang) maps to one torch pooling
call. Everything else pads explicitly first: with -inf for max pooling, so a pad is never selected,
and with zeros for average pooling, which then divides by the count of cells the window covers
(the input only, or input and explicit pads with count_include_pad), never the ceil_mode overhang.
"""
import math

import torch.nn.functional as F

from ..registry import converter
from .conv import resolve_pads, torch_pad

_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _geometry(x, kernel, strides, dilations, auto_pad, pads, ceil_mode):
    """(strides, dilations, explicit pads, overhang): overhang is the extra end pad ceil_mode needs."""
    rank = len(kernel)
    strides = strides or [1] * rank
    dilations = dilations or [1] * rank
    pads = resolve_pads(x, kernel, strides, dilations, auto_pad, pads)
    overhang = []
    for i, (n, k, s, d) in enumerate(zip(x.shape[2:], kernel, strides, dilations)):
        span = n + pads[i] + pads[i + rank] - ((k - 1) * d + 1)
        out = span // s + 1
        if ceil_mode:
            out = math.ceil(span / s) + 1
            if (out - 1) * s >= n + pads[i]:  # the last window must start inside the input or the begin pad
                out -= 1
        overhang.append(max(0, (out - 1) * s - span))
    return strides, dilations, pads, overhang


def _fits_torch(kernel, dilations, pads, overhang) -> bool:
    """True when torch's own symmetric `padding` argument means exactly these pads."""
    rank = len(kernel)
    return (not any(overhang) and pads[:rank] == pads[rank:]
            and all(2 * p <= (k - 1) * d + 1 for p, k, d in zip(pads, kernel, dilations)))


def _end_pads(pads, overhang):
    rank = len(overhang)
    return pads[:rank] + [p + o for p, o in zip(pads[rank:], overhang)]


@converter("MaxPool")
def max_pool(x, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, pads=None,
             storage_order=0, strides=None):
    """Max pooling; the optional Indices output is not produced (no feature tap needs it)."""
    rank = len(kernel_shape)
    strides, dilations, pads, overhang = _geometry(x, kernel_shape, strides, dilations, auto_pad, pads, ceil_mode)
    if _fits_torch(kernel_shape, dilations, pads, overhang):
        return _MAX[rank](x, kernel_shape, strides, pads[:rank], dilations)
    x = F.pad(x, torch_pad(_end_pads(pads, overhang)), value=-math.inf)
    return _MAX[rank](x, kernel_shape, strides, 0, dilations)


@converter("AveragePool")
def average_pool(x, *, auto_pad="NOTSET", ceil_mode=0, count_include_pad=0, dilations=None,
                 kernel_shape=None, pads=None, strides=None):
    rank = len(kernel_shape)
    strides, dilations, pads, overhang = _geometry(x, kernel_shape, strides, dilations, auto_pad, pads, ceil_mode)
    if _fits_torch(kernel_shape, dilations, pads, overhang) and all(d == 1 for d in dilations):
        return _AVG[rank](x, kernel_shape, strides, pads[:rank], count_include_pad=bool(count_include_pad))
    # window sums as a depthwise convolution with a ones kernel (dilations included), divided by the
    # number of counted cells under each window
    ones = x.new_ones(1, 1, *kernel_shape)
    padding = torch_pad(_end_pads(pads, overhang))
    counted = x.new_ones(1, 1, *x.shape[2:])
    if count_include_pad:
        counted = F.pad(F.pad(counted, torch_pad(pads), value=1.0), torch_pad([0] * rank + overhang))
    else:
        counted = F.pad(counted, padding)
    sums = _CONV[rank](F.pad(x.flatten(0, 1).unsqueeze(1), padding), ones, None, strides, 0, dilations)
    counts = _CONV[rank](counted, ones, None, strides, 0, dilations)
    return (sums / counts).reshape(*x.shape[:2], *sums.shape[2:])


@converter("GlobalAveragePool")
def global_average_pool(x):
    return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


@converter("GlobalMaxPool")
def global_max_pool(x):
    return x.amax(dim=tuple(range(2, x.dim())), keepdim=True)
