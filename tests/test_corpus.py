"""The corpus of real export patterns (tests/corpus.py): every tensor that depends on the image equals
ONNX Runtime's at two input sizes, and gradients reach the image through each model."""
import copy

import pytest
import torch

import corpus
from invtool import load_model
from oracle import all_tensors_match

NAMES = list(corpus.BUILDERS)
pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec:FutureWarning")  # from inside torch.export


@pytest.mark.parametrize("size", range(len(corpus.SIZES)), ids=[f"{n}xCx{h}x{w}" for n, h, w in corpus.SIZES])
@pytest.mark.parametrize("name", NAMES)
def test_corpus_model_matches_onnxruntime_at_every_tensor(corpus_model, name, size, record_property):
    """Float activations and the shape arithmetic on them (Shape, Range, ConstantOfShape, …) alike."""
    m = corpus_model(name)
    errors = all_tensors_match(m.path, m.inputs()[size], float_only=False)
    worst = max(errors, key=errors.get)
    record_property("worst_parity_error", errors[worst])
    print(f"{name} @ {corpus.SIZES[size]}: {len(errors)} tensors, worst {errors[worst]:.2e} at {worst}")


# op types each model must hold, so the corpus keeps exercising the patterns it was written for
PATTERNS = {
    "yolo_legacy": {"Split", "Sigmoid", "Resize", "Shape", "Range", "ConstantOfShape", "Expand", "MaxPool", "Softmax"},
    "yolo_dynamo": {"Split", "Sigmoid", "Resize", "Shape", "Range", "Expand", "MaxPool", "Softmax"},
    "mobilenetv3_legacy": {"HardSigmoid", "GlobalAveragePool", "Gemm"},
    "mobilenetv3_dynamo": {"HardSigmoid", "HardSwish", "ReduceMean", "Gemm"},
    "inception_dense_dynamo": {"Concat", "MaxPool", "AveragePool", "BatchNormalization"},
    "paddle_style": {"Constant", "Clip", "HardSigmoid", "ConvTranspose", "BatchNormalization", "Pad", "Resize", "Reshape"},
    "grey_ocr_legacy": {"Conv", "MaxPool", "ReduceMean", "Transpose", "MatMul", "LogSoftmax"},
    "grey_ocr_dynamo": {"Conv", "MaxPool", "ReduceMean", "Transpose", "LogSoftmax"},
}


@pytest.mark.parametrize("name", NAMES)
def test_corpus_model_holds_its_export_patterns(corpus_model, name):
    m = corpus_model(name)
    proto = m.proto
    ops = [n.op_type for n in proto.graph.node]
    assert PATTERNS[name] <= set(ops), f"missing {PATTERNS[name] - set(ops)}"
    (image,) = [i for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
    dims = image.type.tensor_type.shape.dim
    assert len(dims) == 4 and dims[1].dim_value == m.channels
    assert all(d.dim_param for d in (dims[0], dims[2], dims[3])), "N, H and W must be dynamic"
    if name == "paddle_style":
        assert ops.count("Constant") >= 100 and not proto.graph.initializer
        consts = {o for n in proto.graph.node if n.op_type == "Constant" for o in n.output}
        assert all(set(n.input[1:]) <= consts for n in proto.graph.node if n.op_type == "Clip")
    if name == "inception_dense_dynamo":
        assert ops.count("Concat") >= 7


def test_corpus_covers_both_torch_exporters_and_a_hand_built_graph(corpus_model):
    assert {corpus_model(n).exporter for n in NAMES} == {corpus.LEGACY, corpus.DYNAMO, corpus.PADDLE}
    assert {corpus_model(n).exporter for n in NAMES if corpus_model(n).channels == 1} == {corpus.LEGACY, corpus.DYNAMO}


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_the_image(corpus_model, name):
    """A random projection of the model's output (its deepest tap) has a finite, non-zero gradient with
    respect to the image, equal to central finite differences (float64) at two pixels: the one of largest
    gradient in the first and in the last plane (red and blue; the one plane of a grey model) (a pixel of small
    gradient drowns in the loss's rounding)."""
    m = corpus_model(name)
    tap = m.proto.graph.output[0].name
    module = copy.deepcopy(load_model(m.path, device="cpu").module((tap,))).double()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, m.channels, 64, 64, generator=g, dtype=torch.float64, requires_grad=True)
    out = module(x)[0]
    w = torch.randn(out.shape, generator=g, dtype=torch.float64)
    (out * w).sum().backward()
    grad = x.grad
    assert torch.isfinite(grad).all() and grad.abs().max() > 0

    def loss(z):
        with torch.no_grad():
            return float((module(z)[0] * w).sum())
    for channel in (0, m.channels - 1):
        v = torch.zeros_like(x)
        v[0, channel].view(-1)[grad[0, channel].abs().argmax()] = 1.0
        eps = 1e-4
        fd = (loss(x.detach() + eps * v) - loss(x.detach() - eps * v)) / (2 * eps)
        analytic = float((grad * v).sum())
        assert abs(fd - analytic) <= 1e-3 * abs(analytic), f"finite difference {fd:.6g} != gradient {analytic:.6g}"
