"""Caffe2 model-zoo exports (opset 9, initializers listed as inputs, weights made by ConstantOfShape):
the "light" copies of AlexNet, DenseNet121, Inception v1/v2, ResNet50, ShuffleNet, SqueezeNet, VGG19
and ZFNet512 that ship inside the onnx package. Every intermediate tensor must match ONNX Runtime."""
from pathlib import Path

import numpy as np
import onnx
import pytest

from oracle import all_tensors_match, model_of

ZOO = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
MODELS = sorted(ZOO.glob("light_*.onnx"))


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_zoo_model_matches_onnxruntime_at_every_tensor(path):
    all_tensors_match(path, np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32))


def test_zoo_models_are_there():
    """The nine models of the docstring, so that none of them drops out of the parametrised test unseen."""
    expected = {f"light_{name}" for name in ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2",
                                             "resnet50", "shufflenet", "squeezenet", "vgg19", "zfnet512")}
    missing = expected - {p.stem for p in MODELS}
    assert not missing, f"expected the onnx package's light model zoo in {ZOO}; missing {sorted(missing)}"


def _init(name, shape, rng):
    return onnx.numpy_helper.from_array((rng.standard_normal(shape) * 0.2).astype(np.float32), name)


def test_tf2onnx_style_nhwc_graph(tmp_path):
    """What tf2onnx writes for a small Keras CNN: NHWC input, Transposes around NCHW ops, SAME padding,
    Relu6 as Clip with inputs, a Keras Flatten of NHWC as Reshape, Dense as MatMul + Add."""
    from onnx import TensorProto, helper
    rng = np.random.default_rng(0)
    i64 = lambda name, v: onnx.numpy_helper.from_array(np.array(v, np.int64), name)  # noqa: E731
    f32 = lambda name, v: onnx.numpy_helper.from_array(np.array(v, np.float32), name)  # noqa: E731
    nodes = [
        helper.make_node("Transpose", ["input_1:0"], ["t0"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t0", "k1", "b1"], ["c1"], auto_pad="SAME_UPPER", strides=[2, 2], kernel_shape=[3, 3]),
        helper.make_node("Clip", ["c1", "lo", "hi"], ["r1"]),
        helper.make_node("Conv", ["r1", "dw"], ["c2"], group=8, auto_pad="SAME_UPPER", kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2], auto_pad="VALID"),
        helper.make_node("Transpose", ["p2"], ["t2"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["t2", "flat"], ["f"]),
        helper.make_node("MatMul", ["f", "dense_w"], ["mm"]),
        helper.make_node("Add", ["mm", "dense_b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    inits = [_init("k1", [8, 3, 3, 3], rng), _init("b1", [8], rng), _init("dw", [8, 1, 3, 3], rng),
             f32("lo", 0.0), f32("hi", 6.0), i64("flat", [-1, 4 * 4 * 8]),
             _init("dense_w", [128, 5], rng), _init("dense_b", [5], rng)]
    g = helper.make_graph(nodes, "tf2onnx", [helper.make_tensor_value_info("input_1:0", TensorProto.FLOAT, ["n", 16, 16, 3])],
                          [helper.make_tensor_value_info("probs", TensorProto.FLOAT, None)], inits)
    path = tmp_path / "tf2onnx.onnx"
    onnx.save(model_of(g, 13, producer_name="tf2onnx"), str(path))
    all_tensors_match(path, np.random.default_rng(1).random((2, 3, 16, 16), dtype=np.float32))


def test_mxnet_style_opset7_graph(tmp_path):
    """What MXNet's exporter wrote for zoo models: opset 7, initializers listed as inputs, BatchNorm with
    `spatial`, Pad with attribute pads, Flatten + Gemm, a ceil-mode-free pool after a padded conv."""
    from onnx import TensorProto, helper
    rng = np.random.default_rng(2)
    inits = [_init("w", [4, 3, 3, 3], rng), onnx.numpy_helper.from_array(np.ones(4, np.float32), "g"),
             _init("b", [4], rng), _init("m", [4], rng),
             onnx.numpy_helper.from_array(rng.random(4).astype(np.float32) + 0.5, "v"),
             _init("fw", [6, 4 * 4 * 4], rng), _init("fb", [6], rng)]
    nodes = [
        helper.make_node("Pad", ["data"], ["pad"], mode="constant", pads=[0, 0, 1, 1, 0, 0, 1, 1], value=0.0),
        helper.make_node("Conv", ["pad", "w"], ["conv"], kernel_shape=[3, 3], pads=[0, 0, 0, 0]),
        helper.make_node("BatchNormalization", ["conv", "g", "b", "m", "v"], ["bn"], epsilon=1e-5, momentum=0.9, spatial=1),
        helper.make_node("LeakyRelu", ["bn"], ["act"], alpha=0.25),
        helper.make_node("AveragePool", ["act"], ["pool"], kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0]),
        helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fw", "fb"], ["fc"], alpha=1.0, beta=1.0, transA=0, transB=1),
    ]
    inputs = [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 8, 8])] + [
        helper.make_tensor_value_info(t.name, TensorProto.FLOAT, list(t.dims)) for t in inits]
    g = helper.make_graph(nodes, "mxnet", inputs, [helper.make_tensor_value_info("fc", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(g, producer_name="mxnet", opset_imports=[helper.make_opsetid("", 7)])
    model.ir_version = 3
    path = tmp_path / "mxnet.onnx"
    onnx.save(model, str(path))
    all_tensors_match(path, np.random.default_rng(3).random((1, 3, 8, 8), dtype=np.float32))
