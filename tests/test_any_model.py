"""Every command runs with its defaults on models that are not VGG16: ResNet18 and every corpus model. The
layers each run takes are the model's own (`geometry.default_layers`), written in the record and notes."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import corpus
from conftest import ROOT
from invtool import load_model
from invtool.cli import main
from invtool.geometry import alignment, default_layers
from invtool.image import read_image
from invtool.metrics import seam_ratios
from invtool.optimize import optimize
from invtool.start import initial_image
from invtool.texture import synthesize_texture, texture_objective

BRICK = ROOT / "examples" / "textures" / "brick.png"
IHC = ROOT / "examples" / "textures" / "ihc.png"
PHOTO = ROOT / "examples" / "images" / "chelsea.png"
RESNET18 = ROOT / "models" / "resnet18.onnx"
MODELS = ["resnet18", *corpus.BUILDERS]

# tiny runs: what is checked is that each command finds its layers and runs on the model, not quality
COMMANDS = {
    "texture": (["texture", str(BRICK), "--size", "64", "--steps", "4"], "texture"),
    "style": (["style", str(PHOTO), str(BRICK), "--size", "64", "--steps", "3", "--init", "noise"], "style"),
    "invert": (["invert", str(PHOTO), "--size", "64", "--steps", "3"], "invert"),
}


@pytest.fixture(scope="module")
def model_path(corpus_model):
    def get(name):
        if name == "resnet18":
            if not RESNET18.is_file():
                pytest.skip("models/resnet18.onnx is missing: run `make export-models`")
            return RESNET18
        return corpus_model(name).path
    return get


def _run(args, out):
    result = CliRunner().invoke(main, [*args, "-q", "-o", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads(out.with_suffix(".json").read_text())


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("name", MODELS)
def test_command_runs_with_the_model_s_default_layers(name, command, model_path, tmp_path):
    path = model_path(name)
    args, role = COMMANDS[command]
    out = tmp_path / f"{command}.png"
    record = _run([*args, "--model", str(path)], out)
    model = load_model(path, device="cpu")
    expected = default_layers(model, role)
    if command == "style":
        expected = list(dict.fromkeys(default_layers(model, "content") + expected))
    assert record["layers"] == expected
    assert any("(none given)" in n for n in record["notes"])
    assert max(read_image(out)[0].shape[-2:]) == 64   # every command here sizes its output's longer side to 64
    losses = record["history"]["loss"]
    assert np.isfinite(losses).all() and min(losses) < losses[0]


@pytest.mark.parametrize("name", MODELS)
def test_visualize_a_channel_of_the_middle_stage(name, model_path, tmp_path):
    path = model_path(name)
    layer = default_layers(load_model(path, device="cpu"), "invert")[0]
    out = tmp_path / "vis.png"
    record = _run(["visualize", "--model", str(path), "--layer", layer, "--channels", "0-1", "--size", "48",
                   "--steps", "12"], out)
    assert record["layers"] and out.is_file()
    start, final = record["metrics"]["objective_start"], record["metrics"]["objective_final"]
    assert len(start) == 2 and all(f > s for s, f in zip(start, final)), (start, final)   # each tile's own channel


@pytest.mark.parametrize("name", ["vgg16", "resnet18"])
def test_tiled_texture_has_no_seam(name, vgg16_model, model_path):
    """The wrap-around seams are like the interior: mean |first - last| column (row) over the mean
    neighbouring difference (`metrics.seam_ratios`) is at most 1.1, averaged over four seeds, on a texture
    without long straight lines (one brick mortar line falling on the seam, as it may anywhere, moves one
    image's ratio to 2; tests/bench/bench_tile.py reports brick too)."""
    model = vgg16_model if name == "vgg16" else load_model(model_path(name), device="cpu")
    ratios = [seam_ratios(synthesize_texture(IHC, model=model, size=64, out_size=(64, 96), tile=True, steps=40,
                                             seed=seed, progress=False).image) for seed in range(4)]
    cols, rows = np.mean(ratios, axis=0)
    assert cols <= 1.1 and rows <= 1.1, ratios


@pytest.mark.parametrize("name", ["vgg16", "resnet18"])
def test_a_tiled_run_commutes_with_shifts_by_its_period(name, vgg16_model, model_path):
    """Why the seam cannot show: starting from noise shifted by the run's period (the layers' alignment at the
    coarse scale) gives the result shifted by it, through both scales and the periodic resize between them. The
    wrap-around pair is then distributed exactly as the interior pairs a period apart. With zero padding the
    results differ by about 0.26; with circular padding by 2e-7 (VGG16) and 4e-6 (ResNet18)."""
    model = vgg16_model if name == "vgg16" else load_model(model_path(name), device="cpu")
    layers = default_layers(model, "texture")
    period = 2 * alignment(model, layers)   # two scales
    source = read_image(IHC, 64)[0]
    objective = texture_objective(model, source, layers, [1 / len(layers)] * len(layers))
    init = initial_image("mean-noise", (1, 3, 2 * period, 3 * period), seed=0, like=source)

    def run(net, start):
        return optimize(net, objective, start, optimizer="adam", lr=0.02, steps=10, scales=2, wrap=True,
                        progress=False).image

    shift = (period, 2 * period)
    for net, commutes in ((model.variant(padding="circular"), True), (model, False)):
        a = torch.roll(run(net, init), shift, dims=(2, 3))
        b = run(net, torch.roll(init, shift, dims=(2, 3)))
        assert float((a - init.roll(shift, dims=(2, 3))).abs().mean()) > 0.01   # the run moved the image
        assert (float((a - b).abs().max()) <= 1e-4) == commutes, float((a - b).abs().max())
