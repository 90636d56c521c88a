"""Broadcasting arithmetic and comparisons, pointwise math, and the Reduce*/ArgMax reductions.

ONNX broadcasting (opset 7+) is numpy's, which torch follows, so binaries map one to one; before opset 7
a binary broadcasts only when told to (`_legacy_broadcast`). Each op is registered once per version.

torch has no CPU kernels for most arithmetic on uint16/uint32/uint64 (add, lt, maximum, … raise
NotImplementedError). `unsigned_via_int64` computes them in int64 and casts back, for every converter
here that can see such inputs: one place, not one fix per op.
"""
import functools

import torch

from ..registry import converter

_WIDENED = (torch.uint16, torch.uint32, torch.uint64)
_SIGN_BIT = -(1 << 63)  # int64 with only the sign bit set


def _unsigned_divmod(a: torch.Tensor, b: torch.Tensor):
    """Quotient and remainder of uint64 values held bit for bit in int64 (a // b, a % b unsigned).

    Halve a (a logical shift, so it is non-negative), divide, double the quotient, then correct it by
    at most one; a divisor of 2^63 or more divides a at most once.
    """
    big = b < 0  # b >= 2^63
    ge = (a ^ _SIGN_BIT) >= (b ^ _SIGN_BIT)  # a >= b as unsigned
    divisor = torch.where(big | (b == 0), torch.ones_like(b), b)
    q = torch.div((a >> 1) & ~_SIGN_BIT, divisor, rounding_mode="trunc") << 1
    r = a - q * divisor
    once = (r ^ _SIGN_BIT) >= (divisor ^ _SIGN_BIT)
    q, r = q + once, r - once * divisor
    q = torch.where(big, ge.to(a.dtype), q)
    r = torch.where(big, torch.where(ge, a - b, a), r)
    return q, r


def unsigned_via_int64(fn=None, *, ordered=False, uint64=None):
    """Run `fn` on int64 copies of its uint16/32/64 tensor inputs; an int64 result is cast back to that type.

    uint16 and uint32 fit int64 exactly, and their results wrap modulo 2^16 / 2^32 when cast back, as
    unsigned arithmetic does. uint64 is held bit for bit (its value modulo 2^64), which keeps +, -, *
    and equality exact. `ordered` (comparisons, min/max, argmax): uint64 also flips its sign bit, which
    turns unsigned order into signed order, and flips it back in the result. `uint64`: a function of the
    int64-held operands that gives the unsigned result where the signed one differs (division).
    Other inputs pass through, and so do results that are not int64 (bool masks, floats) or are
    indices (`ordered="index"`, ArgMax).
    """
    if fn is None:
        return functools.partial(unsigned_via_int64, ordered=ordered, uint64=uint64)

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        dtype = next((a.dtype for a in args if isinstance(a, torch.Tensor) and a.dtype in _WIDENED), None)
        if dtype is None:
            return fn(*args, **kwargs)
        flip = bool(ordered) and dtype == torch.uint64

        def widen(a):
            if not (isinstance(a, torch.Tensor) and a.dtype in _WIDENED):
                return a
            return a.to(torch.int64) ^ _SIGN_BIT if flip else a.to(torch.int64)
        wide = [widen(a) for a in args]
        if dtype == torch.uint64 and uint64 is not None:
            y = uint64(*wide, **kwargs)
        else:
            y = fn(*wide, **kwargs)
        if y.dtype != torch.int64 or ordered == "index":
            return y
        return (y ^ _SIGN_BIT if flip else y).to(dtype)
    return wrapped


@converter("Div", since=7)
@unsigned_via_int64(uint64=lambda a, b: _unsigned_divmod(a, b)[0])
def div(a, b):
    """Integer division truncates toward zero in ONNX (C semantics), unlike Python's floor."""
    if a.dtype.is_floating_point:
        return a / b
    return torch.div(a, b, rounding_mode="trunc")


@converter("Mod", since=10)
@unsigned_via_int64(uint64=lambda a, b, fmod=0: _unsigned_divmod(a, b)[1])
def mod(a, b, *, fmod=0):
    return torch.fmod(a, b) if fmod else torch.remainder(a, b)


@converter("Pow", since=7)
@unsigned_via_int64
def pow_(x, y):
    return torch.pow(x, y).to(x.dtype)


@converter("Add", since=7)
@unsigned_via_int64
def add(a, b):
    return torch.add(a, b)


@converter("Sub", since=7)
@unsigned_via_int64
def sub(a, b):
    return torch.sub(a, b)


@converter("Mul", since=7)
@unsigned_via_int64
def mul(a, b):
    return torch.mul(a, b)


@converter("Equal", since=7)
@unsigned_via_int64
def equal(a, b):
    return torch.eq(a, b)


@converter("Less", since=7)
@unsigned_via_int64(ordered=True)
def less(a, b):
    return torch.lt(a, b)


@converter("Greater", since=7)
@unsigned_via_int64(ordered=True)
def greater(a, b):
    return torch.gt(a, b)


@converter("And", since=7)
def and_(a, b):
    return torch.logical_and(a, b)


@converter("Or", since=7)
def or_(a, b):
    return torch.logical_or(a, b)


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


# opsets 1-6: the same ops in their legacy broadcast form
converter("Add")(_legacy_broadcast(add))
converter("Sub")(_legacy_broadcast(sub))
converter("Mul")(_legacy_broadcast(mul))
converter("Div")(_legacy_broadcast(div))
converter("Pow")(_legacy_broadcast(pow_))
converter("Equal")(_legacy_broadcast(equal))
converter("Less")(_legacy_broadcast(less))
converter("Greater")(_legacy_broadcast(greater))
converter("And")(_legacy_broadcast(and_))
converter("Or")(_legacy_broadcast(or_))


@converter("Sum")
@unsigned_via_int64
def sum_(*xs):
    return functools.reduce(torch.add, xs)


@converter("Mean")
def mean(*xs):
    return functools.reduce(torch.add, xs) / len(xs)


@converter("Max")
@unsigned_via_int64(ordered=True)
def max_(*xs):
    return functools.reduce(torch.maximum, xs)


@converter("Min")
@unsigned_via_int64(ordered=True)
def min_(*xs):
    return functools.reduce(torch.minimum, xs)


@converter("Where")
def where(condition, x, y):
    return torch.where(condition, x, y)


@converter("Abs")
def abs_(x):
    return x if x.dtype in _WIDENED else torch.abs(x)  # torch has no abs for uint16-64: it is the identity


@converter("Sign")
def sign(x):
    return (x != 0).to(x.dtype) if x.dtype in _WIDENED else torch.sign(x)


# pointwise ops that are one torch function of their inputs, on types torch computes
converter("Not")(torch.logical_not)
converter("Neg")(torch.neg)
converter("Floor")(torch.floor)
converter("Ceil")(torch.ceil)
converter("Round")(torch.round)
converter("Sqrt")(torch.sqrt)
converter("Exp")(torch.exp)
converter("Log")(torch.log)
converter("Reciprocal")(torch.reciprocal)
converter("Erf")(torch.erf)
converter("Sin")(torch.sin)
converter("Cos")(torch.cos)


def _axes(x, axes, noop_with_empty_axes):
    """Reduction axes from the attribute (list) or input (tensor) form; None means every axis."""
    if isinstance(axes, torch.Tensor):
        axes = axes.tolist()
    if not axes:
        return () if noop_with_empty_axes else tuple(range(x.dim()))
    return tuple(a + x.dim() if a < 0 else a for a in axes)


def _empty_value(op_type: str, dtype: torch.dtype):
    """What ONNX gives a reduction over no elements: the identity of its operation (max: -inf or the
    type's lowest value, False; min: +inf, the highest, True); None where torch already gives it."""
    if op_type not in ("ReduceMax", "ReduceMin"):
        return None  # sums and norms are 0, the mean NaN, as torch computes them
    high = op_type == "ReduceMin"
    if dtype == torch.bool:
        return high
    if dtype.is_floating_point:
        return float("inf") if high else float("-inf")
    info = torch.iinfo(dtype)
    return info.max if high else info.min


def _reduction(op_type, fn, pointwise=None, ordered=False):
    """A Reduce* converter: axes as attribute (older opsets) or as optional input (13/18 on).

    With no axes and noop_with_empty_axes, ONNX Runtime still applies the pointwise part (|x| for
    ReduceL2, x² for ReduceSumSquare) and reduces nothing. Over an axis of length 0 the result is the
    operation's identity (`_empty_value`). The result keeps x's type, as in ONNX.
    """
    def reduce(x, axes=None, *, keepdims=1, noop_with_empty_axes=0):
        dims = _axes(x, axes, noop_with_empty_axes)
        if not dims:
            return pointwise(x) if pointwise else x
        empty = _empty_value(op_type, x.dtype)
        if empty is not None and any(x.shape[d] == 0 for d in dims):
            shape = torch.empty(x.shape, dtype=torch.bool, device="meta").sum(dim=dims, keepdim=bool(keepdims)).shape
            return torch.full(shape, empty, dtype=x.dtype, device=x.device)
        y = fn(x, dim=dims, keepdim=bool(keepdims))
        return y if y.dtype == x.dtype else y.to(x.dtype)  # torch sums int32 into int64; ONNX keeps the type
    reduce.__name__ = reduce.__qualname__ = op_type
    converter(op_type, host_inputs=("axes",))(unsigned_via_int64(reduce, ordered=ordered))


_reduction("ReduceMean", torch.mean)
_reduction("ReduceSum", torch.sum)
_reduction("ReduceMax", torch.amax, ordered=True)
_reduction("ReduceMin", torch.amin, ordered=True)
_reduction("ReduceL2", lambda x, dim, keepdim: torch.linalg.vector_norm(x, 2, dim, keepdim), torch.abs)
_reduction("ReduceSumSquare", lambda x, dim, keepdim: torch.sum(x * x, dim=dim, keepdim=keepdim),
           torch.square)


@converter("ArgMax")
@unsigned_via_int64(ordered="index")
def arg_max(x, *, axis=0, keepdims=1, select_last_index=0):
    if select_last_index:
        return x.shape[axis] - 1 - torch.argmax(x.flip(axis), axis, bool(keepdims))
    return torch.argmax(x, axis, bool(keepdims))
