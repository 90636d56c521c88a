"""Caffe2 model-zoo exports (opset 9, initializers listed as inputs, weights made by ConstantOfShape):
the "light" copies of AlexNet, DenseNet121, Inception v1/v2, ResNet50, ShuffleNet, SqueezeNet, VGG19
and ZFNet512 that ship inside the onnx package. Every intermediate tensor must match ONNX Runtime."""
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import assert_close
from invtool import load_model

ZOO = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
MODELS = sorted(ZOO.glob("light_*.onnx"))


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_zoo_model_matches_onnxruntime_at_every_tensor(path):
    model = load_model(path, device="cpu")
    proto = onnx.load(str(path))
    names = [o for n in proto.graph.node for o in n.output if o]
    del proto.graph.output[:]
    proto.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names)
    x = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = dict(zip(names, sess.run(names, {model.input_name: x})))
    float_names = [n for n in names if ref[n].dtype == np.float32 and ref[n].ndim >= 2]
    with torch.no_grad():
        ours = model.features(torch.from_numpy(x), float_names)
    for n in float_names:
        assert_close(ours[n], ref[n])
    assert len(float_names) > 10


def test_zoo_models_are_there():
    assert len(MODELS) >= 9, f"expected the onnx package's light model zoo in {ZOO}"
