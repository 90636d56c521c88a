"""`invtool texture` end to end on the real VGG16 at tiny sizes: the API, the CLI, the record, bad input."""
import json
import re
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import ROOT, VGG16_ONNX
from invtool import InvtoolError, load_model
from invtool.cli import main
from invtool.image import read_image
from invtool.texture import synthesize_texture, texture_sweep

BRICK = ROOT / "examples" / "textures" / "brick.png"
IHC = ROOT / "examples" / "textures" / "ihc.png"
FAST = dict(layers=["conv1_1", "pool1"], progress=False)
RECORD_FIELDS = {"command", "created", "argv", "options", "model", "layers", "seed", "versions", "device", "steps",
                 "wall_time", "steps_per_sec", "sizes", "scale_starts", "interrupted", "stopped_early",
                 "stop_reason", "final_loss", "metrics", "notes", "history", "output", "layer_weights"}


@pytest.fixture(scope="module")
def model(vgg16_model):
    return vgg16_model


def gatys_gram_loss(model, source, image, layers):
    """Gatys et al.'s texture loss by hand, 1/L on each layer: Σ (G - A)² / (4 C²) with G, A the mean outer
    products F Fᵀ / M of the image's and the source's channel vectors, each over its own pixel count M
    (with equal M, eq. 4's Σ (F Fᵀ - S Sᵀ)² / (4 C² M²))."""
    with torch.no_grad():
        fx, fs = model.features(image, layers), model.features(source, layers)
    total = 0.0
    for name in layers:
        f, s = fx[name][0].flatten(1), fs[name][0].flatten(1)
        g, a = f @ f.T / f.shape[1], s @ s.T / s.shape[1]
        total += float((g - a).square().sum()) / (4 * f.shape[0] ** 2) / len(layers)
    return total


@pytest.mark.parametrize("loss", ["gram", "sorted", "swd"])
def test_each_loss_decreases(model, loss):
    run = synthesize_texture(IHC, model=model, size=32, steps=12, loss=loss, **FAST)
    history = run.record["history"]["loss"]
    assert min(history) < 0.5 * history[0]
    # the record's evaluator is Gatys' Gram loss of the returned image, whatever loss was optimised
    source = read_image(IHC, 32)[0]
    assert run.record["metrics"]["gram_loss"] == pytest.approx(
        gatys_gram_loss(model, source, run.image, FAST["layers"]), rel=1e-3)


def test_out_size_honoured_and_other_pixel_counts(model, tmp_path):
    source = read_image(IHC, 32)[0]
    for loss in ("gram", "sorted", "swd"):    # statistics of a 32x32 source matched on a 48x24 output
        run = synthesize_texture(IHC, model=model, size=32, out_size=(24, 48), steps=3, loss=loss, **FAST)
        assert run.image.shape == (1, 3, 24, 48) and run.record["sizes"][-1] == [24, 48]
        assert run.record["metrics"]["gram_loss"] == pytest.approx(   # each Gram over its own pixel count
            gatys_gram_loss(model, source, run.image, FAST["layers"]), rel=1e-3)
    run.save(tmp_path / "t.png")
    written, _ = read_image(tmp_path / "t.png")
    assert written.shape == (1, 3, 24, 48)
    assert torch.allclose(written, run.image, atol=0.5 / 255 + 1e-6)   # the image itself, to 8 bits


def test_grey_source_gives_grey_result(model):
    """brick.png is grey; its Gram statistics hardly pin colour, and coloured starting noise came out
    blue-and-yellow. A grey source now gives a grey result, and the record says why."""
    run = synthesize_texture(BRICK, model=model, size=32, steps=8, **FAST)
    x = run.image[0]
    assert (x[0] - x[1]).abs().max() <= 1 / 255 and (x[1] - x[2]).abs().max() <= 1 / 255
    assert x.std() > 0.02                                      # a texture, not a flat grey
    assert any(n.startswith("grey source: grey result") for n in run.record["notes"])


def test_pool_applies_to_a_loaded_model(model):
    """pool="avg" with a loaded max-pooling model runs with average pooling, as a path loaded with it
    does (it was ignored for loaded models, so the record's pool was not what ran)."""
    kw = dict(size=32, steps=2, layers=["conv1_1", "pool1", "pool2"], progress=False, pool="avg")
    loaded = synthesize_texture(IHC, model=model, **kw)
    from_path = synthesize_texture(IHC, model=VGG16_ONNX, device="cpu", **kw)
    assert torch.equal(loaded.image, from_path.image)
    assert loaded.record["metrics"] == from_path.record["metrics"]


def test_layer_weightings(model):
    from invtool.texture import layer_weighting

    layers = dict.fromkeys(["conv1_1", "pool1", "pool2"], 1.0)
    assert layer_weighting(model, layers, "uniform") == pytest.approx([1 / 3] * 3)
    assert layer_weighting(model, layers, "increasing") == pytest.approx([1 / 6, 2 / 6, 3 / 6])
    assert layer_weighting(model, layers, "decreasing") == pytest.approx([3 / 6, 2 / 6, 1 / 6])
    # channels 64, 64, 128 -> 1/64, 1/64, 1/128 normalised
    assert layer_weighting(model, layers, "inverse-channels") == pytest.approx([0.4, 0.4, 0.2])
    # weights with the layers (objectives.layer_weights' rule), divided by their sum like the weightings
    assert layer_weighting(model, {"conv1_1": 1, "pool1": 2, "pool2": 1}) == pytest.approx([0.25, 0.5, 0.25])
    with pytest.raises(InvtoolError, match="give one or the other"):
        layer_weighting(model, {"conv1_1": 1, "pool1": 2}, "increasing")
    with pytest.raises(InvtoolError, match="did you mean: increasing"):
        layer_weighting(model, layers, "increasng")
    with pytest.raises(InvtoolError, match="give weights with the layers"):
        layer_weighting(model, layers, [1, 2, 3])


def test_layers_take_weights_by_the_shared_rule(model):
    run = synthesize_texture(IHC, model=model, size=24, steps=1, layers="conv1_1:3,pool1", progress=False)
    assert run.record["layers"] == ["conv1_1", "pool1"] and run.record["layer_weights"] == [0.75, 0.25]
    with pytest.raises(InvtoolError, match="listed twice"):
        synthesize_texture(IHC, model=model, size=24, steps=1, layers="conv1_1,conv1_1:2", progress=False)


def test_sweep_contact_sheet(model, tmp_path):
    run = texture_sweep(IHC, model=model, size=32, steps=2, layer_sets=[["conv1_1"], ["conv1_1", "pool1"]],
                        weightings=["uniform", "increasing"], progress=False)
    labels = ["conv1_1 uniform", "conv1_1 increasing", "conv1_1,pool1 uniform", "conv1_1,pool1 increasing"]
    assert [r["label"] for r in run.record["runs"]] == labels
    # source + 4 results of 32x32 in 4 columns: 6 px margins, a 22 px caption under each; the source first
    assert run.image.shape == (1, 3, 6 + 2 * (32 + 22 + 6), 6 + 4 * (32 + 6))
    assert torch.allclose(run.image[..., 6:38, 6:38], run.inputs["source"], atol=0.5 / 255 + 1e-6)
    paths = run.save(tmp_path / "sweep.png", report=True)
    assert [p.name for p in paths] == ["sweep.png", "sweep.json", "sweep.html"]
    assert torch.allclose(read_image(paths[0])[0], run.image, atol=1e-6)    # the sheet is 8-bit already
    assert [r["label"] for r in json.loads(paths[1].read_text())["runs"]] == labels
    assert paths[2].read_text().count("data:image/png;base64,") == 3      # source, sheet, loss curves


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_cli_writes_image_record_and_report(tmp_path):
    if not VGG16_ONNX.is_file():
        pytest.skip("models/vgg16.onnx is missing")
    out = tmp_path / "new" / "dir" / "t.png"    # the folder does not exist yet
    res = cli("texture", BRICK, "-o", out, "--model", VGG16_ONNX, "--size", 32, "--steps", 4, "--layers",
              "conv1_1,pool1", "--report", "--save-every", 2, "--seed", 7, "-q")
    assert res.exit_code == 0, res.output
    assert cv2.imread(str(out)).shape == (32, 32, 3)
    rec = json.loads(out.with_suffix(".json").read_text())
    assert RECORD_FIELDS <= set(rec), RECORD_FIELDS - set(rec)
    assert rec["seed"] == 7 and rec["steps"] == 4 and len(rec["history"]["loss"]) == 4
    assert rec["model"]["sha256"] == load_model(VGG16_ONNX).sha256 and rec["layers"] == ["conv1_1", "pool1"]
    assert rec["versions"]["torch"] == torch.__version__.split("+")[0] or rec["versions"]["torch"] == torch.__version__
    assert any("grayscale" in n for n in rec["notes"])        # brick.png is grayscale
    page = out.with_suffix(".html").read_text()
    assert page.count("data:image/png;base64,") == 1 + 1 + 2 + 1   # source, result, 2 snapshots, loss curve
    assert not list(out.parent.glob(".*tmp"))                 # no temporary files left


def test_cli_sweep(tmp_path):
    if not VGG16_ONNX.is_file():
        pytest.skip("models/vgg16.onnx is missing")
    out = tmp_path / "sweep.png"
    res = cli("texture", IHC, "-o", out, "--model", VGG16_ONNX, "--size", 32, "--steps", 2, "-q",
              "--sweep-layers", "conv1_1;conv1_1,pool1", "--sweep-weights", "uniform;increasing")
    assert res.exit_code == 0, res.output
    rec = json.loads(out.with_suffix(".json").read_text())
    assert [r["layer_weights"] for r in rec["runs"]] == [[1.0], [1.0], [0.5, 0.5], [1 / 3, 2 / 3]]
    assert cv2.imread(str(out)).shape == (6 + 2 * (32 + 22 + 6), 6 + 4 * (32 + 6), 3)   # 5 cells in 4 columns


@pytest.mark.parametrize("args, message", [
    (["--layers", "conv1_1,pool9"], "unknown layer 'pool9' (did you mean: pool5"),
    (["--size", 8, "--layers", "conv1_1,pool4"], "use at least 16x16"),
    (["--loss", "gram", "--layer-weights", "1,2,3"], "give weights with the layers: conv1_1:1,pool1:0.5"),
    (["--layers", "conv1_1:2,pool1", "--layer-weights", "increasing"], "give one or the other"),
    (["--out-size", "200000x100000"], "more than invtool can hold in one image"),
])
def test_cli_bad_options(tmp_path, args, message):
    if not VGG16_ONNX.is_file():
        pytest.skip("models/vgg16.onnx is missing")
    out = tmp_path / "t.png"
    res = cli("texture", BRICK, "-o", out, "--model", VGG16_ONNX, "--steps", 1, "-q", *args)
    assert res.exit_code == 1 and res.output.startswith("error: ") and message in res.output, res.output
    assert "Traceback" not in res.output and not out.exists()


def test_cli_bad_files(tmp_path):
    out = tmp_path / "t.png"
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    assert "not an image OpenCV can read" in cli("texture", junk, "-o", out).output
    assert "no such file" in cli("texture", tmp_path / "missing.png", "-o", out).output
    same = cli("texture", BRICK, "-o", BRICK)
    assert same.exit_code == 1 and "is the input image" in same.output
    missing_model = cli("texture", BRICK, "-o", out, "--model", tmp_path / "models" / "vgg16.onnx")
    assert missing_model.exit_code == 1 and "make export-models" in missing_model.output


def test_read_image_conversions(tmp_path):
    rgb = (np.random.default_rng(0).random((5, 7, 3)) * 255).astype(np.uint8)
    cases = {
        "gray.png": (rgb[..., 0], "grayscale"),
        "rgba.png": (np.dstack([rgb, np.full((5, 7), 128, np.uint8)]), "transparency"),
        "deep.png": (rgb.astype(np.uint16) * 257, "16-bit"),
    }
    for name, (data, note) in cases.items():
        cv2.imwrite(str(tmp_path / name), data)
        x, notes = read_image(tmp_path / name)
        assert x.shape == (1, 3, 5, 7) and 0 <= x.min() and x.max() <= 1
        assert any(note in n for n in notes), (name, notes)
    x16, _ = read_image(tmp_path / "deep.png")
    x8, _ = read_image(tmp_path / "gray.png")
    assert torch.allclose(x16[0, 2], torch.from_numpy(rgb[..., 0] / 255.0).float(), atol=1e-6)   # BGR -> RGB
    assert torch.allclose(x8, torch.from_numpy(rgb[..., 0] / 255.0).float().expand(1, 3, 5, 7), atol=1e-6)   # grey
    # a palette PNG, written by matplotlib's PIL
    from PIL import Image

    Image.fromarray(rgb).convert("P").save(tmp_path / "pal.png")
    x, notes = read_image(tmp_path / "pal.png")
    assert x.shape == (1, 3, 5, 7) and any("palette" in n for n in notes)


def test_ctrl_c_leaves_a_valid_image_and_record(tmp_path):
    if not VGG16_ONNX.is_file():
        pytest.skip("models/vgg16.onnx is missing")
    out = tmp_path / "t.png"
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "invtool", "texture", str(BRICK), "-o", str(out), "--model",
                                 str(VGG16_ONNX), "--size", "32", "--steps", "100000", "--layers", "conv1_1,pool1"],
                                stderr=err, stdout=subprocess.PIPE, cwd=tmp_path)
        deadline = time.time() + 120
        while max(map(int, re.findall(r"\| *(\d+)/100000", log.read_text())), default=0) < 3:
            assert proc.poll() is None and time.time() < deadline, log.read_text()
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130, log.read_text()
    assert cv2.imread(str(out)).shape == (32, 32, 3)
    rec = json.loads(out.with_suffix(".json").read_text())
    assert rec["interrupted"] and 3 <= rec["steps"] < 100000 and len(rec["history"]["loss"]) == rec["steps"]
