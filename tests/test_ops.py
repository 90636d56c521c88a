"""Every converter, one node at a time, against ONNX Runtime over its attribute variants and opsets."""
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from invtool.errors import InvtoolError
from invtool.onnx import registry
from invtool.onnx.graph import build
from invtool.onnx.ops import activation, norm

from oracle import assert_close, check_model, check_node, make_model, rand, run_ort, run_rebuilt

CASES = []
INT64_MAX = np.iinfo(np.int64).max


def i64(*v):
    return np.array(v, dtype=np.int64)


def f32(*v):
    return np.array(v, dtype=np.float32)


def case(op, name, data, init=None, *, opsets=(7, 11, 13, 17, 21), inputs=None, outputs=("y",), atol=1e-4,
         **attrs):
    """Add one variant of `op` for each listed opset at which the op exists.

    `inputs` names the node's inputs in order ("" for an omitted optional one); by default the data
    inputs, then the initializers, in the order given.
    """
    init = init or {}
    inputs = list(inputs if inputs is not None else [*data, *init])
    for opset in opsets:
        try:
            onnx.defs.get_schema(op, opset, "")
        except onnx.defs.SchemaError:
            continue
        CASES.append(pytest.param(op, opset, inputs, list(outputs), attrs, data, init, atol,
                                  id=f"{op}-{name}-op{opset}"))


X4 = rand(2, 4, 7, 8)          # a small NCHW batch
NEG = rand(1, 3, 6, 7) - 10.0  # all negative: a max pool that picked a zero pad would show it

# --- convolutions ---------------------------------------------------------------------------------
W = rand(6, 4, 3, 3, seed=1)
B6 = rand(6, seed=2)
conv_opsets = (7, 11, 21)
case("Conv", "pads-bias", {"x": X4}, {"w": W, "b": B6}, opsets=conv_opsets, pads=[1, 1, 1, 1])
case("Conv", "no-bias-stride-dilation", {"x": X4}, {"w": W}, opsets=conv_opsets, strides=[2, 1],
     dilations=[2, 1])
case("Conv", "asymmetric-pads", {"x": X4}, {"w": W, "b": B6}, opsets=conv_opsets, pads=[0, 1, 2, 0])
case("Conv", "groups", {"x": X4}, {"w": rand(6, 2, 3, 3, seed=3)}, opsets=conv_opsets, group=2, pads=[1, 1, 1, 1])
case("Conv", "depthwise", {"x": X4}, {"w": rand(4, 1, 3, 3, seed=4), "b": rand(4)}, opsets=conv_opsets,
     group=4, strides=[2, 2])
for auto_pad in ("SAME_UPPER", "SAME_LOWER", "VALID"):
    case("Conv", f"auto-{auto_pad}", {"x": X4}, {"w": rand(6, 4, 4, 2, seed=5)}, opsets=conv_opsets,
         auto_pad=auto_pad, strides=[2, 3])
case("Conv", "1d", {"x": rand(2, 4, 9)}, {"w": rand(3, 4, 3)}, opsets=conv_opsets, pads=[2, 1])
case("Conv", "kernel-shape-attr", {"x": X4}, {"w": W}, opsets=conv_opsets, kernel_shape=[3, 3])

WT = rand(4, 3, 3, 3, seed=6)  # ConvTranspose weights are [C_in, C_out / group, k, k]
ct_opsets = (7, 11, 21)
case("ConvTranspose", "stride-pads-output-padding", {"x": X4}, {"w": WT, "b": rand(3)}, opsets=ct_opsets,
     strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 0])
case("ConvTranspose", "asymmetric-pads-dilation", {"x": X4}, {"w": WT}, opsets=ct_opsets, pads=[0, 2, 1, 0],
     dilations=[2, 1])
case("ConvTranspose", "groups", {"x": X4}, {"w": rand(4, 2, 3, 3)}, opsets=ct_opsets, group=2, strides=[2, 1])
case("ConvTranspose", "output-shape", {"x": X4}, {"w": WT}, opsets=ct_opsets, strides=[2, 2], output_shape=[15, 16])
case("ConvTranspose", "auto-same-upper", {"x": X4}, {"w": WT}, opsets=ct_opsets, strides=[2, 2], auto_pad="SAME_UPPER")

# --- pooling --------------------------------------------------------------------------------------
case("MaxPool", "k3-s2-pads", {"x": NEG}, opsets=(8, 12, 21), kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
case("MaxPool", "k2-s2", {"x": X4}, opsets=(7, 12, 21), kernel_shape=[2, 2], strides=[2, 2])
case("MaxPool", "asymmetric-pads", {"x": NEG}, opsets=(8, 12, 21), kernel_shape=[2, 3], pads=[0, 1, 1, 2])
case("MaxPool", "ceil-mode", {"x": NEG}, opsets=(10, 12, 21), kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
case("MaxPool", "ceil-mode-pads", {"x": NEG}, opsets=(10, 12, 21), kernel_shape=[3, 2], strides=[2, 2],
     pads=[1, 1, 1, 0], ceil_mode=1)
case("MaxPool", "dilations", {"x": NEG}, opsets=(10, 12, 21), kernel_shape=[2, 2], dilations=[2, 3], pads=[1, 1, 1, 1])
for auto_pad in ("SAME_UPPER", "SAME_LOWER", "VALID"):
    case("MaxPool", f"auto-{auto_pad}", {"x": NEG}, opsets=(8, 12, 21), kernel_shape=[2, 3], strides=[2, 2],
         auto_pad=auto_pad)
case("MaxPool", "1d", {"x": rand(2, 3, 9)}, opsets=(8, 21), kernel_shape=[3], strides=[2], pads=[1, 1])

for include in (0, 1):
    case("AveragePool", f"pads-include{include}", {"x": X4}, opsets=(7, 11, 21), kernel_shape=[3, 3],
         strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=include)
    case("AveragePool", f"asymmetric-pads-include{include}", {"x": X4}, opsets=(7, 11, 21), kernel_shape=[2, 3],
         pads=[0, 1, 1, 2], count_include_pad=include)
    case("AveragePool", f"ceil-mode-pads-include{include}", {"x": X4}, opsets=(10, 11, 21), kernel_shape=[3, 3],
         strides=[2, 2], pads=[1, 0, 1, 0], ceil_mode=1, count_include_pad=include)
    case("AveragePool", f"dilations-include{include}", {"x": X4}, opsets=(19, 21), kernel_shape=[2, 2],
         dilations=[2, 2], pads=[1, 1, 1, 1], count_include_pad=include)
case("AveragePool", "k2-s2", {"x": X4}, opsets=(7, 21), kernel_shape=[2, 2], strides=[2, 2])
case("AveragePool", "ceil-mode", {"x": X4}, opsets=(10, 21), kernel_shape=[2, 2], strides=[2, 3], ceil_mode=1)
for auto_pad in ("SAME_UPPER", "SAME_LOWER", "VALID"):
    case("AveragePool", f"auto-{auto_pad}", {"x": X4}, opsets=(7, 11, 21), kernel_shape=[3, 2], strides=[2, 2],
         auto_pad=auto_pad)
case("GlobalAveragePool", "4d", {"x": X4})
case("GlobalMaxPool", "4d", {"x": X4})
case("GlobalAveragePool", "3d", {"x": rand(2, 3, 5)}, opsets=(7, 21))

# --- activations ----------------------------------------------------------------------------------
for op, attrs in [("Relu", {}), ("Sigmoid", {}), ("Tanh", {}), ("LeakyRelu", {}), ("LeakyRelu", {"alpha": 0.3}),
                  ("Elu", {}), ("Elu", {"alpha": 0.5}), ("Selu", {}), ("HardSigmoid", {}),
                  ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}), ("HardSwish", {}), ("Softplus", {}),
                  ("Softsign", {}), ("Gelu", {}), ("Gelu", {"approximate": "tanh"})]:
    case(op, "-".join(f"{k}{v}" for k, v in attrs.items()) or "default", {"x": X4}, opsets=(7, 13, 21), **attrs)
case("PRelu", "per-channel", {"x": X4}, {"slope": rand(4, 1, 1, seed=7)}, opsets=(7, 9, 16))
case("PRelu", "trailing-broadcast", {"x": X4}, {"slope": rand(8, seed=7)}, opsets=(7, 16))
case("Clip", "attrs", {"x": X4}, opsets=(7,), min=-0.5, max=0.7)
case("Clip", "attr-min-only", {"x": X4}, opsets=(7,), min=-0.5)
case("Clip", "inputs", {"x": X4}, {"lo": f32(-0.5)[0], "hi": f32(0.7)[0]}, opsets=(11, 13, 21))
case("Clip", "input-max-only", {"x": X4}, {"hi": f32(0.7)[0]}, opsets=(11, 21), inputs=["x", "", "hi"])
case("Clip", "no-bounds", {"x": X4}, opsets=(7, 13))
for op in ("Softmax", "LogSoftmax"):
    case(op, "default-axis", {"x": X4}, opsets=(7, 11, 13, 21))
    case(op, "axis2", {"x": X4}, opsets=(7, 11, 13, 21), axis=2)
    case(op, "axis-neg", {"x": X4}, opsets=(11, 13, 21), axis=-1)
    case(op, "axis0", {"x": X4}, opsets=(7, 13), axis=0)

# --- normalisation --------------------------------------------------------------------------------
BN = {"scale": rand(4, seed=8), "bias": rand(4, seed=9), "mean": rand(4, seed=10),
      "var": np.abs(rand(4, seed=11)) + 0.5}
case("BatchNormalization", "running-stats", {"x": X4}, BN, opsets=(7, 9, 14, 15, 21))
case("BatchNormalization", "epsilon", {"x": X4}, BN, opsets=(9, 21), epsilon=0.1)
case("BatchNormalization", "spatial0", {"x": rand(2, 3, 4)},
     {"scale": rand(3, 4, seed=8), "bias": rand(3, 4, seed=9), "mean": rand(3, 4, seed=10),
      "var": np.abs(rand(3, 4, seed=11)) + 0.5}, opsets=(7,), spatial=0)
case("InstanceNormalization", "default", {"x": X4}, {"scale": rand(4, seed=8), "bias": rand(4, seed=9)})
case("InstanceNormalization", "epsilon", {"x": X4}, {"scale": rand(4, seed=8), "bias": rand(4, seed=9)},
     opsets=(7, 21), epsilon=0.01)
case("LRN", "size3", {"x": rand(2, 6, 4, 5)}, opsets=(7, 13), size=3)
case("LRN", "attrs", {"x": rand(2, 6, 4, 5)}, opsets=(13,), size=5, alpha=0.01, beta=0.5, bias=2.0)

# --- linear ---------------------------------------------------------------------------------------
A, BT = rand(3, 5), rand(4, 5, seed=12)
for trans_a in (0, 1):
    for trans_b in (0, 1):
        a = A.T.copy() if trans_a else A
        b = BT if trans_b else BT.T.copy()
        case("Gemm", f"tA{trans_a}-tB{trans_b}", {"a": a}, {"b": b, "c": rand(4, seed=13)}, opsets=(7, 11, 13),
             transA=trans_a, transB=trans_b)
case("Gemm", "alpha-beta-matrix-c", {"a": A}, {"b": BT, "c": rand(3, 4, seed=13)}, opsets=(7, 13),
     transB=1, alpha=0.5, beta=2.0)
case("Gemm", "alpha-beta-vector-c", {"a": A}, {"b": BT, "c": rand(4, seed=13)}, opsets=(7, 13),
     transB=1, alpha=0.5, beta=2.0)
case("Gemm", "column-c", {"a": A}, {"b": BT, "c": rand(3, 1, seed=13)}, opsets=(7, 13), transB=1)
case("Gemm", "scalar-c", {"a": A}, {"b": BT, "c": f32(0.25)}, opsets=(7, 13), transB=1)
case("Gemm", "no-c", {"a": A}, {"b": BT}, opsets=(11, 13, 21), transB=1)
case("MatMul", "2d", {"a": A}, {"b": BT.T.copy()})
case("MatMul", "batched", {"a": rand(2, 3, 3, 5)}, {"b": rand(3, 5, 2)}, opsets=(7, 13))
case("MatMul", "vector", {"a": A}, {"b": rand(5)}, opsets=(7, 13))

# --- elementwise ----------------------------------------------------------------------------------
DIVISOR = np.abs(rand(4, 1, 1, seed=14)) + 0.5
for shape_name, other in [("same", rand(2, 4, 7, 8, seed=15)), ("channel", rand(4, 1, 1, seed=15)),
                          ("trailing", rand(8, seed=15)), ("scalar", f32(1.5)[0])]:
    for op in ("Add", "Sub", "Mul"):
        case(op, shape_name, {"a": X4}, {"b": other}, opsets=(7, 13, 14))
case("Div", "channel", {"a": X4}, {"b": DIVISOR}, opsets=(7, 13, 14))
case("Div", "graph-inputs", {"a": X4, "b": np.abs(rand(2, 4, 7, 8, seed=15)) + 0.5}, opsets=(7, 14))
case("Add", "broadcast-both", {"a": rand(3, 1, 5), "b": rand(4, 1, seed=16)}, opsets=(7, 14))
case("Div", "int64-truncates", {"a": i64(-7, 7, -3, 9, 0)}, {"b": i64(2, -2, 2, 4, 3)}, opsets=(7, 14))
case("Mod", "int64", {"a": i64(-7, 7, -3, 9, 0)}, {"b": i64(2, -2, 2, 4, 3)}, opsets=(10, 13))
case("Mod", "fmod", {"a": X4}, {"b": DIVISOR}, opsets=(10, 13), fmod=1)
case("Pow", "float-exponent", {"a": np.abs(X4) + 0.1}, {"b": rand(8, seed=17)}, opsets=(7, 13, 15))
case("Pow", "int-exponent", {"a": X4}, {"b": i64(2)}, opsets=(12, 15))
for op in ("Sum", "Max", "Min", "Mean"):
    case(op, "three-broadcast", {"a": X4, "b": rand(4, 1, 1, seed=18)}, {"c": rand(8, seed=19)}, opsets=(8, 13))
    case(op, "one", {"a": X4}, opsets=(8, 13))
for op, data in [("Abs", X4), ("Neg", X4), ("Floor", X4), ("Ceil", X4), ("Sqrt", np.abs(X4)), ("Exp", X4),
                 ("Log", np.abs(X4) + 0.1), ("Reciprocal", np.abs(X4) + 0.5), ("Erf", X4), ("Sign", X4),
                 ("Round", X4 * 3), ("Sin", X4), ("Cos", X4)]:
    case(op, "default", {"x": data}, opsets=(7, 13))
BOOL_A = rand(2, 3, seed=20) > 0
case("Equal", "int64", {"a": i64(1, 2, 3, 4)}, {"b": i64(1, 0, 3, 0)}, opsets=(7, 11, 13))
case("Equal", "float", {"a": f32(1, 2, 3)}, {"b": f32(1, 0, 3)}, opsets=(11, 13))
case("Less", "float", {"a": X4}, {"b": rand(8, seed=21)}, opsets=(9, 13))
case("Greater", "float", {"a": X4}, {"b": rand(8, seed=21)}, opsets=(9, 13))
case("Not", "bool", {"x": BOOL_A})
case("And", "bool", {"a": BOOL_A}, {"b": rand(3, seed=22) > 0})
case("Or", "bool", {"a": BOOL_A}, {"b": rand(3, seed=22) > 0})
case("Where", "broadcast", {"c": BOOL_A, "x": rand(2, 3, seed=23)}, {"y_": rand(3, seed=24)}, opsets=(9, 16))
for op, opsets in [("ReduceMean", (7, 13)), ("ReduceSum", (7, 11)), ("ReduceMax", (7, 13)), ("ReduceMin", (7, 13)),
                   ("ReduceL2", (7, 13)), ("ReduceSumSquare", (7, 13))]:
    case(op, "axes-attr", {"x": X4}, opsets=opsets, axes=[2, 3])
    case(op, "axes-attr-negative-nokeep", {"x": X4}, opsets=opsets, axes=[-1], keepdims=0)
    case(op, "all-axes", {"x": X4}, opsets=opsets)
for op, since in [("ReduceMean", 18), ("ReduceSum", 13), ("ReduceMax", 18), ("ReduceMin", 18), ("ReduceL2", 18)]:
    case(op, "axes-input", {"x": X4}, {"axes": i64(2, 3)}, opsets=(since, 21))
    case(op, "axes-input-nokeep", {"x": X4}, {"axes": i64(1, -1)}, opsets=(since, 21), keepdims=0)
    case(op, "no-axes-noop", {"x": X4}, opsets=(since, 21), noop_with_empty_axes=1)
    case(op, "no-axes-all", {"x": X4}, opsets=(since, 21))
case("ArgMax", "axis1", {"x": X4}, opsets=(7, 13), axis=1)
case("ArgMax", "nokeep-negative-axis", {"x": X4}, opsets=(11, 13), axis=-1, keepdims=0)
case("ArgMax", "select-last", {"x": np.round(X4)}, opsets=(12, 13), axis=2, select_last_index=1)

# --- shape plumbing -------------------------------------------------------------------------------
case("Identity", "default", {"x": X4})
case("Dropout", "ratio-attr", {"x": X4}, opsets=(7, 10), ratio=0.3)
case("Dropout", "ratio-input", {"x": X4}, {"r": f32(0.3)[0]}, opsets=(12, 13, 21))
case("Dropout", "mask", {"x": X4}, opsets=(7, 10, 12, 21), outputs=("y", "mask"))
case("Shape", "all", {"x": X4})
case("Shape", "start-end", {"x": X4}, opsets=(15, 21), start=1, end=-1)
case("Shape", "start-negative", {"x": X4}, opsets=(15, 21), start=-2)
case("Size", "default", {"x": X4})
case("Gather", "scalar-index", {"x": X4}, {"i": np.array(1, dtype=np.int64)}, axis=1)
case("Gather", "negative-indices", {"x": X4}, {"i": i64(-1, 0, 2)}, axis=3)
case("Gather", "matrix-indices", {"x": X4}, {"i": np.array([[0, 1], [1, 0]], dtype=np.int64)})
case("Gather", "negative-axis", {"x": X4}, {"i": i64(0, 3)}, opsets=(11, 13), axis=-2)
case("GatherElements", "axis1", {"x": X4}, {"i": np.array(np.arange(2 * 2 * 7 * 8) % 4 - 2, dtype=np.int64)
                                              .reshape(2, 2, 7, 8)}, opsets=(11, 13), axis=1)
for to in (TensorProto.INT64, TensorProto.DOUBLE, TensorProto.BOOL, TensorProto.INT32):
    case("Cast", TensorProto.DataType.Name(to), {"x": X4 * 3}, to=to)
case("Cast", "int-to-float", {"x": i64(1, -2, 3)}, to=TensorProto.FLOAT)
case("CastLike", "to-int64", {"x": X4 * 3}, {"like": i64(0)}, opsets=(15, 21))
case("Reshape", "zero-and-minus-one", {"x": X4}, {"s": i64(0, -1, 8)}, opsets=(7, 13, 14, 21))
case("Reshape", "flat", {"x": X4}, {"s": i64(-1)}, opsets=(7, 14))
case("Reshape", "allowzero-no-zeros", {"x": X4}, {"s": i64(8, 7, -1)}, opsets=(14, 21), allowzero=1)
for axis in (0, 1, 2):
    case("Flatten", f"axis{axis}", {"x": X4}, opsets=(7, 13), axis=axis)
case("Flatten", "default", {"x": X4})
case("Flatten", "negative-axis", {"x": X4}, opsets=(11, 13, 21), axis=-1)
case("Transpose", "perm", {"x": X4}, perm=[0, 2, 3, 1])
case("Transpose", "reverse", {"x": X4})
case("Concat", "axis1", {"a": X4, "b": rand(2, 3, 7, 8)}, {"c": rand(2, 1, 7, 8)}, axis=1)
case("Concat", "negative-axis", {"a": X4, "b": rand(2, 4, 7, 2)}, opsets=(11, 13), axis=-1)
X1 = rand(2, 1, 3, 1)
case("Squeeze", "axes-attr", {"x": X1}, opsets=(7, 11), axes=[1])
case("Squeeze", "axes-attr-negative", {"x": X1}, opsets=(11,), axes=[-1, 1])
case("Squeeze", "axes-input", {"x": X1}, {"axes": i64(-1)}, opsets=(13, 21))
case("Squeeze", "all", {"x": X1}, opsets=(7, 13, 21))
case("Unsqueeze", "axes-attr", {"x": rand(2, 3)}, opsets=(7, 11), axes=[0, 3])
case("Unsqueeze", "axes-attr-negative", {"x": rand(2, 3)}, opsets=(11,), axes=[-1, 1])
case("Unsqueeze", "axes-input", {"x": rand(2, 3)}, {"axes": i64(-1, 0)}, opsets=(13, 21))
case("Split", "sizes-attr", {"x": X4}, opsets=(7, 11), outputs=("y0", "y1"), axis=1, split=[1, 3])
case("Split", "sizes-input", {"x": X4}, {"s": i64(2, 5)}, opsets=(13, 18, 21), outputs=("y0", "y1"), axis=-2)
case("Split", "num-outputs", {"x": X4}, opsets=(18, 21), outputs=("y0", "y1", "y2"), axis=2, num_outputs=3)
case("Split", "even-by-output-count", {"x": X4}, opsets=(7, 11, 13), outputs=("y0", "y1"), axis=1)
case("Slice", "attrs", {"x": X4}, opsets=(7, 9), starts=[1, 2], ends=[3, -1], axes=[2, 3])
case("Slice", "attrs-no-axes", {"x": X4}, opsets=(7,), starts=[0, 1], ends=[1, INT64_MAX])
case("Slice", "inputs", {"x": X4}, {"st": i64(1, 2), "en": i64(3, -1), "ax": i64(2, 3)}, opsets=(10, 13, 21))
case("Slice", "steps", {"x": X4}, {"st": i64(0, 1), "en": i64(INT64_MAX, 7), "ax": i64(3, 2), "sp": i64(2, 3)},
     opsets=(10, 13))
case("Slice", "negative-steps", {"x": X4},
     {"st": i64(-1, 5), "en": i64(-INT64_MAX, 0), "ax": i64(3, -2), "sp": i64(-1, -2)}, opsets=(11, 13))
case("Slice", "out-of-range", {"x": X4}, {"st": i64(-100, 2), "en": i64(100, 100)}, opsets=(10, 13))
case("Pad", "constant-attr", {"x": X4}, opsets=(7,), pads=[0, 0, 1, 2, 0, 0, 3, 0], value=1.5)
for mode in ("reflect", "edge"):
    case("Pad", f"{mode}-attr", {"x": X4}, opsets=(7,), pads=[0, 0, 1, 2, 0, 0, 2, 1], mode=mode)
    case("Pad", f"{mode}-input", {"x": X4}, {"p": i64(0, 0, 2, 1, 0, 0, 1, 2)}, opsets=(11, 13, 21), mode=mode)
case("Pad", "constant-input", {"x": X4}, {"p": i64(0, 1, 1, 2, 1, 0, 3, 0), "v": f32(-2.0)[0]}, opsets=(11, 13, 21))
case("Pad", "negative-pads", {"x": X4}, {"p": i64(0, 0, -1, 2, 0, 0, 1, -3)}, opsets=(11, 13))
case("Pad", "axes-input", {"x": X4}, {"p": i64(1, 2, 0, 3), "v": f32(0.5)[0], "a": i64(-1, 1)}, opsets=(18, 21))
case("Pad", "wrap", {"x": X4}, {"p": i64(0, 0, 1, 2, 0, 0, 2, 1)}, opsets=(19, 21), mode="wrap")
case("ConstantOfShape", "default", {}, {"s": i64(2, 3)}, opsets=(9, 21))
case("ConstantOfShape", "value", {}, {"s": i64(4)}, opsets=(9, 21),
     value=numpy_helper.from_array(np.array([3], dtype=np.int64)))
case("Range", "float", {}, {"a": f32(1.0)[0], "b": f32(4.5)[0], "d": f32(0.5)[0]}, opsets=(11, 21))
case("Range", "int-negative-delta", {}, {"a": i64(10)[0], "b": i64(-3)[0], "d": i64(-3)[0]}, opsets=(11, 21))
case("Expand", "bidirectional", {"x": rand(3, 1)}, {"s": i64(2, 1, 4)}, opsets=(8, 13))
case("Expand", "smaller-shape", {"x": rand(2, 3, 1)}, {"s": i64(1, 5)}, opsets=(8, 13))
for mode in ("DCR", "CRD"):
    case("DepthToSpace", mode, {"x": rand(2, 8, 3, 4)}, opsets=(11, 13), blocksize=2, mode=mode)
case("DepthToSpace", "default", {"x": rand(2, 8, 3, 4)}, opsets=(7, 13), blocksize=2)
case("SpaceToDepth", "default", {"x": rand(2, 3, 4, 6)}, opsets=(7, 13), blocksize=2)
case("Tile", "repeats", {"x": rand(2, 3)}, {"r": i64(2, 3)}, opsets=(7, 13))
for value in [{"value": numpy_helper.from_array(rand(2, 3), "v")}, {"value_float": 2.5},
              {"value_floats": [1.0, 2.0]}, {"value_int": 4}, {"value_ints": [1, 2, 3]}]:
    case("Constant", next(iter(value)), {}, opsets=(13, 21), **value)

# --- resize ---------------------------------------------------------------------------------------
XS = rand(1, 2, 5, 6)
UP, DOWN = f32(1, 1, 2, 1.5), f32(1, 1, 0.6, 0.5)
for mode in ("nearest", "linear"):
    case("Upsample", f"{mode}-attr", {"x": XS}, opsets=(7,), mode=mode, scales=[1.0, 1.0, 2.0, 3.0])
    case("Upsample", f"{mode}-input", {"x": XS}, {"s": f32(1, 1, 2, 3)}, opsets=(9,), mode=mode)
    case("Resize", f"{mode}-opset10", {"x": XS}, {"s": f32(1, 1, 2, 3)}, opsets=(10,), mode=mode)
    case("Resize", f"{mode}-opset10-down", {"x": XS}, {"s": DOWN}, opsets=(10,), mode=mode)
EMPTY = np.zeros(0, dtype=np.float32)
for coord in ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn"):
    for nearest in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil"):
        for name, scales in (("up", UP), ("down", DOWN)):
            case("Resize", f"nearest-{coord}-{nearest}-{name}", {"x": XS}, {"roi": EMPTY, "s": scales},
                 opsets=(11, 13, 19), mode="nearest", coordinate_transformation_mode=coord, nearest_mode=nearest)
for coord in ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"):
    for mode in ("linear", "cubic"):
        for name, scales in (("up", UP), ("down", DOWN)):
            case("Resize", f"{mode}-{coord}-{name}", {"x": XS}, {"roi": EMPTY, "s": scales},
                 opsets=(11, 13, 19), mode=mode, coordinate_transformation_mode=coord)
case("Resize", "half-pixel-symmetric", {"x": XS}, {"s": f32(1, 1, 1.7, 0.7)}, inputs=["x", "", "s"],
     opsets=(19, 21), mode="linear", coordinate_transformation_mode="half_pixel_symmetric")
case("Resize", "cubic-exclude-outside", {"x": XS}, {"roi": EMPTY, "s": UP}, opsets=(11, 13), mode="cubic",
     exclude_outside=1, cubic_coeff_a=-0.5)
case("Resize", "sizes", {"x": XS}, {"roi": EMPTY, "sc": EMPTY, "sz": i64(1, 2, 9, 4)}, opsets=(11,), mode="linear")
case("Resize", "sizes-omitted-scales", {"x": XS}, {"sz": i64(1, 2, 9, 4)}, inputs=["x", "", "", "sz"],
     opsets=(13, 21), mode="nearest")
case("Resize", "sizes-axes", {"x": XS}, {"sz": i64(3, 11)}, inputs=["x", "", "", "sz"], opsets=(18, 21),
     mode="linear", axes=[3, 2])
for policy in ("not_larger", "not_smaller"):
    case("Resize", f"keep-aspect-{policy}", {"x": XS}, {"sz": i64(10, 9)}, inputs=["x", "", "", "sz"],
         opsets=(18, 21), mode="linear", axes=[2, 3], keep_aspect_ratio_policy=policy)
for mode in ("nearest", "linear"):
    case("Resize", f"tf-crop-and-resize-{mode}", {"x": XS}, {"roi": f32(0, 0, 0.2, -0.1, 1, 1, 0.9, 1.2), "s": UP},
         opsets=(11, 13), mode=mode, coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=7.0)
case("Resize", "nearest-scales-omitted-roi", {"x": XS}, {"s": UP}, inputs=["x", "", "s"], opsets=(13, 18, 21),
     mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")


@pytest.mark.parametrize("op, opset, inputs, outputs, attrs, data, init, atol", CASES)
def test_op_matches_onnxruntime(op, opset, inputs, outputs, attrs, data, init, atol):
    node = helper.make_node(op, inputs, outputs, name=f"{op.lower()}_node", **attrs)
    check_node(node, data, opset, init, atol_scale=atol)


def test_unknown_op_names_op_node_and_supported_set():
    node = helper.make_node("Celu", ["x"], ["y"], name="my_celu")
    model = make_model([node], {"x": X4}, ["y"], 13)
    with pytest.raises(InvtoolError) as err:
        run_rebuilt(model, {"x": X4}, ["y"])
    message = str(err.value)
    assert "Celu" in message and "my_celu" in message and all(f" {op}," in message for op in ("Conv", "ConvTranspose"))
    assert "\n" not in message


def test_op_newer_than_the_model_opset_is_refused():
    assert registry.find_converter("Resize", 11) is not registry.find_converter("Resize", 10)
    with pytest.raises(InvtoolError, match="unsupported op Resize .*at opset 9"):
        registry.find_converter("Resize", 9, "r")


def test_highest_registered_version_not_above_opset_is_used():
    """Softmax registers 1 and 13: opset 21 takes 13, opset 12 takes 1, and both match ORT."""
    assert registry.find_converter("Softmax", 21) is activation.softmax_13
    assert registry.find_converter("Softmax", 12) is activation.softmax
    assert registry.find_converter("Relu", 21) is activation.relu
    x = rand(2, 3, 4)
    for opset in (12, 21):  # the two meanings differ on a 3-D input with the default axis
        check_node(helper.make_node("Softmax", ["x"], ["y"]), {"x": x}, opset)


def test_constant_node_weights_match_initializers():
    w, b = rand(6, 4, 3, 3, seed=1), rand(6, seed=2)
    conv = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])
    consts = [helper.make_node("Constant", [], [name], value=numpy_helper.from_array(v, name))
              for name, v in (("w", w), ("b", b))]
    as_nodes = make_model(consts + [conv], {"x": X4}, ["y"], 13)
    as_initializers = make_model([conv], {"x": X4}, ["y"], 13, {"w": w, "b": b})
    ref = check_model(as_nodes, {"x": X4})[0]
    np.testing.assert_array_equal(run_rebuilt(as_nodes, {"x": X4}, ["y"])[0],
                                  run_rebuilt(as_initializers, {"x": X4}, ["y"])[0])
    assert np.abs(ref).max() > 1.0  # a real convolution, not zeros


def test_shape_arithmetic_on_graph_input_runs_eagerly():
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape, as torch.onnx.export writes x.view(n, -1)."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["y"])]
    init = {"zero": np.array(0, dtype=np.int64), "axes0": i64(0), "minus1": i64(-1)}
    model = make_model(nodes, {"x": X4}, ["y"], 13, init)
    check_model(model, {"x": X4})
    other = rand(3, 4, 5, 6)
    got = run_rebuilt(model, {"x": other}, ["y"])[0]
    assert got.shape == (3, 120)


def test_lrn_even_size_follows_the_spec_window():
    """ONNX Runtime refuses even sizes, so a hand computation is the oracle: for size 2 the window of
    channel c is [c, c + 1] (floor((size-1)/2) before, ceil((size-1)/2) after)."""
    x = torch.tensor([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)
    y = norm.lrn(x, size=2, alpha=0.5, beta=1.0, bias=1.0).flatten()
    sums = torch.tensor([1 + 4, 4 + 9, 9.0])
    torch.testing.assert_close(y, torch.tensor([1.0, 2.0, 3.0]) / (1 + 0.5 / 2 * sums))


@pytest.mark.parametrize("attrs", [{"kernel_shape": [2, 2], "strides": [2, 2]},
                                   {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1}])
def test_pool_avg_turns_maxpool_into_the_same_averagepool(attrs):
    as_max = make_model([helper.make_node("MaxPool", ["x"], ["y"], **attrs)], {"x": X4}, ["y"], 13)
    as_avg = make_model([helper.make_node("AveragePool", ["x"], ["y"], **attrs)], {"x": X4}, ["y"], 13)
    ref = run_ort(as_avg, {"x": X4}, ["y"])[0]
    got = run_rebuilt(as_max, {"x": X4}, ["y"], pool="avg")[0]
    assert_close(got, ref)
    assert not np.allclose(got, run_ort(as_max, {"x": X4}, ["y"])[0])


def test_maxpool_with_indices_output_is_an_error():
    node = helper.make_node("MaxPool", ["x"], ["y", "idx"], kernel_shape=[2, 2])
    model = make_model([node], {"x": X4}, ["y", "idx"], 13)
    assert run_ort(model, {"x": X4}, ["idx"])[0].dtype == np.int64
    with pytest.raises(InvtoolError, match="output .idx. of MaxPool node .* not supported: only its first output"):
        run_rebuilt(model, {"x": X4}, ["y", "idx"])


def test_reflect_pad_on_the_batch_axis_is_an_error():
    node = helper.make_node("Pad", ["x", "p"], ["y"], mode="reflect")
    model = make_model([node], {"x": X4}, ["y"], 13, {"p": i64(1, 0, 0, 0, 1, 0, 0, 0)})
    with pytest.raises(InvtoolError, match="reflect.*trailing axes"):
        run_rebuilt(model, {"x": X4}, ["y"])


def test_antialiased_downsampling_is_an_error():
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode="linear", antialias=1)
    model = make_model([node], {"x": XS}, ["y"], 18, {"s": DOWN})
    with pytest.raises(InvtoolError, match="antialias"):
        run_rebuilt(model, {"x": XS}, ["y"])


def test_gradients_flow_through_padded_pools_and_resize():
    """The explicit-pad paths (asymmetric pads, ceil mode, dilations) stay differentiable."""
    nodes = [helper.make_node("MaxPool", ["x"], ["m"], kernel_shape=[3, 3], pads=[0, 1, 2, 1], ceil_mode=1,
                              strides=[2, 2]),
             helper.make_node("AveragePool", ["m"], ["a"], kernel_shape=[2, 2], dilations=[2, 1], pads=[1, 0, 1, 1]),
             helper.make_node("Resize", ["a", "", "s"], ["y"], mode="linear")]
    model = make_model(nodes, {"x": X4}, ["y"], 19, {"s": f32(1, 1, 2, 2)})
    module = build(model, ["y"]).double()
    x = torch.from_numpy(rand(1, 2, 5, 6, dtype=np.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: module(t)[0], (x,))


class _ManyOps(torch.nn.Module):
    """A small net whose torch.onnx.export uses most converters' real-world forms."""

    def __init__(self, align_corners: bool):
        super().__init__()
        self.align_corners = align_corners  # only exportable from opset 11
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = torch.nn.BatchNorm2d(8).eval()
        self.prelu = torch.nn.PReLU(8)
        self.deconv = torch.nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)
        self.inorm = torch.nn.InstanceNorm2d(4, affine=True)
        self.dw = torch.nn.Conv2d(4, 4, 3, groups=4, dilation=2, padding=2, bias=False)
        self.fc = torch.nn.Linear(4 * 3 * 3, 5)

    def forward(self, x):
        y = self.prelu(self.bn(self.conv(torch.nn.functional.pad(x, (0, 1, 1, 0), mode="reflect"))))
        y = torch.nn.functional.max_pool2d(y, 3, 2, 1, ceil_mode=True)
        y = torch.nn.functional.interpolate(y, scale_factor=2.0, mode="nearest")
        y = torch.nn.functional.interpolate(y, size=(9, 11), mode="bilinear", align_corners=False)
        y = self.inorm(torch.nn.functional.leaky_relu(self.deconv(y), 0.1))
        y = torch.nn.functional.avg_pool2d(self.dw(y), 3, 2, 1, ceil_mode=True, count_include_pad=False)
        y = torch.nn.functional.interpolate(y, size=(3, 3), mode="bilinear", align_corners=self.align_corners)
        z = self.fc(torch.sigmoid(y).reshape(y.shape[0], -1))
        return torch.softmax(torch.clamp(z, -1.0, 1.0) * y.mean(dim=(1, 2, 3))[:, None], dim=1), y


@pytest.mark.parametrize("opset", [10, 11, 13, 17])
def test_torch_exported_net_matches_onnxruntime(opset, tmp_path):
    path = tmp_path / "many.onnx"
    torch.onnx.export(_ManyOps(align_corners=opset >= 11).eval(), (torch.rand(2, 3, 17, 19),), str(path), dynamo=False,
                      opset_version=opset, input_names=["image"], output_names=["probs", "features"])
    model = onnx.load(str(path))
    assert {"ConvTranspose", "InstanceNormalization", "PRelu", "MaxPool", "AveragePool", "Gemm"} <= {
        n.op_type for n in model.graph.node}
    check_model(model, {"image": rand(2, 3, 17, 19)})


# --- the builder's contract: constants, attributes, domains, legacy opsets ---------------------------
def test_constant_of_shape_of_an_activation_keeps_its_value_a_constant():
    """The value attribute of an unfolded ConstantOfShape is a module constant, not an fx literal
    (which printed as `torch.Tensor(size=[1], dtype=float32)` and broke the generated code)."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("ConstantOfShape", ["s"], ["c"], value=numpy_helper.from_array(f32(2.5))),
             helper.make_node("Mul", ["x", "c"], ["y"])]
    model = make_model(nodes, {"x": X4}, ["c", "y"], 13)
    check_model(model, {"x": X4})
    gm = build(model, ["c", "y"])
    compile(gm.code, "<rebuilt>", "exec")
    recoded = torch.fx.GraphModule(gm, gm.graph)
    for module in (gm, recoded):
        c, y = module(torch.from_numpy(X4))
        assert_close(c.numpy(), np.full(X4.shape, 2.5, dtype=np.float32))
        assert_close(y.numpy(), X4 * 2.5)


def test_unknown_attribute_is_refused_at_build_naming_op_node_attribute_and_opset(monkeypatch):
    calls = []
    monkeypatch.setitem(registry.CONVERTERS[("", "Relu")], 1, lambda x: calls.append(x) or torch.relu(x))
    node = helper.make_node("Relu", ["x"], ["y"], name="my_relu", slope=0.5)
    model = helper.make_model(helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])]), opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(InvtoolError) as err:
        build(model, ["y"])
    message = str(err.value)
    assert all(word in message for word in ("Relu", "my_relu", "slope", "13")) and "\n" not in message
    assert calls == []


@pytest.mark.parametrize("op", ["Relu", "Sigmoid"])  # a Python converter, and a torch builtin
def test_too_many_inputs_are_refused_at_build(op):
    node = helper.make_node(op, ["x", "x"], ["y"], name="two_inputs")
    model = helper.make_model(helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])]), opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(InvtoolError, match=f"{op} node 'two_inputs' .*2 inputs"):
        build(model, ["y"])


def test_custom_domain_op_is_refused_even_when_the_standard_op_exists():
    node = helper.make_node("Relu", ["x"], ["y"], name="x_relu", domain="com.example")
    model = helper.make_model(helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])]),
        opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.example", 1)])
    with pytest.raises(InvtoolError, match=r"unsupported op com\.example\.Relu \(node 'x_relu'\)") as err:
        build(model, ["y"])
    assert "\n" not in str(err.value)


def test_ai_onnx_domain_is_the_default_one():
    """Softmax's meaning changed at 13: the version imported as "ai.onnx" is the one used."""
    node = helper.make_node("Softmax", ["x"], ["y"], domain="ai.onnx")
    x = rand(2, 3, 4)
    for opset in (12, 13):
        model = helper.make_model(helper.make_graph(
            [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, x.shape)]),
            opset_imports=[helper.make_opsetid("ai.onnx", opset)])
        expected = torch.softmax(torch.from_numpy(x).flatten(1) if opset < 13 else torch.from_numpy(x), -1)
        assert_close(run_rebuilt(model, {"x": x}, ["y"])[0], expected.reshape(x.shape).numpy())


def _legacy_model(nodes, inputs, opset):
    """A model of an opset ONNX Runtime no longer runs (< 7), so a hand computation is the oracle."""
    graph = helper.make_graph(
        nodes, "legacy", [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                          for k, v in inputs.items()],
        [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=3)
    onnx.checker.check_model(model)  # the spec of that opset knows every attribute used
    model.graph.output.append(helper.make_empty_tensor_value_info("y"))
    return model


@pytest.mark.parametrize("op, fn", [("Add", np.add), ("Sub", np.subtract), ("Mul", np.multiply),
                                    ("Div", np.divide)])
def test_legacy_broadcast_aligns_b_to_a_from_axis(op, fn):
    a, b = X4, rand(4, 7, seed=3) + 3.0
    model = _legacy_model([helper.make_node(op, ["a", "b"], ["y"], broadcast=1, axis=1)], {"a": a, "b": b}, 6)
    assert_close(run_rebuilt(model, {"a": a, "b": b}, ["y"])[0], fn(a, b[None, :, :, None]))
    trailing = rand(8, seed=4) + 3.0  # no axis: numpy's suffix alignment
    model = _legacy_model([helper.make_node(op, ["a", "b"], ["y"], broadcast=1)], {"a": a, "b": trailing}, 6)
    assert_close(run_rebuilt(model, {"a": a, "b": trailing}, ["y"])[0], fn(a, trailing))


def test_legacy_consumed_inputs_is_ignored_where_the_spec_has_it():
    nodes = [helper.make_node("Relu", ["a"], ["r"], consumed_inputs=[0]),
             helper.make_node("Add", ["r", "b"], ["y"], consumed_inputs=[0, 0], broadcast=1, axis=-3)]
    b = rand(4, 1, 1, seed=5)
    model = _legacy_model(nodes, {"a": X4, "b": b}, 5)
    assert_close(run_rebuilt(model, {"a": X4, "b": b}, ["y"])[0], np.maximum(X4, 0) + b[None])


# --- conformance fixes (issue 30): unsigned arithmetic, empty reductions, legacy PRelu, refusals -----
U64_BIG = 2 ** 63 + 5  # past int64: a uint64 held in int64 must still order and divide as unsigned


def _unsigned_values(dtype):
    top = int(np.iinfo(dtype).max)
    a = np.array([top, 7, 1, 10, 0, top - 1, 3], dtype=dtype)
    b = np.array([3, top - 2, 2, top, 5, 2, 3], dtype=dtype)
    if dtype == np.uint64:
        a[2], b[0] = U64_BIG, U64_BIG - 9
    return a, b


def _numpy_unsigned(op, a, b):
    with np.errstate(over="ignore"):
        return {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.floor_divide, "Mod": np.mod,
                "Max": np.maximum, "Min": np.minimum, "Less": np.less, "Greater": np.greater,
                "Equal": np.equal}[op](a, b)


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.uint64])
@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Mod", "Max", "Min", "Less", "Greater", "Equal"])
def test_unsigned_16_to_64_bit_arithmetic_wraps_and_orders_as_unsigned(op, dtype):
    """torch has no uint16/32/64 kernels for these: computed in int64, cast back (numpy is the oracle,
    with its modular wrap; ONNX Runtime has no kernels for most of these types either)."""
    a, b = _unsigned_values(dtype)
    model = make_model([helper.make_node(op, ["a", "b"], ["y"])], {"a": a, "b": b}, ["y"], 13)
    got = run_rebuilt(model, {"a": a, "b": b}, ["y"])[0]
    ref = _numpy_unsigned(op, a, b)
    assert got.dtype == ref.dtype
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("dtype", [np.uint16, np.uint64])
def test_unsigned_reductions_clip_gather_and_argmax(dtype):
    a, b = _unsigned_values(dtype)
    x = np.stack([a, b])
    nodes = [helper.make_node("ReduceMax", ["x"], ["mx"], axes=[1], keepdims=0),
             helper.make_node("ReduceMin", ["x"], ["mn"], axes=[1], keepdims=0),
             helper.make_node("ArgMax", ["x"], ["am"], axis=1, keepdims=0),
             helper.make_node("Clip", ["x", "lo", "hi"], ["c"]),
             helper.make_node("Gather", ["x", "i"], ["g"], axis=1)]
    lo, hi = np.array(2, dtype=dtype), np.array(a[2], dtype=dtype)
    model = make_model(nodes, {"x": x, "lo": lo, "hi": hi, "i": i64(2, 0)}, ["mx", "mn", "am", "c", "g"], 13)
    got = run_rebuilt(model, {"x": x, "lo": lo, "hi": hi, "i": i64(2, 0)}, ["mx", "mn", "am", "c", "g"])
    for g, ref in zip(got, [x.max(1), x.min(1), x.argmax(1), np.clip(x, lo, hi), x[:, [2, 0]]]):
        assert g.dtype == ref.dtype
        np.testing.assert_array_equal(g, ref)


@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.bool_])
@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin", "ReduceSum", "ReduceSumSquare", "ReduceL2"])
def test_reduction_over_an_empty_axis_gives_the_identity(op, dtype, keepdims):
    """ONNX: max over nothing is -inf (the type's lowest value, False), min +inf (highest, True), sums 0."""
    if dtype == np.bool_ and op not in ("ReduceMax", "ReduceMin"):
        pytest.skip("ONNX reduces bool with ReduceMax/ReduceMin only")
    if dtype == np.int32 and op == "ReduceL2":
        pytest.skip("torch's vector norm takes floats only")
    x = np.zeros((2, 0, 4), dtype=dtype)
    model = make_model([helper.make_node(op, ["x", "axes"], ["y"], keepdims=keepdims)], {"x": x}, ["y"], 20,
                       {"axes": i64(1)})
    got = run_rebuilt(model, {"x": x}, ["y"])[0]
    if op in ("ReduceMax", "ReduceMin"):
        high = op == "ReduceMin"
        fill = (high if dtype == np.bool_ else np.inf * (1 if high else -1) if dtype == np.float32
                else np.iinfo(dtype).max if high else np.iinfo(dtype).min)
    else:
        fill = 0
    ref = np.full((2, 1, 4) if keepdims else (2, 4), fill, dtype=dtype)
    assert got.dtype == ref.dtype
    np.testing.assert_array_equal(got, ref)


def test_opset6_prelu_slope_per_channel_applies_along_axis_1():
    """Before opset 7 a slope of shape [C] is per channel (torch's PReLU(C) exported at opset 6), not
    numpy's trailing-axis broadcast."""
    x, slope = rand(2, 3, 4, 5), rand(3, seed=7)
    model = _legacy_model([helper.make_node("PRelu", ["x", "slope"], ["y"])], {"x": x, "slope": slope}, 6)
    ref = np.where(x >= 0, x, x * slope[None, :, None, None])
    assert_close(run_rebuilt(model, {"x": x, "slope": slope}, ["y"])[0], ref)
    one = f32(0.25)  # a slope of one value is shared
    model = _legacy_model([helper.make_node("PRelu", ["x", "slope"], ["y"])], {"x": x, "slope": one}, 6)
    assert_close(run_rebuilt(model, {"x": x, "slope": one}, ["y"])[0], np.where(x >= 0, x, 0.25 * x))


def test_batchnorm_training_mode_is_refused_by_name():
    """training_mode=1 normalises with the batch's statistics: refused, not computed with the running ones,
    also where only Y is used (the updated statistics, outputs the spec requires, go unused)."""
    node = helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y", "rm", "rv"],
                            training_mode=1)
    model = make_model([node], {"x": X4}, ["y"], 15, BN)
    with pytest.raises(InvtoolError, match="BatchNormalization with training_mode=1 is not supported: .*; export"):
        run_rebuilt(model, {"x": X4}, ["y"])


def _typed_model(node, inputs, outputs, opset):
    graph = helper.make_graph([node], "typed", [helper.make_tensor_value_info(k, t, [2]) for k, t in inputs.items()],
                              [helper.make_tensor_value_info(k, t, [2]) for k, t in outputs.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("model", [
    _typed_model(helper.make_node("Equal", ["a", "b"], ["y"]), {"a": TensorProto.STRING, "b": TensorProto.STRING},
                 {"y": TensorProto.BOOL}, 19),
    _typed_model(helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT8E4M3FN), {"x": TensorProto.FLOAT},
                 {"y": TensorProto.FLOAT8E4M3FN}, 19),
    _typed_model(helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT8E5M2), {"x": TensorProto.FLOAT},
                 {"y": TensorProto.FLOAT}, 19),  # the Cast's `to` alone
], ids=["string-inputs", "float8-output", "float8-cast-to"])
def test_string_and_float8_values_are_refused_at_build(model):
    with pytest.raises(InvtoolError, match=r"^(STRING|FLOAT8\w+) .* is not supported: torch has no .*; ") as err:
        build(model, ["y"])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_resize_align_corners_downsampling_follows_onnxruntime(mode):
    """5 * 0.7 = 3.5 rows give 3: ONNX Runtime (and torch) divide by the integer output length minus one,
    ONNX's reference by 3.5 - 1. invtool follows ONNX Runtime, the oracle it must agree with; ONNX's
    conformance cases test_resize_downsample_scales_{linear,cubic}_align_corners take the other side."""
    node = helper.make_node("Resize", ["x", "roi", "s"], ["y"], mode=mode,
                            coordinate_transformation_mode="align_corners")
    check_node(node, {"x": XS}, 13, {"roi": EMPTY, "s": f32(1, 1, 0.7, 0.6)})
