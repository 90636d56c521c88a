"""Broadcasting arithmetic and comparisons, pointwise math, and the Reduce*/ArgMax reductions.

ONNX broadcasting (opset 7+) is numpy's, which torch follows, so binaries map one to one.
"""
import functools

import torch

from ..registry import converter


@converter("Div")
def div(a, b):
    """Integer division truncates toward zero in ONNX (C semantics), unlike Python's floor."""
    if a.dtype.is_floating_point:
        return a / b
    return torch.div(a, b, rounding_mode="trunc")


@converter("Mod")
def mod(a, b, *, fmod=0):
    return torch.fmod(a, b) if fmod else torch.remainder(a, b)


@converter("Pow")
def pow_(x, y):
    return torch.pow(x, y).to(x.dtype)


@converter("Sum")
def sum_(*xs):
    return functools.reduce(torch.add, xs)


@converter("Mean")
def mean(*xs):
    return functools.reduce(torch.add, xs) / len(xs)


@converter("Max")
def max_(*xs):
    return functools.reduce(torch.maximum, xs)


@converter("Min")
def min_(*xs):
    return functools.reduce(torch.minimum, xs)


# ops that are one torch function with the same arguments
for _op, _fn in {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Equal": torch.eq, "Less": torch.lt,
                 "Greater": torch.gt, "Not": torch.logical_not, "And": torch.logical_and,
                 "Or": torch.logical_or, "Where": torch.where, "Abs": torch.abs, "Neg": torch.neg, "Floor": torch.floor, "Ceil": torch.ceil,
                 "Round": torch.round, "Sqrt": torch.sqrt, "Exp": torch.exp, "Log": torch.log,
                 "Reciprocal": torch.reciprocal, "Erf": torch.erf, "Sign": torch.sign,
                 "Sin": torch.sin, "Cos": torch.cos}.items():
    converter(_op)(_fn)


def _legacy_broadcast(fn):
    """A binary before opset 7: with broadcast=1, B broadcasts to A with its dimensions aligned to A's
    from `axis` on (from the end, as numpy does, without axis); broadcast=0 means equal shapes."""
    def binary(a, b, *, broadcast=0, axis=None):
        if broadcast and axis is not None:
            axis = axis + a.dim() if axis < 0 else axis
            b = b.reshape(*b.shape, *[1] * (a.dim() - axis - b.dim()))
        return fn(a, b)
    binary.__name__ = binary.__qualname__ = f"{fn.__name__}_legacy"
    return binary


# opsets 1-6 take the legacy form (it replaces the since=1 registrations above), 7 on numpy's
for _op, _fn in {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": div, "Pow": pow_, "Equal": torch.eq,
                 "Less": torch.lt, "Greater": torch.gt, "And": torch.logical_and, "Or": torch.logical_or}.items():
    converter(_op)(_legacy_broadcast(_fn))
    converter(_op, since=7)(_fn)


def _axes(x, axes, noop_with_empty_axes):
    """Reduction axes from the attribute (list) or input (tensor) form; None means every axis."""
    if isinstance(axes, torch.Tensor):
        axes = axes.tolist()
    if not axes:
        return () if noop_with_empty_axes else tuple(range(x.dim()))
    return tuple(axes)


def _reduction(op_type, fn, pointwise=None):
    """A Reduce* converter: axes as attribute (older opsets) or as optional input (13/18 on).

    With no axes and noop_with_empty_axes, ONNX Runtime still applies the pointwise part (|x| for
    ReduceL2, x² for ReduceSumSquare) and reduces nothing.
    """
    def reduce(x, axes=None, *, keepdims=1, noop_with_empty_axes=0):
        dims = _axes(x, axes, noop_with_empty_axes)
        if not dims:
            return pointwise(x) if pointwise else x
        return fn(x, dim=dims, keepdim=bool(keepdims))
    reduce.__name__ = reduce.__qualname__ = op_type
    converter(op_type, host_inputs=("axes",))(reduce)


_reduction("ReduceMean", torch.mean)
_reduction("ReduceSum", torch.sum)
_reduction("ReduceMax", torch.amax)
_reduction("ReduceMin", torch.amin)
_reduction("ReduceL2", lambda x, dim, keepdim: torch.linalg.vector_norm(x, 2, dim, keepdim), torch.abs)
_reduction("ReduceSumSquare", lambda x, dim, keepdim: torch.sum(x * x, dim=dim, keepdim=keepdim),
           torch.square)


@converter("ArgMax")
def arg_max(x, *, axis=0, keepdims=1, select_last_index=0):
    if select_last_index:
        return x.shape[axis] - 1 - torch.argmax(x.flip(axis), axis, bool(keepdims))
    return torch.argmax(x, axis, bool(keepdims))
