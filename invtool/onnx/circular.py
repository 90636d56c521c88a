"""Circular padding: the rebuilt network wraps around, for images that tile (texture `--tile`).

With every padded Conv and pool padding circularly instead of with zeros (or -inf), the network is
translation-equivariant on the torus: the features of a periodic image are periodic, whatever the
model's receptive field, so no part of the image is a border and no seam is preferred. Exact when the
image's sides are multiples of the deepest layer's stride (else a pooling drops a remainder there).

Example:
    >>> gm = build(onnx.load("models/vgg16.onnx"), ["pool4"], padding="circular")
"""
import functools

import torch.nn.functional as F

from .ops.conv import resolve_pads, torch_pad

PADDED_OPS = ("Conv", "MaxPool", "AveragePool")


def circular(fn):
    """A Conv/MaxPool/AveragePool converter that pads its input circularly by the node's own pads (explicit
    or auto_pad) and then runs unpadded."""
    @functools.wraps(fn)
    def wrapped(x, *inputs, auto_pad="NOTSET", pads=None, kernel_shape=None, strides=None, dilations=None, **attrs):
        kernel = kernel_shape or list(inputs[0].shape[2:])
        rank = len(kernel)
        strides, dilations = strides or [1] * rank, dilations or [1] * rank
        resolved = resolve_pads(x, kernel, strides, dilations, auto_pad, pads)
        if any(resolved):
            x = F.pad(x, torch_pad(resolved), mode="circular")
        return fn(x, *inputs, pads=[0] * (2 * rank), kernel_shape=kernel_shape, strides=strides,
                  dilations=dilations, **attrs)
    return wrapped
