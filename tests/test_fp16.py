"""float16 models as onnxconverter-common writes them (`convert_float_to_float16`, with and without
keep_io_types): they load, every tensor matches ONNX Runtime on the same file, gradients reach the image, and
the compute dtype is float32 by default (weights upcast, casts rounding as ONNX Runtime's) or float16 on request."""
import json
import warnings

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from invtool import load_model
from invtool.cli import main
from invtool.errors import InvtoolError
from oracle import all_tensors_match, run_ort

float16 = pytest.importorskip("onnxconverter_common.float16", reason="onnxconverter-common is in the dev extra")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore:.*LeafSpec:FutureWarning")

# float16 keeps 11 significant bits: ONNX Runtime computes every op in half, invtool in float32 from the same
# half weights, so the two differ by a few half-precision roundings per layer
FP16_TOLERANCE = 2e-2


def to_fp16(path, out, keep_io_types: bool, final_only: bool = False):
    """`path` converted by onnxconverter-common; `final_only` keeps the last graph output alone (its
    keep_io_types mode casts every graph output back to float32, which a tap inside the graph breaks)."""
    proto = onnx.load(str(path))
    if final_only:
        last = proto.graph.output[-1]
        del proto.graph.output[:]
        proto.graph.output.append(last)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx.save(float16.convert_float_to_float16(proto, keep_io_types=keep_io_types), str(out))
    return out


def test_resnet18_in_float16_matches_onnxruntime_at_every_tap(resnet18_onnx, tmp_path):
    path = to_fp16(resnet18_onnx[0], tmp_path / "r18-fp16.onnx", keep_io_types=False)
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    model = load_model(path, device="cpu")
    taps = [o.name for o in onnx.load(str(path)).graph.output]
    ref = run_ort(onnx.load(str(path)), {model.input_name: x.astype(np.float16)}, taps)
    with torch.no_grad():
        ours = model.features(torch.from_numpy(x), taps)
    for name, r in zip(taps, ref):
        assert ours[name].dtype == torch.float32 and r.dtype == np.float16
        err = np.abs(ours[name].numpy() - r.astype(np.float32)).max() / max(1.0, float(np.abs(r).max()))
        assert err <= FP16_TOLERANCE, f"{name}: {err:.3g}"
    assert model.card()["stored_dtype"] == "float16" and model.card()["compute_dtype"] == "float32"


@pytest.mark.parametrize("name", ["paddle_style", "mobilenetv3_legacy", "grey_ocr_dynamo"])
def test_float16_with_float32_io_matches_onnxruntime_at_every_tensor(corpus_model, tmp_path, name):
    """keep_io_types=True: Casts float32 -> float16 after the input and back before the output, the form that
    crashed with `expected scalar type Half but found Float` (a PP-OCR detector). (The YOLO corpus models are left
    out: the converter writes them with Cast outputs of the wrong type, which ONNX Runtime itself refuses.)"""
    m = corpus_model(name)
    path = to_fp16(m.path, tmp_path / f"{name}-fp16.onnx", keep_io_types=True, final_only=True)
    assert any(n.op_type == "Cast" for n in onnx.load(str(path)).graph.node)
    errors = all_tensors_match(path, m.inputs()[0], atol_scale=FP16_TOLERANCE)
    assert max(errors.values()) <= FP16_TOLERANCE


def test_gradients_reach_the_image_through_a_float16_model(resnet18_onnx, tmp_path):
    path = to_fp16(resnet18_onnx[0], tmp_path / "r18-fp16.onnx", keep_io_types=True, final_only=True)
    model = load_model(path, device="cpu")
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    model.features(x, ["res4b"])["res4b"].square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().max() > 0


def test_half_compute_on_request(resnet18_onnx, tmp_path):
    """--dtype float16 (meant for CUDA; torch computes half on the CPU too, slowly): weights and activations in
    half, features handed back in float32, values as ONNX Runtime's half computation."""
    path = to_fp16(resnet18_onnx[0], tmp_path / "r18-fp16.onnx", keep_io_types=False)
    model = load_model(path, device="cpu", dtype="float16")
    assert {w.dtype for w in model._weights.values() if w.is_floating_point()} == {torch.float16}
    x = np.random.default_rng(1).random((1, 3, 48, 48), dtype=np.float32)
    tap = onnx.load(str(path)).graph.output[-1].name
    (ref,) = run_ort(onnx.load(str(path)), {model.input_name: x.astype(np.float16)}, [tap])
    with torch.no_grad():
        got = model.features(torch.from_numpy(x), [tap])[tap]
    assert got.dtype == torch.float32
    assert np.abs(got.numpy() - ref).max() / max(1.0, float(np.abs(ref).max())) <= FP16_TOLERANCE
    with pytest.raises(InvtoolError, match="unknown compute dtype 'float8'"):
        load_model(path, dtype="float8")


def test_the_record_names_both_dtypes(resnet18_onnx, tmp_path):
    path = to_fp16(resnet18_onnx[0], tmp_path / "r18-fp16.onnx", keep_io_types=False)
    src = tmp_path / "src.png"
    from invtool.image import write_png
    write_png(src, torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    for dtype in (None, "float16"):
        out = tmp_path / f"tex-{dtype}.png"
        args = ["texture", str(src), "--model", str(path), "-o", str(out), "--steps", "2", "--optimizer", "adam",
                "--layers", "res2b,res3b", "--quiet"] + (["--dtype", dtype] if dtype else [])
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        card = json.loads(out.with_suffix(".json").read_text())["model"]
        assert card["stored_dtype"] == "float16" and card["compute_dtype"] == (dtype or "float32")
