"""Quantised models against ONNX Runtime: each quantised op alone, then ResNet18 and two corpus models
(mobilenetv3_legacy, grey_ocr_legacy) in the three forms onnxruntime.quantization writes (QDQ, QOperator,
dynamic), the gradient through them, and the refusals."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from invtool import load_model
from invtool.errors import InvtoolError
from invtool.onnx.graph import build
from invtool.onnx.ops.quant import float_aliases, round_ste

from oracle import make_model, rand, run_ort, run_rebuilt

MS = "com.microsoft"
RNG = np.random.default_rng(0)


# ONNX Runtime's x86 kernels without VNNI (AVX2 only) multiply uint8 activations by int8 weights with vpmaddubsw,
# which saturates each pair's int16 sum: 255 * 127 * 2 overflows and the result is not the spec's. Its quantizer's
# answer is reduce_range (7-bit weights); so int8 weights against uint8 inputs are drawn within 7 bits here,
# and the quantised ResNet18 is made with reduce_range=True, and ORT stays an exact oracle on every CPU.
INT8_WEIGHTS = dict(lo=-64, hi=63)


def ints(dtype, *shape, lo=None, hi=None, seed=0):
    info = np.iinfo(dtype)
    return np.random.default_rng(seed).integers(info.min if lo is None else lo, (info.max if hi is None else hi) + 1,
                                                shape).astype(dtype)


def f32(*v):
    return np.array(v, dtype=np.float32)


def ms_model(nodes, inputs, initializers, outputs, opset=13):
    """A model of com.microsoft (and standard) nodes: ONNX's checker and shape inference do not know them."""
    graph = helper.make_graph(
        nodes, "q", [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                     for k, v in inputs.items()],
        [helper.make_empty_tensor_value_info(o) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(MS, 1)],
                             ir_version=8)


def compare(model, inputs, outputs, max_steps=0, max_fraction=0.0):
    """Ours against ORT, output by output, by value (an integer output of ORT is a float tensor holding
    integers here): at most `max_steps` apart, and apart at all on at most `max_fraction` of the elements."""
    ref = run_ort(model, inputs, outputs)
    got = run_rebuilt(model, inputs, outputs)
    for name, g, r in zip(outputs, got, ref):
        assert g.shape == r.shape, f"{name}: shape {g.shape} != {r.shape}"
        diff = np.abs(g.astype(np.float64) - r.astype(np.float64))
        assert diff.max(initial=0) <= max_steps, f"{name}: max difference {diff.max()} > {max_steps}"
        assert (diff > 0).mean() <= max_fraction, f"{name}: {(diff > 0).mean():.2%} of the values differ"
    return ref


# --- QuantizeLinear / DequantizeLinear --------------------------------------------------------------
def test_round_ste_rounds_half_to_even_and_passes_the_gradient():
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 0.4999], requires_grad=True)
    y = round_ste(x)
    assert y.tolist() == [0.0, 2.0, 2.0, -0.0, -2.0, 0.0]
    y.sum().backward()
    assert x.grad.tolist() == [1.0] * 6


@pytest.mark.parametrize("dtype, opset", [(np.uint8, 13), (np.int8, 13), (np.uint8, 21), (np.int8, 21),
                                          (np.int16, 21), (np.uint16, 21)])  # 16 bits from opset 21
def test_quantize_linear_per_tensor_saturates_and_rounds_half_to_even(dtype, opset):
    info = np.iinfo(dtype)
    zp = np.array(info.min + 3 if info.min == 0 else -3, dtype=dtype)  # a negative zero point where signed
    scale = f32(0.5)
    ties = np.arange(-20, 20, dtype=np.float32) * 0.25  # x / 0.5 lands on every .5
    wide = f32(info.min * 0.5 - 100, info.max * 0.5 + 100, -1e9, 1e9)  # saturation on both sides
    x = np.concatenate([ties, wide, rand(40) * 50]).astype(np.float32)
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])
    model = make_model([node], {"x": x}, ["y"], opset, {"s": scale, "z": zp})
    ref = compare(model, {"x": x}, ["y"])[0]
    assert ref.min() == info.min and ref.max() == info.max


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_quantize_and_dequantize_per_channel(dtype):
    x = rand(2, 4, 5, 3) * 20
    scale = f32(0.05, 0.2, 1.0, 3.0)
    zp = ints(dtype, 4, seed=1)
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=1),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1)]
    model = make_model(nodes, {"x": x}, ["q", "y"], 13, {"s": scale, "z": zp})
    compare(model, {"x": x}, ["q", "y"])


@pytest.mark.parametrize("dtype", [TensorProto.INT4, TensorProto.UINT4])
def test_four_bit_quantize_dequantize_at_opset_21(dtype):
    x = np.concatenate([rand(30) * 6, f32(-100, 100, 0.25, 0.75, -0.25)]).astype(np.float32)
    zp = helper.make_tensor("z", dtype, [], [-2 if dtype == TensorProto.INT4 else 3])
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_empty_tensor_value_info("y")],
                              [numpy_helper.from_array(f32(0.5), "s"), zp])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    ref = compare(model, {"x": x}, ["y"])[0]
    lo, hi = (-8, 7) if dtype == TensorProto.INT4 else (0, 15)
    zero = -2 if dtype == TensorProto.INT4 else 3
    assert ref.min() == (lo - zero) * 0.5 and ref.max() == (hi - zero) * 0.5  # the 4-bit range, not 8


def test_quantize_linear_output_dtype_without_zero_point():
    x = rand(50) * 3000
    node = helper.make_node("QuantizeLinear", ["x", "s"], ["y"], output_dtype=TensorProto.INT16)
    model = make_model([node], {"x": x}, ["y"], 21, {"s": f32(0.01)})
    compare(model, {"x": x}, ["y"])


def test_dequantize_int32_bias_and_int4_weights_fold_into_float_constants():
    """A dequantised initializer is computed at build time: the module holds the float weight, no node."""
    w = helper.make_tensor("w", TensorProto.INT4, [4, 2, 3, 3], ints(np.int8, 72, lo=-8, hi=7).tolist())
    b = ints(np.int32, 4, lo=-10 ** 6, hi=10 ** 6)
    x = rand(1, 2, 6, 6)
    nodes = [helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wf"], axis=0),
             helper.make_node("DequantizeLinear", ["b", "bs"], ["bf"]),
             helper.make_node("Conv", ["x", "wf", "bf"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_empty_tensor_value_info("y")],
                              [w, numpy_helper.from_array(f32(0.1, 0.2, 0.3, 0.4), "ws"),
                               helper.make_tensor("wz", TensorProto.INT4, [4], [0, 1, -1, 2]),
                               numpy_helper.from_array(b, "b"), numpy_helper.from_array(f32(1e-5), "bs")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    ref, = run_ort(model, {"x": x}, ["y"])
    got, = run_rebuilt(model, {"x": x}, ["y"])
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    module = build(model, ["y"])
    assert [n.target.__name__ for n in module.graph.nodes if n.op == "call_function"] == ["conv"]


def test_block_quantisation_is_refused_by_name():
    x = rand(2, 4)
    node = helper.make_node("DequantizeLinear", ["q", "s"], ["y"], axis=1, block_size=2)
    model = make_model([node], {"q": ints(np.int8, 2, 4)}, ["y"], 21, {"s": rand(2, 2)})
    with pytest.raises(InvtoolError, match="block_size=2"):
        run_rebuilt(model, {"q": ints(np.int8, 2, 4)}, ["y"])
    del x


# --- dynamic ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("x", [rand(3, 7) * 4, np.abs(rand(3, 7)) + 1, -np.abs(rand(3, 7)) - 1,
                               np.zeros((2, 3), np.float32)], ids=["mixed", "positive", "negative", "zeros"])
def test_dynamic_quantize_linear_outputs_match(x):
    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])
    model = make_model([node], {"x": x}, ["y", "s", "z"], 11)
    compare(model, {"x": x}, ["y", "s", "z"])


def test_conv_integer():  # ORT takes per-tensor weight zero points only
    x = ints(np.uint8, 2, 3, 9, 8)
    w = ints(np.int8, 4, 3, 3, 3, seed=1)
    wz = np.array(-2, np.int8)
    node = helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], pads=[1, 0, 2, 1], strides=[2, 1])
    model = make_model([node], {"x": x}, ["y"], 10, {"w": w, "xz": np.array(130, np.uint8), "wz": wz})
    compare(model, {"x": x}, ["y"])


def test_matmul_integer():
    a, b = ints(np.uint8, 2, 5, 7), ints(np.int8, 7, 6, seed=1)
    node = helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["y"])
    model = make_model([node], {"a": a}, ["y"], 10, {"b": b, "az": np.array(7, np.uint8),
                                                     "bz": ints(np.int8, 6, lo=-4, hi=4, seed=2)})
    compare(model, {"a": a}, ["y"])


# --- QOperator ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("wtype", [np.int8, np.uint8])
@pytest.mark.parametrize("per_channel", [False, True])
def test_qlinear_conv(wtype, per_channel):
    x = ints(np.uint8, 2, 4, 9, 9)
    w = ints(wtype, 6, 4, 3, 3, seed=1, **(INT8_WEIGHTS if wtype == np.int8 else {}))
    ws = (np.abs(rand(6, seed=3)) * 0.01 + 0.001).astype(np.float32) if per_channel else f32(0.004 * (1 + (wtype == np.int8)))
    wz = np.zeros(6 if per_channel else (), wtype) + (0 if wtype == np.int8 else 128)
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"],
                            pads=[1, 1, 0, 2], strides=[2, 1])
    init = {"xs": f32(0.02), "xz": np.array(120, np.uint8), "w": w, "ws": ws, "wz": wz, "ys": f32(0.05),
            "yz": np.array(100, np.uint8), "b": ints(np.int32, 6, lo=-5000, hi=5000, seed=4)}
    model = make_model([node], {"x": x}, ["y"], 10, init)
    ref = compare(model, {"x": x}, ["y"])[0]
    assert ref.min() == 0 and ref.max() == 255  # saturated both ways


def test_qlinear_matmul_int8():
    a, b = ints(np.int8, 3, 5, 40), ints(np.int8, 40, 6, seed=1)
    node = helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"])
    init = {"as": f32(0.03), "az": np.array(-5, np.int8), "b": b, "bs": f32(0.02), "bz": np.array(0, np.int8),
            "ys": f32(0.1), "yz": np.array(-10, np.int8)}
    compare(make_model([node], {"a": a}, ["y"], 10, init), {"a": a}, ["y"])


@pytest.mark.parametrize("quantised_output", [True, False])
def test_qgemm(quantised_output):
    a = ints(np.uint8, 3, 64)
    b = ints(np.int8, 10, 64, seed=1, **INT8_WEIGHTS)
    ins = ["a", "as", "az", "b", "bs", "bz", "c"] + (["ys", "yz"] if quantised_output else [])
    node = helper.make_node("QGemm", ins, ["y"], domain=MS, transB=1, alpha=1.0)
    init = {"as": f32(0.01), "az": np.array(3, np.uint8), "b": b, "bs": (np.abs(rand(10)) * 0.01).astype(np.float32),
            "bz": np.zeros(10, np.int8), "c": ints(np.int32, 10, lo=-3000, hi=3000), "ys": f32(0.05),
            "yz": np.array(128, np.uint8)}
    compare(ms_model([node], {"a": a}, {k: init[k] for k in ins[1:]}, ["y"]), {"a": a}, ["y"],
            max_steps=0 if quantised_output else 1e-5)


ADD_MUL = {"A_scale": np.float32(0.03), "A_zero_point": np.uint8(100), "B_scale": np.float32(0.07),
           "B_zero_point": np.uint8(20), "C_scale": np.float32(0.05), "C_zero_point": np.uint8(60)}


@pytest.mark.parametrize("op", ["QLinearAdd", "QLinearMul"])
@pytest.mark.parametrize("b_shape", [(2, 3, 16, 16), (1, 3, 1, 1)], ids=["same", "broadcast"])
def test_qlinear_add_mul(op, b_shape):
    a, b = ints(np.uint8, 2, 3, 16, 16), ints(np.uint8, *b_shape, seed=1)
    names = ["A", "A_scale", "A_zero_point", "B", "B_scale", "B_zero_point", "C_scale", "C_zero_point"]
    node = helper.make_node(op, names, ["C"], domain=MS)
    init = {k: v for k, v in ADD_MUL.items()}
    init["B"] = b
    compare(ms_model([node], {"A": a}, init, ["C"]), {"A": a}, ["C"])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("channels_last", [0, 1])
def test_qlinear_global_average_pool(dtype, channels_last):
    x = ints(dtype, 2, 5, 7, 6)
    node = helper.make_node("QLinearGlobalAveragePool", ["x", "xs", "xz", "ys", "yz"], ["y"], domain=MS,
                            channels_last=channels_last)
    init = {"xs": f32(0.1), "xz": np.array(-3 if dtype == np.int8 else 7, dtype), "ys": f32(0.03),
            "yz": np.array(-1 if dtype == np.int8 else 2, dtype)}
    compare(ms_model([node], {"x": x}, init, ["y"]), {"x": x}, ["y"])


@pytest.mark.parametrize("op, attrs", [("QLinearLeakyRelu", {"alpha": 0.1}), ("QLinearSigmoid", {})])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_qlinear_lookup_table_ops_on_every_input_value(op, attrs, dtype):
    """All 256 input values: the whole lookup table ORT builds."""
    info = np.iinfo(dtype)
    x = np.arange(info.min, info.max + 1).astype(dtype).reshape(1, 4, 8, 8)
    node = helper.make_node(op, ["x", "xs", "xz", "ys", "yz"], ["y"], domain=MS, **attrs)
    init = {"xs": f32(0.06), "xz": np.array(info.min + 128 + 5, dtype), "ys": f32(0.004 if op == "QLinearSigmoid" else 0.05),
            "yz": np.array(info.min + (0 if op == "QLinearSigmoid" else 100), dtype)}
    compare(ms_model([node], {"x": x}, init, ["y"]), {"x": x}, ["y"])


def test_qlinear_concat_requantises_inputs_of_other_scales():
    a, b = ints(np.uint8, 1, 2, 4, 4), ints(np.uint8, 1, 3, 4, 4, seed=1)
    node = helper.make_node("QLinearConcat", ["ys", "yz", "a", "as", "az", "b", "bs", "bz"], ["y"], domain=MS, axis=1)
    init = {"ys": f32(0.05), "yz": np.array(10, np.uint8), "as": f32(0.05), "az": np.array(10, np.uint8),
            "b": b, "bs": f32(0.13), "bz": np.array(128, np.uint8)}
    compare(ms_model([node], {"a": a}, init, ["y"]), {"a": a}, ["y"])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("opset, axis, shape", [(13, None, (2, 3, 40)), (13, 1, (2, 6, 4, 5)), (12, None, (3, 50)),
                                                (12, 1, (2, 3, 4, 5)), (11, 2, (2, 3, 4, 5))],
                         ids=["opset13-last", "opset13-axis1", "opset12-last", "opset12-flattened", "opset11-axis2"])
@pytest.mark.parametrize("x_scale", [0.02, 0.15, 1.3])
def test_qlinear_softmax(dtype, opset, axis, shape, x_scale):
    """Exact: ORT's exponential table, its in-order float32 sum, its rounding; x_scale 1.3 makes rows whose
    maximum takes all the probability (256 steps, saturated)."""
    x = ints(dtype, *shape, seed=int(x_scale * 100))
    attrs = {"opset": opset} | ({} if axis is None else {"axis": axis})
    node = helper.make_node("QLinearSoftmax", ["x", "xs", "xz", "ys", "yz"], ["y"], domain=MS, **attrs)
    init = {"xs": f32(x_scale), "xz": np.array(5, dtype), "ys": f32(1 / 256),
            "yz": np.array(0 if dtype == np.uint8 else -128, dtype)}
    compare(ms_model([node], {"x": x}, init, ["y"], opset=opset), {"x": x}, ["y"])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("attrs", [dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
                                   dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 2], count_include_pad=1),
                                   dict(kernel_shape=[2, 3], strides=[2, 2], ceil_mode=1),
                                   dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1, count_include_pad=1),
                                   dict(kernel_shape=[3, 3], auto_pad="SAME_UPPER"),
                                   dict(kernel_shape=[2, 2], strides=[2, 2], channels_last=1),
                                   dict(kernel_shape=[7, 9]),  # the whole input: ORT's global pool
                                   dict(kernel_shape=[3], strides=[2], pads=[1, 1])],
                         ids=["pads", "count-pad", "ceil", "ceil-count-pad", "same-upper", "nhwc", "global", "1d"])
def test_qlinear_average_pool(dtype, attrs):
    shape = (2, 3, 7, 9) if len(attrs["kernel_shape"]) == 2 else (2, 3, 11)
    x = ints(dtype, *(shape[0], *shape[2:], shape[1]) if attrs.get("channels_last") else shape)
    node = helper.make_node("QLinearAveragePool", ["x", "xs", "xz", "ys", "yz"], ["y"], domain=MS, **attrs)
    init = {"xs": np.float32(0.1), "xz": np.array(-3 if dtype == np.int8 else 7, dtype), "ys": np.float32(0.07),
            "yz": np.array(-1 if dtype == np.int8 else 2, dtype)}  # ORT's shape inference wants scalars here
    compare(ms_model([node], {"x": x}, init, ["y"]), {"x": x}, ["y"])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_qlinear_where_copies_or_requantises_each_side(dtype):
    x, y = ints(dtype, 2, 3, 4, 5), ints(dtype, 1, 3, 1, 5, seed=1)
    cond = np.random.default_rng(2).random((2, 1, 4, 5)) > 0.5
    names = ["c", "x", "xs", "xz", "y", "ys", "yz", "zs", "zz"]
    node = helper.make_node("QLinearWhere", names, ["z"], domain=MS)
    zp = np.array(-4 if dtype == np.int8 else 9, dtype)
    for x_like_z in (True, False):
        init = {"xs": f32(0.05 if x_like_z else 0.02), "xz": zp, "y": y, "ys": f32(0.11),
                "yz": np.array(3, dtype), "zs": f32(0.05), "zz": zp}
        compare(ms_model([node], {"c": cond, "x": x}, init, ["z"]), {"c": cond, "x": x}, ["z"])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("axes, keepdims", [([2, 3], 1), ([1], 0), ([-1], 1)])
def test_qlinear_reduce_mean_against_its_schema_in_standard_ops(dtype, axes, keepdims):
    """ORT has no CPU kernel for QLinearReduceMean (and its quantizer never writes it): the schema's
    Dequantize -> ReduceMean -> Quantize, run by ORT as three standard ops, is the reference. Within one
    step: the float32 mean's summation order is torch's, not ORT's."""
    x = ints(dtype, 2, 3, 6, 7)
    init = {"xs": np.float32(0.1), "xz": np.array(-3 if dtype == np.int8 else 7, dtype), "ys": np.float32(0.03),
            "yz": np.array(-1 if dtype == np.int8 else 2, dtype)}
    node = helper.make_node("QLinearReduceMean", ["x", "xs", "xz", "ys", "yz"], ["y"], domain=MS, axes=axes,
                            keepdims=keepdims)
    got, = run_rebuilt(ms_model([node], {"x": x}, init, ["y"]), {"x": x}, ["y"])
    chain = [helper.make_node("DequantizeLinear", ["x", "xs", "xz"], ["f"]),
             helper.make_node("ReduceMean", ["f"], ["m"], axes=axes, keepdims=keepdims),
             helper.make_node("QuantizeLinear", ["m", "ys", "yz"], ["y"])]
    ref, = run_ort(make_model(chain, {"x": x}, ["y"], 13, init), {"x": x}, ["y"])
    assert got.shape == ref.shape
    assert np.abs(got.astype(np.float64) - ref).max() <= 1


# --- refusals -------------------------------------------------------------------------------------
def test_non_constant_scale_is_refused_in_one_line_naming_node_and_op():
    x = rand(2, 3)
    nodes = [helper.make_node("ReduceMax", ["x"], ["s"], keepdims=0),  # a scale computed from the image
             helper.make_node("QuantizeLinear", ["x", "s"], ["y"], name="q_from_image")]
    model = make_model(nodes, {"x": x}, ["y"], 13)
    with pytest.raises(InvtoolError, match=r"QuantizeLinear node 'q_from_image': its y_scale 's' depends on the "
                                           r"image.*re-quantize the model with constant") as err:
        build(model, ["y"])
    assert "\n" not in str(err.value)


def test_op_of_an_unknown_domain_is_refused_in_one_line_saying_what_to_do():
    node = helper.make_node("QLinearMagic", ["x"], ["y"], name="magic", domain="com.vendor")
    model = ms_model([node], {"x": ints(np.uint8, 4)}, {}, ["y"])
    model.opset_import.append(helper.make_opsetid("com.vendor", 1))
    with pytest.raises(InvtoolError, match=r"unsupported op com\.vendor\.QLinearMagic \(node 'magic'\).*"
                                           r"no converters for domain 'com.vendor'.*export the model without custom"
                       ) as err:
        build(model, ["y"])
    assert "\n" not in str(err.value)


# --- ResNet18, quantised by onnxruntime.quantization ------------------------------------------------
def _images(n, seed):
    return np.random.default_rng(seed).random((n, 3, 64, 64), dtype=np.float32)


@pytest.fixture(scope="module")
def quantised_resnet18(resnet18_onnx, tmp_path_factory):
    """form -> path of the fixture's ResNet18 quantised by onnxruntime.quantization."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter({"image": _images(1, seed)} for seed in range(3))

        def get_next(self):
            return next(self.batches, None)

    src, folder = str(resnet18_onnx[0]), tmp_path_factory.mktemp("quantised")
    paths = {form: folder / f"{form}.onnx" for form in ("qdq_u8", "qdq_s8", "qoperator", "dynamic")}
    quantize_static(src, paths["qdq_u8"], Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8, reduce_range=True)
    quantize_static(src, paths["qdq_s8"], Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QInt8, reduce_range=True)
    quantize_static(src, paths["qoperator"], Reader(), quant_format=QuantFormat.QOperator, per_channel=True,
                    reduce_range=True)
    quantize_dynamic(src, paths["dynamic"], reduce_range=True)   # see INT8_WEIGHTS
    return paths


def _tap_scales(proto) -> dict[str, float]:
    """The quantisation step of each tap that a DequantizeLinear of a constant per-tensor scale produces."""
    init = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    return {n.output[0]: float(init[n.input[1]].reshape(-1)[0]) for n in proto.graph.node
            if n.op_type == "DequantizeLinear" and n.input[1] in init and init[n.input[1]].size == 1}


def tap_errors(path, x):
    """tap -> (max |ours - ORT| in the tap's quantisation steps, or NaN for a float tap, max abs error)."""
    proto = onnx.load(str(path))
    names = [o.name for o in proto.graph.output]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])  # as users run it
    ref = dict(zip(names, session.run(names, {"image": x})))
    with torch.no_grad():
        ours = load_model(path, device="cpu").features(torch.from_numpy(x), names)
    scales = _tap_scales(proto)
    errors = {}
    for n in names:
        err = float(np.abs(ours[n].numpy().astype(np.float64) - ref[n]).max())
        errors[n] = (err / scales[n] if n in scales else float("nan"), err)
    return errors


def test_qoperator_resnet18_equals_ort_exactly(quantised_resnet18):
    proto = onnx.load(str(quantised_resnet18["qoperator"]))
    ops = {(n.domain, n.op_type) for n in proto.graph.node}
    assert {("", "QLinearConv"), (MS, "QLinearAdd"), (MS, "QLinearGlobalAveragePool"), (MS, "QGemm")} <= ops
    errors = tap_errors(quantised_resnet18["qoperator"], _images(2, 10))
    assert len(errors) == 20 and all(not np.isnan(s) for s, _ in errors.values())
    assert max(e for _, e in errors.values()) == 0.0, errors  # integer arithmetic, emulated exactly


def test_dynamic_resnet18_equals_ort(quantised_resnet18):
    """Dynamic quantisation: float taps (dequantised by Mul), equal to float32 rounding."""
    errors = tap_errors(quantised_resnet18["dynamic"], _images(2, 10))
    assert max(e for _, e in errors.values()) < 1e-5, errors


def _session(model, optimised: bool, optimised_path=None):
    """ORT as users run it (default graph optimisations: QDQ pairs around a Conv fused into integer kernels),
    or with ORT_DISABLE_ALL: the file's own semantics, float ops between the QuantizeLinear/DequantizeLinear."""
    options = ort.SessionOptions()
    if not optimised:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if optimised_path:
        options.optimized_model_filepath = str(optimised_path)
    model = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


QDQ_SEEDS = (7, 8, 9, 10, 11)  # image seeds, 2 images each; seed 10 alone happens to meet no rounding tie


@pytest.mark.parametrize("form", ["qdq_u8", "qdq_s8"])
def test_qdq_resnet18_each_stage_is_within_one_step_of_ort(quantised_resnet18, form):
    """The issue's one-step criterion, stage by stage: each float op between a DequantizeLinear and a
    QuantizeLinear (20 Conv, 8 Add, MaxPool, GlobalAveragePool, Flatten, Gemm), fed ORT's own inputs
    (ORT_DISABLE_ALL: the file's semantics), quantises within one step of ORT. Only a Conv's float32 sum,
    whose order torch and ORT's MLAS choose differently (a few ulps apart), can land on the other side of a
    rounding boundary: measured 12 of 2.8M values one step off, the rest equal."""
    from onnx.utils import Extractor

    proto = onnx.load(str(quantised_resnet18[form]))
    weights = {t.name for t in proto.graph.initializer}
    producer = {o: n for n in proto.graph.node for o in n.output}
    everything = onnx.load(str(quantised_resnet18[form]))
    names = [o for n in proto.graph.node for o in n.output]
    del everything.graph.output[:]
    everything.graph.output.extend(helper.make_empty_tensor_value_info(o) for o in names)
    extractor = Extractor(onnx.shape_inference.infer_shapes(proto))
    stages = []  # (the float op, its image-dependent inputs, its QuantizeLinear's output, that stage alone)
    for q in proto.graph.node:
        if q.op_type == "QuantizeLinear" and q.input[0] in producer:
            ins = [i for i in producer[q.input[0]].input
                   if i in producer and any(j not in weights for j in producer[i].input if j)]
            stages.append((producer[q.input[0]].op_type, ins, q.output[0], extractor.extract_model(ins, [q.output[0]])))
    assert len(stages) == 32
    session = _session(everything.SerializeToString(), optimised=False)
    worst, off, total, flipped = 0.0, 0, 0, set()
    for seed in QDQ_SEEDS:
        ref = dict(zip(names, session.run(names, {"image": _images(2, seed)})))
        for op, ins, out, sub in stages:
            got, = run_rebuilt(sub, {i: ref[i] for i in ins}, [out])
            diff = np.abs(got.astype(np.float64) - ref[out])  # integer values: steps
            worst, off, total = max(worst, diff.max()), off + int((diff > 0).sum()), total + diff.size
            flipped |= {op} if diff.any() else set()
    assert worst <= 1, worst
    assert off / total < 1e-4, f"{off} of {total} values a step off"
    assert flipped <= {"Conv"}, flipped


@pytest.mark.parametrize("form", ["qdq_u8", "qdq_s8"])
def test_qdq_resnet18_taps_stay_within_a_few_steps_of_ort(quantised_resnet18, form, tmp_path):
    """End to end, a value one step off at a tie (see the stage test) moves the values that depend on it, and
    so on down the network; the drift is a property of the float ops, not of the quantisation. Measured over
    QDQ_SEEDS, in steps of each tap (ours vs ORT default / ours vs ORT_DISABLE_ALL / ORT default vs
    ORT_DISABLE_ALL): conv1 1 / 1 / 1 (uint8) and 1 / 1 / 0 (int8); deep taps up to 4 / 4 / 5 (uint8) and
    4 / 4 / 0 (int8, which ORT does not fuse on x86; 3 instead of 4 with other thread counts, the float sums'
    order changing): the drift is the same with or without ORT's fusion, and ORT's own two modes disagree by
    as much (uint8: 5), so no end-to-end reference is one step from another. Asserted: at most 5 steps from
    either mode of ORT, and ORT's modes more than one step apart where it fuses, equal where it does not."""
    path = quantised_resnet18[form]
    proto = onnx.load(str(path))
    names = [o.name for o in proto.graph.output]
    scales = _tap_scales(proto)
    fused_path = tmp_path / "optimised.onnx"
    default, disabled = _session(path, True, fused_path), _session(path, False)
    fused = any(n.op_type == "QLinearConv" for n in onnx.load(str(fused_path)).graph.node)
    model = load_model(path, device="cpu")
    steps = {k: {n: 0.0 for n in names} for k in ("ours-default", "ours-disabled", "default-disabled")}
    for seed in QDQ_SEEDS:
        x = _images(2, seed)
        a = dict(zip(names, default.run(names, {"image": x})))
        b = dict(zip(names, disabled.run(names, {"image": x})))
        with torch.no_grad():
            ours = {n: t.numpy().astype(np.float64) for n, t in model.features(torch.from_numpy(x), names).items()}
        for n in names:
            for key, (u, v) in {"ours-default": (ours[n], a[n]), "ours-disabled": (ours[n], b[n]),
                                "default-disabled": (a[n].astype(np.float64), b[n])}.items():
                steps[key][n] = max(steps[key][n], round(float(np.abs(u - v).max()) / scales[n], 3))
    print({k: max(v.values()) for k, v in steps.items()})
    for key in ("ours-default", "ours-disabled"):
        assert steps[key]["conv1"] <= 1 and steps[key]["pool1"] <= 1, (key, steps[key])
        assert max(steps[key].values()) <= 5, (key, steps[key])
    if fused:  # ORT's integer kernels are another computation: its two modes differ by more than one step
        assert max(steps["default-disabled"].values()) > 1, steps["default-disabled"]
    else:
        assert max(steps["default-disabled"].values()) == 0, steps["default-disabled"]


def test_gradient_reaches_the_image_through_each_quantised_form(quantised_resnet18):
    for form, path in quantised_resnet18.items():
        model = load_model(path, device="cpu")
        x = torch.from_numpy(_images(1, 3)).requires_grad_(True)
        model.features(x, ["res3a"])["res3a"].square().sum().backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0, form


# --- corpus models, quantised by onnxruntime.quantization ---------------------------------------------
def _corpus_images(n, channels, seed):
    return np.random.default_rng(seed).random((n, channels, 64, 64), dtype=np.float32)


@pytest.fixture(scope="module")
def quantised_corpus(corpus_model, tmp_path_factory):
    """(model, form) -> path: mobilenetv3_legacy (opset 13) and grey_ocr_legacy (opset 12) quantised per
    channel by onnxruntime.quantization. grey_ocr_legacy's QDQ form is made from the file upgraded to opset
    13 by onnx.version_converter: from the opset-12 file the quantiser writes per-axis DequantizeLinear nodes
    (an opset-13 attribute), which ONNX Runtime refuses to load."""
    import onnx.version_converter
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)

    folder, paths = tmp_path_factory.mktemp("quantised_corpus"), {}
    for name in ("mobilenetv3_legacy", "grey_ocr_legacy"):
        model = corpus_model(name)
        src, input_name = str(model.path), model.proto.graph.input[0].name

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.batches = iter({input_name: _corpus_images(1, model.channels, seed)} for seed in range(3))

            def get_next(self):
                return next(self.batches, None)

        upgraded = folder / f"{name}-opset13.onnx"
        onnx.save(onnx.version_converter.convert_version(model.proto, 13), str(upgraded))
        paths[name, "qoperator"] = folder / f"{name}-qoperator.onnx"
        quantize_static(src, paths[name, "qoperator"], Reader(), quant_format=QuantFormat.QOperator, per_channel=True)
        paths[name, "qdq"] = folder / f"{name}-qdq.onnx"
        quantize_static(src if model.opset >= 13 else upgraded, paths[name, "qdq"], Reader(),
                        quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QUInt8)
        paths[name, "dynamic"] = folder / f"{name}-dynamic.onnx"
        quantize_dynamic(src, paths[name, "dynamic"])
    return paths


def _runs(path, x, names, optimised=False):
    """ORT (ORT_DISABLE_ALL, the file's semantics, unless `optimised`) and ours on the same file, by name."""
    session = _session(path, optimised)
    ref = dict(zip(names, session.run(names, {session.get_inputs()[0].name: x})))
    with torch.no_grad():
        ours = {n: t.numpy().astype(np.float64) for n, t in load_model(path, device="cpu").features(
            torch.from_numpy(x), names).items()}
    return ours, ref


def _with_outputs(path, names, folder):
    """A copy of the file with these tensors as graph outputs too."""
    proto = onnx.load(str(path))
    proto.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names)
    out = folder / f"{path.stem}-taps.onnx"
    onnx.save(proto, str(out))
    return out


def test_qoperator_mobilenetv3_legacy_equals_ort_exactly(quantised_corpus):
    """HardSigmoid/HardSwish (kept float between DequantizeLinear/QuantizeLinear), squeeze-excitation
    (QLinearGlobalAveragePool, QLinearMul), QGemm and the final QLinearSoftmax: integer arithmetic, exact."""
    path = quantised_corpus["mobilenetv3_legacy", "qoperator"]
    ops = {(n.domain, n.op_type) for n in onnx.load(str(path)).graph.node}
    assert {(MS, "QLinearSoftmax"), (MS, "QLinearGlobalAveragePool"), (MS, "QLinearMul"), (MS, "QGemm"),
            ("", "HardSigmoid")} <= ops
    for optimised in (False, True):  # ORT's fusions change nothing in a QOperator file
        for seed in (20, 21, 22):
            ours, ref = _runs(path, _corpus_images(2, 3, seed), ["output0"], optimised)
            assert np.abs(ours["output0"] - ref["output0"]).max() == 0.0


def test_qdq_mobilenetv3_legacy_output_within_one_step_of_ort(quantised_corpus):
    """The softmax output is a DequantizeLinear (step 1/255): equal to ORT_DISABLE_ALL (the file's semantics)
    and within one step of ORT as users run it (its fusions; measured 1 step over 20 seeds)."""
    path = quantised_corpus["mobilenetv3_legacy", "qdq"]
    step = _tap_scales(onnx.load(str(path)))["output0"]
    for optimised in (False, True):
        for seed in (20, 21, 22):
            ours, ref = _runs(path, _corpus_images(2, 3, seed), ["output0"], optimised)
            assert np.abs(ours["output0"] - ref["output0"]).max() <= step * 1.0001, (optimised, seed)


@pytest.mark.parametrize("form", ["qoperator", "qdq", "dynamic"])
def test_grey_ocr_legacy_quantised_matches_ort(quantised_corpus, form, tmp_path):
    """grey_ocr_legacy (opset 12): its output is LogSoftmax in float, of the dequantised head. QOperator and
    dynamic: equal to ORT up to float32 rounding (measured 4.8e-7 of values up to 2.7). QDQ: the head, the last
    quantised tensor, within one of its steps of ORT (a Conv's float32 sum in torch's order, see the ResNet18
    stage test), the LogSoftmax output within two of them (measured 1.00 and 1.02 steps over 20 seeds)."""
    path = quantised_corpus["grey_ocr_legacy", form]
    proto = onnx.load(str(path))
    ops = {n.op_type for n in proto.graph.node}
    assert {"qoperator": "QLinearConv", "qdq": "QuantizeLinear", "dynamic": "ConvInteger"}[form] in ops
    scales = _tap_scales(proto)
    head = [n.output[0] for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.output[0] in scales]
    names = ["output0"] + head[-1:]
    path = _with_outputs(path, head[-1:], tmp_path)
    for seed in (20, 21, 22):
        ours, ref = _runs(path, _corpus_images(2, 1, seed), names)
        err = np.abs(ours["output0"] - ref["output0"]).max()
        if form == "qdq":
            step = scales[head[-1]]
            assert np.abs(ours[head[-1]] - ref[head[-1]]).max() <= step * 1.0001, seed
            assert err <= 2 * step, seed
        else:
            assert err <= 1e-5 * max(np.abs(ref["output0"]).max(), 1.0), seed


def test_gradient_reaches_the_image_through_quantised_corpus_models(quantised_corpus):
    for (name, form), path in quantised_corpus.items():
        channels = 1 if name == "grey_ocr_legacy" else 3
        model = load_model(path, device="cpu")
        x = torch.from_numpy(_corpus_images(1, channels, 5)).requires_grad_(True)
        model.features(x, ["output0"])["output0"].square().sum().backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0, (name, form)


def test_quantised_tensors_go_by_their_float_names(quantised_resnet18):
    model = load_model(quantised_resnet18["qoperator"], device="cpu")
    assert model.resolve("/layer1.0/Add_output_0") == "/layer1.0/Add_output_0_quantized"
    assert "/layer1.0/Add_output_0" in [a for info in model.describe(64) for a in info.aliases]
    x = torch.from_numpy(_images(1, 4))
    with torch.no_grad():  # the quantised Add output (relu fused); res2a is its dequantised form
        got = model.features(x, ["/layer1.0/Add_output_0", "res2a"])
    q = got["/layer1.0/Add_output_0"]
    init = {t.name: torch.tensor(numpy_helper.to_array(t)) for t in model.proto.graph.initializer}
    scale, zero_point = init["/layer1.0/Add_output_0_scale"], init["/layer1.0/Add_output_0_zero_point"]
    info = torch.iinfo(zero_point.dtype)
    assert torch.equal(q, torch.round(q)) and info.min <= q.min() and q.max() <= info.max
    assert torch.equal((q - zero_point.float()) * scale, got["res2a"])
    # QDQ keeps the float names on the dequantised tensors (the taps are DequantizeLinear outputs): no alias
    assert float_aliases(onnx.load(str(quantised_resnet18["qdq_u8"]))) == {}
