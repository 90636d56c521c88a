"""Quantised ops, in the three forms ONNX Runtime's quantizer writes: QDQ (QuantizeLinear /
DequantizeLinear around float ops), QOperator (QLinearConv, QLinearMatMul and com.microsoft's QLinear*
and QGemm) and dynamic (DynamicQuantizeLinear, ConvInteger, MatMulInteger).

The com.microsoft ops are every one ORT's QOperator quantizer writes (onnxruntime.quantization.registry's
QLinearOpsRegistry: QGemm, QLinearAdd/Mul, QLinearLeakyRelu/Sigmoid, QLinearGlobalAveragePool,
QLinearAveragePool, QLinearConcat, QLinearSoftmax, QLinearWhere), plus QLinearReduceMean, which ORT
defines but neither writes nor runs on the CPU. The other ops it quantises it keeps as the plain ONNX op on
the integer tensor (MaxPool, Pad with the zero point or a quantised constant, Resize, Split, Transpose,
Reshape, Squeeze, Unsqueeze, Flatten, Gather, ArgMax): invtool's generic converters give ORT's integers on
the float-held values exactly, except Resize in linear mode, where ORT truncates its float result to the
integer type and the generic converter keeps the fraction.

The forward reproduces ONNX Runtime's integer arithmetic: round half to even, saturation to the integer
type's range, zero points, and the float32 order of operations of its CPU kernels (a requantised
accumulator is `float32(acc) * float32(scale_x * scale_w / scale_y)`, a quantised value `x / scale`).

Quantised tensors stay float tensors holding integer values, so gradients flow: `round_ste` rounds
in the forward and passes the gradient through unchanged (the straight-through estimator), and the
saturating clamp passes it inside the integer range. Integer accumulations (convolutions, matrix
products, sums) run in float64, exact for any int32 accumulator, then come back to float32 exactly
where ORT converts its int32 accumulator to float. The integer range of a result is read from the
dtype of its zero point, a build-time constant (`const_inputs` makes the builder refuse any other).

QOperator and dynamic models therefore equal ORT exactly (ResNet18: 0 difference at every tap). A QDQ
model runs float ops between its QuantizeLinear/DequantizeLinear pairs, and each such stage, fed ORT's
own inputs, quantises within one step of ORT (ORT_DISABLE_ALL, the file's semantics; ResNet18: 12 of 2.8M
values one step off, all at Conv outputs): torch's float32 conv sums in another order than ORT's MLAS, a
few ulps apart, which flips a value lying on a rounding boundary. End to end such a flip moves the values
that depend on it, and ResNet18's deep taps end up to 4 steps from ORT, with or without its fusion of
DQ->Conv->Q into QLinearConv (int8 activations are not fused on x86 and drift as much); ORT's fused and
unfused runs of a uint8 model differ from each other by up to 5 steps. Only ORT's own summation order
would remove the drift; no converter change can.
"""
import itertools
import math

import torch
from onnx import TensorProto

from ...errors import InvtoolError
from ..registry import converter
from .conv import conv, torch_pad
from .pool import _end_pads, _geometry

MS = "com.microsoft"
ACC = torch.float64  # integer accumulations: exact for every int32 value

# the integer range of each quantised type; 4-bit tensors are held as int8/uint8 (torch has no int4),
# their range comes from the ONNX type (output_dtype)
_RANGES = {torch.uint8: (0, 255), torch.int8: (-128, 127), torch.uint16: (0, 65535), torch.int16: (-32768, 32767),
           torch.int32: (-2 ** 31, 2 ** 31 - 1)}
_ONNX_RANGES = {TensorProto.UINT8: (0, 255), TensorProto.INT8: (-128, 127), TensorProto.UINT16: (0, 65535),
                TensorProto.INT16: (-32768, 32767), TensorProto.UINT4: (0, 15), TensorProto.INT4: (-8, 7)}


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half to even in the forward; the identity's gradient in the backward."""
    return x + (torch.round(x) - x).detach()


def saturate(x: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Clamp to an integer range; the gradient passes inside it."""
    return torch.clamp(x, lo, hi)


def _range(zero_point, output_dtype: int = 0, op: str = "") -> tuple[int, int]:
    """The integer range of a quantised result: from output_dtype if set, else the zero point's dtype
    (uint8 when there is none, as the spec says)."""
    if output_dtype:
        if output_dtype not in _ONNX_RANGES:
            raise InvtoolError(f"{op} to {TensorProto.DataType.Name(output_dtype)} is not supported; "
                               f"supported: {', '.join(TensorProto.DataType.Name(t) for t in _ONNX_RANGES)}")
        return _ONNX_RANGES[output_dtype]
    if zero_point is None:
        return _RANGES[torch.uint8]
    if zero_point.dtype not in _RANGES:
        raise InvtoolError(f"{op} zero point of type {zero_point.dtype} is not supported (float8 and other "
                           "non-integer quantised types); re-quantize the model to int8/uint8/int16/uint16/int4")
    return _RANGES[zero_point.dtype]


def _zp(zero_point, like: torch.Tensor) -> torch.Tensor:
    """The zero point as a float tensor on `like`'s device (0 when omitted)."""
    if zero_point is None:
        return torch.zeros((), dtype=like.dtype if like.is_floating_point() else torch.float32, device=like.device)
    return zero_point.to(device=like.device, dtype=torch.float32)


def _along(param: torch.Tensor, rank: int, axis: int) -> torch.Tensor:
    """A per-axis (1-D) scale or zero point shaped to broadcast along `axis` of a rank-`rank` tensor."""
    if param.dim() == 0 or param.numel() == 1 and param.dim() <= 1:
        return param.reshape(())
    axis = axis + rank if axis < 0 else axis
    return param.reshape(-1, *[1] * (rank - axis - 1))


def _centered(x: torch.Tensor, zero_point, dtype=torch.float32, axis: int = 1) -> torch.Tensor:
    """x - zero_point (per tensor, or per channel along `axis`) as a float tensor of `dtype`. An int32 operand
    is subtracted exactly in float64 and rounded once, as ORT's int32 difference converted to float."""
    zp = None if zero_point is None else _along(zero_point.to(x.device), x.dim(), axis)
    wide = [t for t in (x, zp) if t is not None and t.dtype in (torch.int32, torch.int64)]
    if dtype == ACC or wide:
        return (x.to(ACC) - (0.0 if zp is None else zp.to(ACC))).to(dtype)
    return x.float() if zp is None else x.float() - zp.float()


def _quantize(v: torch.Tensor, scale, zero_point, lo: int, hi: int) -> torch.Tensor:
    """saturate(round(v / scale) + zero_point), ORT's MlasQuantizeLinear, in float32."""
    return saturate(round_ste(v / scale) + zero_point, lo, hi)


def _requantize(acc: torch.Tensor, multiplier: torch.Tensor, y_zero_point, lo: int, hi: int) -> torch.Tensor:
    """An integer accumulator to the output's integer type: saturate(round(float32(acc) * multiplier) + zp)."""
    return saturate(round_ste(acc.float() * multiplier) + _zp(y_zero_point, multiplier), lo, hi)


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float32)


def _no_blocks(op: str, block_size: int):
    if block_size:
        raise InvtoolError(f"{op} with block_size={block_size} (blocked quantisation) is not supported; "
                           "quantize the model per tensor or per channel")


# --- QDQ ------------------------------------------------------------------------------------------
@converter("QuantizeLinear", since=10, const_inputs=("y_scale", "y_zero_point"))
def quantize_linear(x, y_scale, y_zero_point=None, *, axis=1, saturate=1, block_size=0, output_dtype=0,
                    precision=0):
    """y = saturate(round(x / y_scale) + y_zero_point): per tensor, or per channel along `axis`.
    `saturate` concerns float8 outputs only, which are refused."""
    _no_blocks("QuantizeLinear", block_size)
    lo, hi = _range(y_zero_point, output_dtype, "QuantizeLinear")
    x = x.float() if not x.is_floating_point() or x.dtype != torch.float32 else x
    scale = _along(_f32(y_scale.to(x.device)), x.dim(), axis)
    zp = _along(_zp(y_zero_point, x), x.dim(), axis)
    return _quantize(x, scale, zp, lo, hi)


@converter("DequantizeLinear", since=10, const_inputs=("x_scale", "x_zero_point"))
def dequantize_linear(x, x_scale, x_zero_point=None, *, axis=1, block_size=0, output_dtype=0):
    """y = (x - x_zero_point) * x_scale, the difference taken as ORT does in int32. Of a quantised
    initializer the builder computes this once, at build time: the weight is then a float constant."""
    _no_blocks("DequantizeLinear", block_size)
    scale = _along(_f32(x_scale.to(x.device)), x.dim(), axis)
    return _centered(x, x_zero_point, axis=axis) * scale


# --- dynamic --------------------------------------------------------------------------------------
@converter("DynamicQuantizeLinear", since=11, multi_output=True)
def dynamic_quantize_linear(x):
    """uint8 quantisation over the range of x (widened to hold 0), as ORT computes its parameters:
    scale = (max - min) / 255 (1 when max == min), zero point = round(clamp(-min / scale, 0, 255)).

    The scale and zero point are statistics of the image: they carry no gradient, the quantised value
    passes its gradient straight through."""
    with torch.no_grad():
        lo = torch.clamp(x.min(), max=0.0).float()
        hi = torch.clamp(x.max(), min=0.0).float()
        scale = torch.where(hi == lo, torch.ones_like(hi), (hi - lo) / 255.0)
        zero_point = torch.round(torch.clamp(0.0 - lo / scale, 0.0, 255.0))
    return _quantize(x.float(), scale, zero_point, 0, 255), scale, zero_point


@converter("ConvInteger", since=10)
def conv_integer(x, w, x_zero_point=None, w_zero_point=None, *, auto_pad="NOTSET", dilations=None, group=1,
                 kernel_shape=None, pads=None, strides=None):
    """The int32 convolution of (x - x_zero_point) and (w - w_zero_point), per-channel w zero points along
    the output channels; int32 values held exactly in float64 (a following Cast rounds them as ORT does)."""
    return conv(_centered(x, x_zero_point, ACC), _centered(w, w_zero_point, ACC, axis=0), None, auto_pad=auto_pad,
                dilations=dilations, group=group, kernel_shape=kernel_shape, pads=pads, strides=strides)


@converter("MatMulInteger", since=10)
def matmul_integer(a, b, a_zero_point=None, b_zero_point=None):
    """The int32 product (a - a_zero_point) @ (b - b_zero_point): a's zero point per row (axis -2) or per
    tensor, b's per column (the last axis) or per tensor; held exactly in float64."""
    return torch.matmul(_centered(a, a_zero_point, ACC, axis=-2), _centered(b, b_zero_point, ACC, axis=-1))


# --- QOperator ------------------------------------------------------------------------------------
@converter("QLinearConv", since=10, const_inputs=("x_scale", "x_zero_point", "w_scale", "w_zero_point", "y_scale",
                                                  "y_zero_point"))
def qlinear_conv(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B=None, *,
                 auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    """Conv of the centred integers plus the int32 bias B, requantised by x_scale * w_scale / y_scale
    (w per tensor or per output channel). Padding is x's zero point, i.e. zero once centred."""
    lo, hi = _range(y_zero_point, op="QLinearConv")
    acc = conv(_centered(x, x_zero_point, ACC), _centered(w, w_zero_point, ACC, axis=0),
               None if B is None else B.to(device=x.device, dtype=ACC), auto_pad=auto_pad, dilations=dilations,
               group=group, kernel_shape=kernel_shape, pads=pads, strides=strides)
    multiplier = _f32(x_scale.to(acc.device)) * _f32(w_scale.to(acc.device)) / _f32(y_scale.to(acc.device))
    return _requantize(acc, _along(multiplier, acc.dim(), 1), y_zero_point, lo, hi)


@converter("QLinearMatMul", since=10, const_inputs=("a_scale", "a_zero_point", "b_scale", "b_zero_point", "y_scale",
                                                    "y_zero_point"))
def qlinear_matmul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point):
    """MatMul of the centred integers, requantised by a_scale * b_scale / y_scale."""
    lo, hi = _range(y_zero_point, op="QLinearMatMul")
    acc = torch.matmul(_centered(a, a_zero_point, ACC, axis=-2), _centered(b, b_zero_point, ACC, axis=-1))
    multiplier = _f32(a_scale.to(acc.device)) * _f32(b_scale.to(acc.device)) / _f32(y_scale.to(acc.device))
    return _requantize(acc, _along(multiplier, acc.dim(), -1), y_zero_point, lo, hi)


@converter("QGemm", domain=MS, const_inputs=("a_scale", "a_zero_point", "b_scale", "b_zero_point", "y_scale",
                                             "y_zero_point"))
def qgemm(A, a_scale, a_zero_point, B, b_scale, b_zero_point, C=None, y_scale=None, y_zero_point=None, *,
          alpha=1.0, transA=0, transB=0):
    """alpha * A' @ B' + C on the centred integers (C an int32 bias at scale a_scale * b_scale): requantised
    by alpha * a_scale * b_scale / y_scale, or, without y_scale, the float result."""
    a = _centered(A, a_zero_point, ACC)
    b = _centered(B, b_zero_point, ACC, axis=0 if transB else -1)
    acc = (a.t() if transA else a) @ (b.t() if transB else b)
    if C is not None:
        acc = acc + C.to(device=acc.device, dtype=ACC)
    scale = _f32(a_scale.to(acc.device)) * _f32(b_scale.to(acc.device)).reshape(-1) * alpha
    if y_scale is None:
        return acc.float() * scale
    lo, hi = _range(y_zero_point, op="QGemm")
    return _requantize(acc, scale / _f32(y_scale.to(acc.device)), y_zero_point, lo, hi)


def _binary_operands(a, a_scale, a_zero_point, b, b_scale, b_zero_point):
    return (_centered(a, a_zero_point), _f32(a_scale.to(a.device)),
            _centered(b, b_zero_point).to(a.device), _f32(b_scale.to(a.device)))


@converter("QLinearAdd", domain=MS, const_inputs=("A_scale", "A_zero_point", "B_scale", "B_zero_point", "C_scale",
                                                  "C_zero_point"))
def qlinear_add(A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale, C_zero_point=None):
    """C = saturate(round(A_scale / C_scale * (A - A_zp) + B_scale / C_scale * (B - B_zp)) + C_zp), with the
    ratios and the sum in float32 as ORT's vectorised kernel forms them (the zero points in one constant
    term, two fused multiply-adds)."""
    lo, hi = _range(C_zero_point, op="QLinearAdd")
    c_scale = _f32(C_scale.to(A.device))
    ratio_a, ratio_b = _f32(A_scale.to(A.device)) / c_scale, _f32(B_scale.to(A.device)) / c_scale
    fixed = _zp(C_zero_point, c_scale) - (ratio_a * _zp(A_zero_point, c_scale) + ratio_b * _zp(B_zero_point, c_scale))
    # fma(a, ra, fma(b, rb, fixed)): the float64 products and sums are exact, one rounding to float32 each
    inner = (B.to(ACC) * ratio_b.to(ACC) + fixed.to(ACC)).float()
    value = (A.to(ACC) * ratio_a.to(ACC) + inner.to(ACC)).float()
    return saturate(round_ste(value), lo, hi)


@converter("QLinearMul", domain=MS, const_inputs=("A_scale", "A_zero_point", "B_scale", "B_zero_point", "C_scale",
                                                  "C_zero_point"))
def qlinear_mul(A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale, C_zero_point=None):
    """C = saturate(round((A - A_zp) * (B - B_zp) * (A_scale * B_scale / C_scale)) + C_zp)."""
    lo, hi = _range(C_zero_point, op="QLinearMul")
    a, a_scale, b, b_scale = _binary_operands(A, A_scale, A_zero_point, B, B_scale, B_zero_point)
    multiplier = a_scale * b_scale / _f32(C_scale.to(a.device))
    return saturate(round_ste(a * b * multiplier) + _zp(C_zero_point, a), lo, hi)


@converter("QLinearGlobalAveragePool", domain=MS, const_inputs=("x_scale", "x_zero_point", "y_scale",
                                                                "y_zero_point"))
def qlinear_global_average_pool(X, x_scale, x_zero_point, y_scale, y_zero_point, *, channels_last=0):
    """The int32 sum over the spatial axes (1..-2 when channels_last, else 2..), requantised by
    x_scale / (y_scale * count) as ORT computes it."""
    lo, hi = _range(y_zero_point, op="QLinearGlobalAveragePool")
    spatial = tuple(range(1, X.dim() - 1)) if channels_last else tuple(range(2, X.dim()))
    count = 1
    for d in spatial:
        count *= X.shape[d]
    acc = _centered(X, x_zero_point, ACC).sum(dim=spatial, keepdim=True)
    y_scale = _f32(y_scale.to(X.device))
    multiplier = _f32(x_scale.to(X.device)) / (y_scale * float(count))
    return _requantize(acc, multiplier, y_zero_point, lo, hi)


def _table_op(X, X_scale, X_zero_point, Y_scale, Y_zero_point, fn, op: str):
    """ORT's lookup-table ops: dequantize as X_scale * (x - zp) in float32, apply fn, quantize."""
    lo, hi = _range(Y_zero_point, op=op)
    value = fn(_f32(X_scale.to(X.device)) * _centered(X, X_zero_point))
    return _quantize(value, _f32(Y_scale.to(X.device)), _zp(Y_zero_point, value), lo, hi)


@converter("QLinearLeakyRelu", domain=MS, const_inputs=("X_scale", "X_zero_point", "Y_scale", "Y_zero_point"))
def qlinear_leaky_relu(X, X_scale, X_zero_point, Y_scale, Y_zero_point=None, *, alpha=0.01):
    return _table_op(X, X_scale, X_zero_point, Y_scale, Y_zero_point,
                     lambda v: torch.where(v >= 0, v, v * alpha), "QLinearLeakyRelu")


@converter("QLinearSigmoid", domain=MS, const_inputs=("X_scale", "X_zero_point", "Y_scale", "Y_zero_point"))
def qlinear_sigmoid(X, X_scale, X_zero_point, Y_scale, Y_zero_point=None):
    return _table_op(X, X_scale, X_zero_point, Y_scale, Y_zero_point, torch.sigmoid, "QLinearSigmoid")


def _requantized(x, scale, zero_point, y_scale, y_zero_point, op: str):
    """x quantised like Y: copied when its scale and zero point are Y's (ORT then copies), else requantised
    as ORT's lookup table does (dequantize in float32, then quantize to Y)."""
    same = bool(torch.equal(scale.float().cpu().reshape(-1), y_scale.float().cpu().reshape(-1))
                and torch.equal(_zp(zero_point, scale).cpu().reshape(-1), _zp(y_zero_point, y_scale).cpu().reshape(-1)))
    return x.float() if same else _table_op(x, scale, zero_point, y_scale, y_zero_point, lambda v: v, op)


@converter("QLinearConcat", domain=MS, const_inputs=("Y_scale", "Y_zero_point"))
def qlinear_concat(Y_scale, Y_zero_point, *inputs, axis):
    """Inputs come as (tensor, scale, zero point) triples; one quantised like Y is copied, any other is
    requantised as ORT's lookup table does (dequantize in float32, then quantize to Y)."""
    _range(Y_zero_point, op="QLinearConcat")
    if len(inputs) % 3:
        raise InvtoolError(f"QLinearConcat takes (tensor, scale, zero point) triples after Y's scale and zero "
                           f"point; got {len(inputs)} inputs there")
    parts = [_requantized(x, scale, zero_point, Y_scale, Y_zero_point, "QLinearConcat")
             for x, scale, zero_point in zip(inputs[0::3], inputs[1::3], inputs[2::3])]
    return torch.cat(parts, dim=axis)


@converter("QLinearWhere", domain=MS, const_inputs=("x_scale", "x_zero_point", "y_scale", "y_zero_point", "z_scale",
                                                    "z_zero_point"))
def qlinear_where(condition, X, x_scale, x_zero_point, Y, y_scale, y_zero_point, z_scale, z_zero_point):
    """Where(condition, X, Y), each of X and Y brought to Z's quantisation as QLinearConcat's inputs are
    (copied when quantised like Z, else ORT's requantising lookup table)."""
    _range(z_zero_point, op="QLinearWhere")
    x = _requantized(X, x_scale, x_zero_point, z_scale, z_zero_point, "QLinearWhere")
    y = _requantized(Y, y_scale, y_zero_point, z_scale, z_zero_point, "QLinearWhere").to(x.device)
    return torch.where(condition.to(device=x.device, dtype=torch.bool), x, y)


# QLinearSoftmax's float32 sum is sequential in ORT's kernel (emulated by a loop over the row); past this many
# terms (a softmax over a flattened feature map, opset < 13) one float64 sum rounded once stands in for the loop,
# which can put a value on a rounding boundary one step from ORT's
_SEQUENTIAL_TERMS = 16384


@converter("QLinearSoftmax", domain=MS, const_inputs=("X_scale", "x_zero_point", "y_scale", "y_zero_point"))
def qlinear_softmax(X, X_scale, x_zero_point=None, y_scale=None, y_zero_point=None, *, axis=-1, opset):
    """ORT's uint8/int8 softmax: a table of float32 exponentials of the integer distance to the row's maximum,
    e = float32(exp((x - max + shift) * X_scale)) with shift = max(0, log(FLT_MAX / D) - 5) / X_scale (double),
    summed in float32 in order, y = round(e * floor(1 / y_scale) / sum) + y_zero_point. The zero point of X
    cancels. `opset` is the Softmax's: from 13 the softmax runs along `axis` alone, before it over the axes from
    `axis` on, flattened (ONNX's coercion to N x D); ORT fills in the schema's axis=-1 at every opset. A row whose
    maximum takes the whole probability rounds to 256 steps and saturates. The gradient flows through the
    exponentials, the row maximum carrying none."""
    lo, hi = _range(y_zero_point, op="QLinearSoftmax")
    rank = X.dim()
    axis = axis + rank if axis < 0 else axis
    shape = X.shape
    if opset >= 13:
        moved = X.movedim(axis, -1)
        rows = moved.reshape(-1, shape[axis])
    else:
        rows = X.reshape(math.prod(shape[:axis]), math.prod(shape[axis:]))
    D = rows.shape[-1]
    x_scale = float(_f32(X_scale).reshape(-1)[0])
    shift = max(0.0, math.log(float(torch.tensor(torch.finfo(torch.float32).max) / float(D))) - 5.0) / x_scale
    v = rows.to(ACC)
    exps = torch.exp(((v - v.amax(dim=-1, keepdim=True).detach()) + shift) * x_scale).float()
    if D <= _SEQUENTIAL_TERMS:
        total = exps[:, 0]
        for i in range(1, D):
            total = total + exps[:, i]
    else:
        total = exps.to(ACC).sum(dim=-1).float()
    multiplier = torch.floor(1.0 / _f32(y_scale.to(X.device)).reshape(()))
    q = saturate(round_ste(exps * multiplier / total.unsqueeze(-1)) + _zp(y_zero_point, exps), lo, hi)
    if opset >= 13:
        return q.reshape(moved.shape).movedim(-1, axis)
    return q.reshape(shape)


@converter("QLinearAveragePool", domain=MS, const_inputs=("x_scale", "x_zero_point", "y_scale", "y_zero_point"))
def qlinear_average_pool(X, x_scale, x_zero_point=None, y_scale=None, y_zero_point=None, *, auto_pad="NOTSET",
                         ceil_mode=0, channels_last=0, count_include_pad=0, kernel_shape=None, pads=None,
                         strides=None):
    """ORT's kernel: X dequantised in float32, each window summed in float32 in row-major order, divided by the
    cells of the window inside X (count_include_pad=0) or by the kernel's size (1; ceil_mode's overhang counted
    too, as ORT does), quantised as round(v / y_scale + y_zero_point). A kernel covering the whole unpadded
    input is ORT's QLinearGlobalAveragePool, its integer sum."""
    lo, hi = _range(y_zero_point, op="QLinearAveragePool")
    x = X.movedim(-1, 1) if channels_last else X
    rank = len(kernel_shape)
    strides, dilations, pads, overhang = _geometry(x, kernel_shape, strides, None, auto_pad, pads, ceil_mode)
    if list(x.shape[2:]) == list(kernel_shape) and not any(pads):
        y = qlinear_global_average_pool(x, x_scale, x_zero_point, y_scale, y_zero_point)
        return y.movedim(1, -1) if channels_last else y
    padding = torch_pad(_end_pads(pads, overhang))
    values = torch.nn.functional.pad(_f32(x_scale.to(x.device)) * _centered(x, x_zero_point), padding)
    inside = torch.nn.functional.pad(torch.ones_like(x[:1, :1]), padding)
    out = [(n - k) // s + 1 for n, k, s in zip(values.shape[2:], kernel_shape, strides)]
    total, count = 0.0, 0.0
    for offset in itertools.product(*(range(k) for k in kernel_shape)):  # zeros add exactly: the window's sum
        window = (..., *(slice(o, o + (m - 1) * s + 1, s) for o, m, s in zip(offset, out, strides)))
        total, count = total + values[window], count + inside[window]
    divisor = float(math.prod(kernel_shape)) if count_include_pad else count
    value = total / divisor / _f32(y_scale.to(x.device)) + _zp(y_zero_point, total)
    y = saturate(round_ste(value), lo, hi)
    return y.movedim(1, -1) if channels_last else y


@converter("QLinearReduceMean", domain=MS, const_inputs=("data_scale", "data_zero_point", "reduced_scale",
                                                         "reduced_zero_point"))
def qlinear_reduce_mean(data, data_scale, data_zero_point=None, reduced_scale=None, reduced_zero_point=None, *,
                        axes, keepdims):
    """The schema's Dequantize -> ReduceMean in float32 -> Quantize. ORT's quantizer never writes this op and
    ORT has no CPU kernel for it: it is checked against that chain of standard ops in ORT."""
    lo, hi = _range(reduced_zero_point, op="QLinearReduceMean")
    value = _f32(data_scale.to(data.device)) * _centered(data, data_zero_point)
    axes = tuple(a + data.dim() if a < 0 else a for a in axes)
    value = value.mean(dim=axes, keepdim=bool(keepdims))
    return _quantize(value, _f32(reduced_scale.to(data.device)), _zp(reduced_zero_point, value), lo, hi)


# --- names ----------------------------------------------------------------------------------------
# the suffixes ONNX Runtime's quantizer gives a quantised tensor, best first for an alias: the float
# (dequantised) form, then the integer one. "_output_quantized" is the int32 result of dynamic
# ConvInteger / MatMulInteger, whose float tensor keeps the name before it.
_SUFFIXES = ("_DequantizeLinear_Output", "_QuantizeLinear_Output", "_output_quantized", "_quantized")


def float_aliases(proto) -> dict[str, str]:
    """alias -> tensor: each quantised tensor that depends on the image under the float name ORT's quantizer
    derived its name from (`<name>_quantized`, `<name>_QuantizeLinear_Output`, ...), when the graph no
    longer has a tensor of that name. The dequantised form wins over the integer one."""
    g = proto.graph
    weights = {t.name for t in g.initializer}
    taken = weights | {i.name for i in g.input} | {o for n in g.node for o in n.output}
    live = {i.name for i in g.input if i.name not in weights}
    for node in g.node:
        if any(i in live for i in node.input):
            live.update(o for o in node.output if o)
    aliases: dict[str, tuple[int, str]] = {}
    for name in (o for n in g.node for o in n.output if o in live):
        for rank, suffix in enumerate(_SUFFIXES):
            if name.endswith(suffix) and len(name) > len(suffix):
                base = name[:-len(suffix)]
                if base not in taken and (base not in aliases or rank < aliases[base][0]):
                    aliases[base] = (rank, name)
                break
    return {base: name for base, (_, name) in aliases.items()}
