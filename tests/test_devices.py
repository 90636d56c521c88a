"""Device placement: every op case of test_ops.py, torch-exported nets and the corpus run with their
weights and input on CUDA, as FeatureModel places them.

"fake-cuda" needs no GPU (tests/devices.py): any CPU/CUDA mix, or a read of a CUDA tensor's values,
raises; the output shapes are compared with ONNX Runtime's. "cuda" runs for real when a GPU is there
and compares the values with ONNX Runtime's (on the CPU). Every command runs end to end on a real GPU too:
a whole run reads values (the loss history), which fake tensors cannot.
"""
import json

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

import corpus
from click.testing import CliRunner
from conftest import ROOT
from devices import FAKE_CUDA, NEEDS_CUDA, fake_cuda, run_on_fake_cuda, run_placed
from invtool.cli import main
from invtool.image import read_image
from invtool.model import resolve_device
from invtool.onnx.graph import build
from invtool.optimize import _on_device
from invtool.param import fourier, pixel, pyramid
from oracle import assert_close, make_model, rand, run_ort
from test_ops import CASES, X4, _ManyOps, i64

DEVICES = ["fake-cuda", pytest.param("cuda", marks=NEEDS_CUDA)]


def check_on(device: str, model: onnx.ModelProto, inputs, outputs=None, atol: float = 1e-4):
    """Run `model` on `device` and check it against ONNX Runtime: shapes on fake CUDA, values on CUDA."""
    outputs = list(outputs or [o.name for o in model.graph.output])
    ref = run_ort(model, inputs, outputs)
    if device == "fake-cuda":
        assert run_on_fake_cuda(model, inputs, outputs) == [r.shape for r in ref]
        return
    got = run_placed(model, inputs, outputs, torch.device("cuda"))
    for name, g, r in zip(outputs, got, ref):
        assert_close(g.cpu().numpy(), r, atol, what=f"{name}: ")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op, opset, inputs, outputs, attrs, data, init, atol", CASES)
def test_op_case_runs_on_the_device(device, op, opset, inputs, outputs, attrs, data, init, atol):
    node = helper.make_node(op, inputs, outputs, name=f"{op.lower()}_node", **attrs)
    outputs = [o for o in outputs if o]
    check_on(device, make_model([node], data, outputs, opset, init), data, outputs, atol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("opset", [10, 11, 13, 17])
def test_torch_exported_net_runs_on_the_device(device, opset, tmp_path):
    path = tmp_path / "many.onnx"
    torch.onnx.export(_ManyOps(align_corners=opset >= 11).eval(), (torch.rand(2, 3, 17, 19),), str(path),
                      dynamo=False, opset_version=opset, input_names=["image"], output_names=["probs", "features"])
    check_on(device, onnx.load(str(path)), {"image": rand(2, 3, 17, 19)})


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("net", ["resnet18_onnx", "vgg16_conv_onnx"])
def test_reference_architectures_run_on_the_device(device, net, request):
    path, _ = request.getfixturevalue(net)
    check_on(device, onnx.load(str(path)), {"image": rand(1, 3, 32, 40)})


def test_shape_arithmetic_stays_on_the_host_and_weights_on_the_device():
    """Reshape's shape, computed from Shape at run time or stored, stays a CPU value after Module.to();
    the float weights are on the device; the result comes out on the device."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["flat"]),
             helper.make_node("Mul", ["flat", "w"], ["y"])]
    init = {"zero": np.array(0, dtype=np.int64), "axes0": i64(0), "minus1": i64(-1), "w": rand(224, seed=1)}
    model = make_model(nodes, {"x": X4}, ["y"], 13, init)
    with fake_cuda():
        weights = {k: torch.from_numpy(v).to(FAKE_CUDA) for k, v in init.items()}
        module = build(model, ["y"], weights=weights).to(FAKE_CUDA)
        host = {k: v.device for k, v in vars(module).items() if isinstance(v, torch.Tensor)}
        assert host and all(d.type == "cpu" for d in host.values())
        assert all(b.device == FAKE_CUDA for b in module.buffers())
        y, = module(torch.from_numpy(X4).to(FAKE_CUDA))
        assert y.device == FAKE_CUDA and tuple(y.shape) == (2, 224)


def test_fake_cuda_catches_a_device_mix_and_a_device_read():
    """The harness is not vacuous: what would fail or sync on a GPU raises here."""
    with fake_cuda():
        x = torch.zeros(2, 3, device=FAKE_CUDA)
        with pytest.raises(Exception, match="device"):
            x + torch.ones(2, 3)
        with pytest.raises(Exception, match="DataDependent|data-dependent|_local_scalar_dense"):
            x.sum(1).tolist()   # values computed on the device
        assert torch.tensor(x.shape).tolist() == [2, 3]  # a host shape keeps its values


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(corpus.BUILDERS))
def test_corpus_model_runs_on_the_device(device, name, corpus_model):
    m = corpus_model(name)
    proto = m.proto
    weights = {t.name for t in proto.graph.initializer}
    image = next(i.name for i in proto.graph.input if i.name not in weights)
    for x in m.inputs():
        check_on(device, proto, {image: x}, atol=1e-3)


@pytest.mark.parametrize("device", ["meta", pytest.param("cuda", marks=NEEDS_CUDA)])
@pytest.mark.parametrize("make", [pixel, lambda x: pyramid(x, 3), fourier], ids=["pixel", "pyramid", "fourier"])
def test_a_param_built_on_the_cpu_is_rebuilt_on_the_model_s_device(device, make):
    """`optimize` rebuilds a Param made elsewhere where the model is (invert built its pyramid on the CPU, and on a
    GPU its prior terms stayed there): the same kind, every tensor on the device, the same image. Without a GPU,
    on torch's "meta" device (shapes only; fake CUDA cannot interpolate without a CUDA build)."""
    image = torch.from_numpy(rand(1, 3, 32, 48)) * 0.8 + 0.1
    param = make(image)
    target = resolve_device(device) if device == "cuda" else torch.device(device)
    moved = _on_device(param, target)
    assert len(moved.params) == len(param.params) and all(p.device == target for p in moved.params)
    shown = moved.image_fn()
    assert shown.device == target and shown.shape == image.shape
    if device == "cuda":
        assert torch.allclose(shown.cpu(), param.image_fn().detach(), atol=1e-4)


@NEEDS_CUDA
def test_a_bare_cuda_is_the_current_gpu_as_its_tensors_say():
    assert resolve_device("cuda") == torch.zeros(1, device="cuda").device == resolve_device(None)


@NEEDS_CUDA
@pytest.mark.parametrize("args", [
    ["texture", "examples/textures/brick.png", "--size", "48", "--out-size", "128", "--scales", "1", "--steps", "4",
     "--optimizer", "adam", "--memory", "40M"],   # 4 tiles
    ["texture", "examples/textures/brick.png", "--size", "48", "--out-size", "64", "--steps", "4", "--tile",
     "--optimizer", "adam"],
    ["style", "examples/images/chelsea.png", "examples/textures/brick.png", "--size", "48", "--steps", "3",
     "--optimizer", "adam"],
    ["invert", "examples/images/chelsea.png", "--size", "48", "--steps", "4"],
    ["invert", "examples/images/chelsea.png", "--size", "48", "--steps", "8", "--restarts", "2"],
    ["visualize", "--layer", "conv2_1", "--channels", "0-1", "--size", "48", "--steps", "4"],
], ids=["texture-tiled", "texture-tile", "style", "invert", "invert-restarts", "visualize"])
def test_every_command_runs_on_the_gpu(args, vgg16_conv_onnx, tmp_path):
    """End to end on CUDA, as a user with a GPU gets by default: the run finishes, says it ran there, and its
    loss went down (the invert case failed on a GPU before its pyramid was built there). Texture and style take
    Adam: this random-init net's Gram losses are about 1e-7, too flat for a few L-BFGS steps to move (seen on
    an H200: three steps at one value)."""
    out = tmp_path / "out.png"
    args = [a if not a.startswith("examples/") else str(ROOT / a) for a in args]
    r = CliRunner().invoke(main, [*args, "--model", str(vgg16_conv_onnx[0]), "--device", "cuda", "-q", "-o", str(out)])
    assert r.exit_code == 0, r.output
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["device"] == "cuda:0"
    losses = record["history"]["loss"]
    assert np.isfinite(losses).all() and min(losses) < losses[0]
    assert torch.isfinite(read_image(out)[0]).all()
    if "--memory" in args:   # the budget forced tiles, and the record has the GPU's measured peak
        assert record["memory"][-1]["tiled"] and record["memory"][-1]["peak"] > 0
