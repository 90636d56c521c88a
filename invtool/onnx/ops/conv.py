"""Conv and ConvTranspose, and the ONNX padding rules (explicit pads, auto_pad) the pools share.

ONNX pads are `[x1_begin, x2_begin, …, x1_end, x2_end]` over the spatial axes and may be asymmetric;
torch convolutions take one symmetric pad per axis, so an asymmetric pad becomes an `F.pad` first.
"""
import math

import torch
import torch.nn.functional as F

from ...errors import InvtoolError
from ..registry import converter

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def same_pads(sizes, kernel, strides, dilations, auto_pad: str) -> list[int]:
    """ONNX pads for auto_pad SAME_UPPER/SAME_LOWER: output = ceil(input / stride), odd extra at end/begin."""
    begins, ends = [], []
    for n, k, s, d in zip(sizes, kernel, strides, dilations):
        total = max(0, (math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n)
        small, large = total // 2, total - total // 2
        begins.append(small if auto_pad == "SAME_UPPER" else large)
        ends.append(large if auto_pad == "SAME_UPPER" else small)
    return begins + ends


def resolve_pads(x: torch.Tensor, kernel, strides, dilations, auto_pad: str, pads) -> list[int]:
    """The explicit ONNX pads `[begins…, ends…]` a node means, whatever form its attributes take."""
    rank = len(kernel)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return same_pads(x.shape[2:], kernel, strides, dilations, auto_pad)
    if auto_pad == "VALID" or pads is None:
        return [0] * (2 * rank)
    if auto_pad != "NOTSET":
        raise InvtoolError(f"unknown auto_pad {auto_pad!r}; use NOTSET, SAME_UPPER, SAME_LOWER or VALID")
    return list(pads)


def torch_pad(pads) -> list[int]:
    """ONNX `[begins…, ends…]` -> the F.pad order `(last_begin, last_end, …, first_begin, first_end)`."""
    rank = len(pads) // 2
    out = []
    for i in reversed(range(rank)):
        out += [pads[i], pads[i + rank]]
    return out


def symmetric(pads) -> bool:
    rank = len(pads) // 2
    return list(pads[:rank]) == list(pads[rank:])


@converter("Conv")
def conv(x, w, b=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None,
         strides=None):
    rank = w.dim() - 2
    kernel = kernel_shape or list(w.shape[2:])
    strides = strides or [1] * rank
    dilations = dilations or [1] * rank
    pads = resolve_pads(x, kernel, strides, dilations, auto_pad, pads)
    if not symmetric(pads):
        x, pads = F.pad(x, torch_pad(pads)), [0] * (2 * rank)
    return _CONV[rank](x, w, b, strides, pads[:rank], dilations, group)


@converter("ConvTranspose")
def conv_transpose(x, w, b=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
                   output_padding=None, output_shape=None, pads=None, strides=None):
    """One torch call when it can express the pads; else the full transposed convolution, cropped by
    the pads and extended by output_padding (zeros + bias)."""
    rank = w.dim() - 2
    kernel = kernel_shape or list(w.shape[2:])
    strides = strides or [1] * rank
    dilations = dilations or [1] * rank
    output_padding = output_padding or [0] * rank
    full = [s * (n - 1) + op + (k - 1) * d + 1
            for n, s, op, k, d in zip(x.shape[2:], strides, output_padding, kernel, dilations)]
    if output_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        target = output_shape[-rank:] if output_shape is not None else [n * s for n, s in zip(x.shape[2:], strides)]
        totals = [f - t for f, t in zip(full, target)]
        upper = auto_pad == "SAME_UPPER"  # else (NOTSET, SAME_LOWER) the begin takes the odd cell
        pads = ([t // 2 if upper else t - t // 2 for t in totals]
                + [t - t // 2 if upper else t // 2 for t in totals])
    elif auto_pad == "VALID" or pads is None:
        pads = [0] * (2 * rank)
    if symmetric(pads) and all(0 <= op < max(s, d) for op, s, d in zip(output_padding, strides, dilations)):
        return _CONV_T[rank](x, w, b, strides, pads[:rank], output_padding, group, dilations)
    y = _CONV_T[rank](x, w, None, strides, 0, 0, group, dilations)
    crop = [-p for p in pads[:rank]] + [op - p for p, op in zip(pads[rank:], output_padding)]
    y = F.pad(y, torch_pad(crop))
    if b is not None:
        y = y + b.reshape(-1, *[1] * rank)
    return y
