"""Shape plumbing: Shape, Gather, Reshape, Concat, Slice, Pad, Constant, Cast, … as exporters emit it.

Shape values are int64 tensors, so the builder can fold a chain of these nodes to a constant by
calling the same converters at build time; `.tolist()` turns them into Python ints where torch wants
them. Inputs that moved from attributes to inputs in later opsets (Squeeze axes, Slice starts, Pad
pads, Split sizes) share one parameter name for both forms.
"""
import math

import torch
import torch.nn.functional as F
from onnx import TensorProto

from ...errors import InvtoolError
from ..registry import converter
from .elementwise import unsigned_via_int64

TORCH_DTYPES = {
    TensorProto.FLOAT: torch.float32, TensorProto.DOUBLE: torch.float64, TensorProto.FLOAT16: torch.float16,
    TensorProto.BFLOAT16: torch.bfloat16, TensorProto.INT64: torch.int64, TensorProto.INT32: torch.int32,
    TensorProto.INT16: torch.int16, TensorProto.INT8: torch.int8, TensorProto.UINT8: torch.uint8,
    TensorProto.UINT16: torch.uint16, TensorProto.UINT32: torch.uint32, TensorProto.UINT64: torch.uint64,
    TensorProto.BOOL: torch.bool,
}


def _ints(v) -> list[int]:
    """An attribute list or a shape/axes tensor as Python ints."""
    return [int(i) for i in (v.tolist() if isinstance(v, torch.Tensor) else v)]


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def torch_dtype(onnx_type: int) -> torch.dtype:
    if onnx_type not in TORCH_DTYPES:
        raise InvtoolError(f"unsupported tensor type {TensorProto.DataType.Name(onnx_type)}; "
                           f"supported: {', '.join(TensorProto.DataType.Name(t) for t in TORCH_DTYPES)}")
    return TORCH_DTYPES[onnx_type]


@converter("Identity")
def identity(x):
    return x


@converter("Dropout", multi_output=True)
def dropout(x, ratio=None, training_mode=None, *, is_test=0, seed=None, consumed_inputs=None):
    """Identity: invtool evaluates networks, so Dropout is never active. Its mask is what ONNX Runtime
    gives in inference: zeros before opset 10, False for opsets 10-11, True from 12."""
    return x, torch.zeros_like(x)


@converter("Dropout", since=10, multi_output=True)
def dropout_10(x, ratio=None, training_mode=None, *, seed=None):
    return x, torch.zeros_like(x, dtype=torch.bool)


@converter("Dropout", since=12, multi_output=True)
def dropout_12(x, ratio=None, training_mode=None, *, seed=None):
    return x, torch.ones_like(x, dtype=torch.bool)


@converter("Constant")
def constant(*, value=None, value_float=None, value_floats=None, value_int=None, value_ints=None,
             sparse_value=None, value_string=None, value_strings=None):
    if value is not None:
        return value
    if value_float is not None:
        return torch.tensor(value_float, dtype=torch.float32)
    if value_floats is not None:
        return torch.tensor(value_floats, dtype=torch.float32)
    if value_int is not None:
        return torch.tensor(value_int, dtype=torch.int64)
    if value_ints is not None:
        return torch.tensor(value_ints, dtype=torch.int64)
    raise InvtoolError("unsupported Constant: sparse or string values; "
                       "store the constant as a dense numeric tensor")


@converter("ConstantOfShape", host_inputs=("shape",))
def constant_of_shape(shape, *, value=None):
    fill = value if value is not None else torch.zeros(1, dtype=torch.float32)
    return fill.reshape(()).expand(_ints(shape)).clone()


@converter("Cast")
def cast(x, *, to, saturate=1, round_mode="up"):
    return x.to(torch_dtype(to))


@converter("CastLike")
def cast_like(x, like, *, saturate=1, round_mode="up"):
    return x.to(like.dtype)


@converter("Shape")
def shape(x, *, start=0, end=None):
    """On the CPU whatever x's device: shapes are host values (see graph.py), read with no sync."""
    return torch.tensor(x.shape[start:end], dtype=torch.int64)


@converter("Size")
def size(x):
    return torch.tensor(x.numel(), dtype=torch.int64)


@converter("Gather")
@unsigned_via_int64
def gather(data, indices, *, axis=0):
    """out = data.shape[:axis] + indices.shape + data.shape[axis+1:]; negative indices count from the end."""
    axis = _axis(axis, data.dim())
    n = data.shape[axis]
    indices = torch.where(indices < 0, indices + n, indices)
    picked = data.index_select(axis, indices.reshape(-1).long())
    return picked.reshape((*data.shape[:axis], *indices.shape, *data.shape[axis + 1:]))


@converter("GatherElements")
@unsigned_via_int64
def gather_elements(data, indices, *, axis=0):
    n = data.shape[axis]
    return torch.gather(data, axis, torch.where(indices < 0, indices + n, indices).long())


@converter("Reshape", host_inputs=("shape",))
def reshape(x, shape, *, allowzero=0):
    """0 copies the input's dimension (unless allowzero), -1 is inferred."""
    dims = _ints(shape)
    if not allowzero:
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(dims)


@converter("Flatten")
def flatten(x, *, axis=1):
    axis = _axis(axis, x.dim())
    return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


@converter("Transpose")
def transpose(x, *, perm=None):
    return x.permute(perm if perm is not None else list(reversed(range(x.dim()))))


@converter("Squeeze", host_inputs=("axes",))
def squeeze(x, axes=None):
    """Axes are an attribute before opset 13 and an optional input from 13 on; none squeezes every 1."""
    if axes is None:
        return x.squeeze()
    return x.squeeze(tuple(_axis(a, x.dim()) for a in _ints(axes)))


@converter("Unsqueeze", host_inputs=("axes",))
def unsqueeze(x, axes):
    """Axes (attribute before 13, input from 13) index the output, so insert them in ascending order."""
    rank = x.dim() + len(_ints(axes))
    for a in sorted(_axis(a, rank) for a in _ints(axes)):
        x = x.unsqueeze(a)
    return x


@converter("Concat")
def concat(*xs, axis):
    return torch.cat(xs, dim=axis)


@converter("Split", multi_output=True, host_inputs=("split",))
def split(x, split=None, *, axis=0, num_outputs=None):
    """Sizes from the attribute (before 13) or input (13 on), else num_outputs parts (18 on)."""
    if split is not None:
        return tuple(torch.split(x, _ints(split), dim=axis))
    if num_outputs is None:
        raise InvtoolError("Split without sizes needs the number of outputs; the graph builder passes it "
                           "as num_outputs")
    return tuple(torch.split(x, math.ceil(x.shape[axis] / num_outputs), dim=axis))


@converter("Slice", host_inputs=("starts", "ends", "axes", "steps"))
def slice_(x, starts, ends, axes=None, steps=None):
    """starts/ends/axes are attributes before opset 10, inputs (with steps) from 10 on.

    Bounds clamp like Python slices; a negative step walks backwards, done with index_select.
    """
    starts, ends = _ints(starts), _ints(ends)
    axes = _ints(axes) if axes is not None else list(range(len(starts)))
    steps = _ints(steps) if steps is not None else [1] * len(starts)
    index = [slice(None)] * x.dim()
    backwards = []
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = _axis(axis, x.dim())
        if step > 0:
            index[axis] = slice(*slice(start, end, step).indices(x.shape[axis]))
        else:
            backwards.append((axis, range(*slice(start, end, step).indices(x.shape[axis]))))
    x = x[tuple(index)]
    for axis, picks in backwards:
        x = x.index_select(axis, torch.tensor(list(picks), dtype=torch.int64, device=x.device))
    return x


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


@converter("Pad", host_inputs=("pads", "constant_value", "axes"))
def pad(x, pads, constant_value=None, axes=None, *, mode="constant", value=0.0):
    """pads (attribute before 11, input from 11) are `[begins…, ends…]` over all or the given axes.

    Negative pads crop. Non-constant modes pad the trailing axes only, as torch does.
    """
    pads = _ints(pads)
    n = len(pads) // 2
    axes = [_axis(a, x.dim()) for a in _ints(axes)] if axes is not None else list(range(x.dim()))
    begins, ends = [0] * x.dim(), [0] * x.dim()
    for a, b, e in zip(axes, pads[:n], pads[n:]):
        begins[a], ends[a] = b, e
    if mode not in _PAD_MODES:
        raise InvtoolError(f"unsupported Pad mode {mode!r}; supported: {', '.join(_PAD_MODES)}")
    # crop the negative pads first, then pad the positive ones
    x = x[tuple(slice(max(0, -b), x.shape[i] - max(0, -e)) for i, (b, e) in enumerate(zip(begins, ends)))]
    begins, ends = [max(0, b) for b in begins], [max(0, e) for e in ends]
    padded = [i for i in range(x.dim()) if begins[i] or ends[i]]
    if not padded:
        return x
    first = padded[0]
    spec = []
    for i in reversed(range(first, x.dim())):
        spec += [begins[i], ends[i]]
    if mode == "constant":
        fill = constant_value if constant_value is not None else value
        return F.pad(x, spec, value=float(fill) if x.dtype.is_floating_point else int(fill))
    if first == 0 or x.dim() - first > 3:
        raise InvtoolError(f"Pad mode {mode!r} pads at most the 3 trailing axes and never the first one; "
                           f"got pads on axes {padded} of a {x.dim()}-D tensor")
    return F.pad(x, spec, mode=_PAD_MODES[mode])


@converter("Expand", host_inputs=("shape",))
def expand(x, shape):
    """Bidirectional broadcast: a 1 in `shape` keeps x's dimension."""
    return x.expand(torch.broadcast_shapes(x.shape, tuple(_ints(shape))))


@converter("Tile", host_inputs=("repeats",))
def tile(x, repeats):
    return x.repeat(_ints(repeats))


@converter("Range", host_inputs=("start", "limit", "delta"))
def range_(start, limit, delta):
    return torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype, device=start.device)


@converter("DepthToSpace")
def depth_to_space(x, *, blocksize, mode="DCR"):
    """DCR (depth-column-row, the default, as tf2onnx emits) or CRD (= torch's pixel_shuffle)."""
    if mode == "CRD":
        return F.pixel_shuffle(x, blocksize)
    n, c, h, w = x.shape
    b = blocksize
    return x.reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2).reshape(n, c // (b * b), h * b, w * b)


@converter("SpaceToDepth")
def space_to_depth(x, *, blocksize):
    n, c, h, w = x.shape
    b = blocksize
    return x.reshape(n, c, h // b, b, w // b, b).permute(0, 3, 5, 1, 2, 4).reshape(n, c * b * b, h // b, w // b)
