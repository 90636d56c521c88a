"""bfloat16 compute (`--dtype bfloat16`, and what `auto` picks on a CPU with bfloat16 instructions): every tap
within bfloat16's rounding of ONNX Runtime's float32, gradients along float32's, `auto` chosen by the CPU's
instructions, and the dtype carried into records, atlas cache keys and ONNX Runtime's feed."""
import hashlib
import json
from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from conftest import ort_outputs
from invtool import InvtoolError, load_model
from invtool.atlas import build_atlas
from invtool.atlas.units import CACHE_VERSION, Job
from invtool.cli import main
from invtool.model import native_bfloat16, resolve_dtype
from invtool.visualization import visualize

# bfloat16 keeps 8 significant bits (a rounding is up to 0.4%); a few roundings a layer, over 13 layers
BF16_TOLERANCE = 3e-2


def test_every_tap_is_onnxruntimes_float32_to_bfloat16_rounding(vgg16_conv_onnx):
    path = vgg16_conv_onnx[0]
    x = np.random.default_rng(0).random((2, 3, 48, 64), dtype=np.float32)
    ref = ort_outputs(path, x)
    model = load_model(path, device="cpu", dtype="bfloat16")
    assert {w.dtype for w in model._weights.values() if w.is_floating_point()} == {torch.bfloat16}
    with torch.no_grad():
        ours = model.features(torch.from_numpy(x), list(ref))
    errors = {n: float(np.abs(ours[n].numpy() - ref[n]).max() / max(1.0, np.abs(ref[n]).max())) for n in ref}
    assert all(ours[n].dtype == torch.float32 for n in ref)   # losses still in float32
    assert max(errors.values()) <= BF16_TOLERANCE, errors
    assert max(errors.values()) > 1e-4, errors   # computed in bfloat16 indeed: float32 would agree to ~1e-6


def test_the_image_gradient_points_where_float32s_does(vgg16_conv_onnx):
    path = vgg16_conv_onnx[0]
    x = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    grads = []
    for dtype in ("float32", "bfloat16"):
        xi = x.clone().requires_grad_()
        feats = load_model(path, device="cpu", dtype=dtype).features(xi, ["conv3_1"])["conv3_1"]
        (grad,) = torch.autograd.grad(feats[:, :4].sum(), xi)
        grads.append(grad.flatten())
    assert grads[1].dtype == torch.float32
    cosine = float(torch.nn.functional.cosine_similarity(grads[0], grads[1], 0))
    assert 0.98 < cosine < 1.0


def test_the_network_input_is_preprocessed_in_float32_then_rounded(vgg16_conv_onnx):
    """Preprocessing runs in float32 (Caffe's 0-255 values would lose their fractions); ONNX Runtime is fed
    float32 from a bfloat16 model."""
    path = vgg16_conv_onnx[0]
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    full, half = load_model(path, device="cpu", preprocess="caffe"), load_model(path, device="cpu", preprocess="caffe",
                                                                               dtype="bfloat16")
    assert torch.equal(half.network_input(x, torch.float32), full.network_input(x))
    assert half.network_input(x).dtype == torch.bfloat16
    assert torch.equal(half.network_input(x), full.network_input(x).to(torch.bfloat16))


@pytest.mark.parametrize("caps, expected", [({"avx512_bf16": True, "amx_bf16": False}, torch.bfloat16),
                                            ({"avx512_bf16": False, "amx_bf16": True}, torch.bfloat16),
                                            ({"avx512_bf16": False, "amx_bf16": False}, torch.float32)])
def test_auto_is_bfloat16_on_cpus_with_its_instructions_only(monkeypatch, caps, expected):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps)
    assert resolve_dtype("auto", torch.device("cpu")) == expected
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32   # every other command's default
    assert not native_bfloat16(torch.device("cuda", 0))   # CUDA keeps float32 (TF32), torch's default


@pytest.mark.parametrize("native", [True, False])
def test_visualize_computes_in_what_auto_picks_and_records_it(vgg16_conv_onnx, monkeypatch, native):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": native})
    run = visualize("conv1_2", "0-1", model=str(vgg16_conv_onnx[0]), size=32, steps=2, device="cpu", progress=False)
    assert run.record["model"]["compute_dtype"] == ("bfloat16" if native else "float32")
    assert run.record["options"]["dtype"] == "auto"
    assert any(n.startswith("computed in bfloat16: this CPU has") for n in run.record["notes"]) == native
    assert torch.isfinite(run.tiles).all() and run.tiles.dtype == torch.float32
    final, start = run.record["metrics"]["objective_final"], run.record["metrics"]["objective_start"]
    assert all(f > s for f, s in zip(final, start))   # each tile's channel went up


def test_cli_dtype_bfloat16_and_a_bad_dtype(vgg16_conv_onnx, tmp_path):
    out = tmp_path / "v.png"
    args = ["visualize", "--model", str(vgg16_conv_onnx[0]), "--layer", "conv1_2", "--channels", "0", "--size", "32",
            "--steps", "1", "--device", "cpu", "-q", "-o", str(out)]
    r = CliRunner().invoke(main, args + ["--dtype", "bfloat16"])
    assert r.exit_code == 0, r.output
    assert json.loads(out.with_suffix(".json").read_text())["model"]["compute_dtype"] == "bfloat16"
    bad = CliRunner().invoke(main, args + ["--dtype", "bf8"])
    assert bad.exit_code == 2 and "'bf8' is not one of" in bad.output


def test_atlas_keys_of_float32_jobs_are_as_before_and_bfloat16_ones_differ():
    """The key by hand, as it was before jobs had a dtype: float32 atlases keep their caches."""
    job = Job("conv1_1", "conv1_1_pre", (0, 1), 32, 2, 0, "abc", "null", "max", memory=1 << 30)
    fields = {"tensor": "conv1_1_pre", "channels": [0, 1], "size": 32, "steps": 2, "seed": 0, "model_sha256": "abc",
              "preprocess": "null", "pool": "max"}
    assert job.key == hashlib.sha256(json.dumps([CACHE_VERSION, fields], sort_keys=True).encode()).hexdigest()
    assert replace(job, dtype="bfloat16").key != job.key


def quantised_net(path):
    """image -> QuantizeLinear -> DequantizeLinear -> Conv -> Relu: a graph quantising its activations, with 0-d
    tensors among its layers (the scale and zero point of a DynamicQuantizeLinear of the image)."""
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    step = numpy_helper.from_array(np.array(1 / 255, np.float32), "step")
    nodes = [helper.make_node("DynamicQuantizeLinear", ["image"], ["dq8", "scale", "zp"]),   # read by nothing
             helper.make_node("QuantizeLinear", ["image", "step"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "step"], ["dq"]),
             helper.make_node("Conv", ["dq", "w"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["relu"])]
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 3, None, None])
    graph = helper.make_graph(nodes, "q", [image], [helper.make_tensor_value_info("relu", TensorProto.FLOAT, None)], [w, step])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_a_graph_quantising_its_activations_computes_in_float32(tmp_path, monkeypatch):
    """Its integer arithmetic is ONNX Runtime's, emulated in float32: auto keeps float32, a 16-bit dtype is refused."""
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": True})
    path = quantised_net(tmp_path / "q.onnx")
    assert load_model(path, device="cpu", dtype="auto").dtype == torch.float32
    with pytest.raises(InvtoolError, match=r"quantises its activations \(DequantizeLinear, DynamicQuantizeLinear, QuantizeLinear\)"
                                           r", which compute .* in float32: drop --dtype bfloat16"):
        load_model(path, device="cpu", dtype="bfloat16")
    run = visualize("relu", "0-1", model=str(path), size=16, steps=2, device="cpu", progress=False)
    assert run.record["model"]["compute_dtype"] == "float32"
    assert not any("bfloat16" in n for n in run.record["notes"])
    with pytest.raises(InvtoolError, match=r"layer scale has no channels \(its output is \[\]\)"):
        visualize("scale", "0", model=str(path), size=16, steps=1, device="cpu", progress=False)


@pytest.mark.parametrize("native", [True, False])
def test_the_atlas_computes_in_what_auto_picks_and_says_so(vgg16_conv_onnx, monkeypatch, tmp_path, native):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": native})
    rec = build_atlas(str(vgg16_conv_onnx[0]), tmp_path / "atlas", layers="conv1_2", channels="0", size=16, steps=1,
                      device="cpu", progress=False)
    assert rec["options"]["dtype"] == ("bfloat16" if native else "float32")
    assert json.loads((tmp_path / "atlas" / "atlas.json").read_text())["options"]["dtype"] == rec["options"]["dtype"]
