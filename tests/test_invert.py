"""invtool invert: the priors against hand computations, reconstruction quality on the real VGG16, fc layers,
ResNet stages, layer comparison, bad input and the CLI."""
import json
import math

import onnx
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from conftest import ROOT, VGG16_ONNX
from invtool import InvtoolError, load_model, losses
from invtool.cli import main
from invtool.image import read_image
from invtool.inversion import (RANGE_WEIGHT, compare_layers, inversion_objective, invert, merge_by_fit,
                               metrics_table, parse_layers)
from invtool.losses import alpha_norm, range_penalty, tv_loss
from invtool.metrics import psnr, ssim
from invtool.model import FeatureModel
from invtool.objectives import Objective
from invtool.param import pyramid
from oracle import make_model, rand

CHELSEA = ROOT / "examples" / "images" / "chelsea.png"
needs_vgg16 = pytest.mark.skipif(not VGG16_ONNX.is_file(), reason="models/vgg16.onnx not built (make export-models)")


@pytest.fixture(scope="module")
def vgg16(vgg16_model):
    return vgg16_model


@pytest.fixture(scope="module")
def chelsea():
    return read_image(CHELSEA, (64, 64))[0]


# --- the priors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("beta", [1.0, 2.0, 3.0])
def test_tv_is_zero_for_a_constant_image(beta):
    assert float(tv_loss(torch.full((2, 3, 9, 7), 0.3), beta)) == 0.0


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_tv_of_a_step_edge_by_hand(beta):
    # 3 channels, 6 rows, 8 columns; a jump of 0.5 between columns 3 and 4: one difference per row and
    # channel of (0.5 / scale) = 2 in scale units, so TV = 3 * 6 * 2^β / (6 * 8) per pixel.
    x = torch.zeros(1, 3, 6, 8)
    x[..., 4:] = 0.5
    assert float(tv_loss(x, beta, scale=0.25)) == pytest.approx(3 * 6 * 2 ** beta / 48)
    assert float(tv_loss(x.transpose(-1, -2), beta, scale=0.25)) == pytest.approx(3 * 6 * 2 ** beta / 48)


def test_tv_gradient_is_finite_at_flat_regions_for_beta_1():
    x = torch.zeros(1, 3, 8, 8)
    x[..., 4:] = 1.0
    x.requires_grad_(True)
    tv_loss(x, 1.0).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_alpha_norm_by_hand():
    x = torch.tensor([0.0, 0.1, -0.2, 0.4]).view(1, 1, 2, 2).repeat(1, 3, 1, 1)
    expected = 3 * (0.5 ** 6 + 1.0 + 2.0 ** 6) / 4      # |x / 0.2|^6 summed over channels, mean over pixels
    assert float(alpha_norm(x, 6.0, scale=0.2)) == pytest.approx(expected)
    assert float(alpha_norm(torch.zeros(1, 3, 4, 4))) == 0.0


def test_range_penalty_by_hand():
    x = torch.tensor([[[[-0.5, 0.0, 0.5], [1.0, 1.5, 2.0]]]])      # 1 channel, 6 pixels
    assert float(range_penalty(x)) == pytest.approx((0.25 + 0.25 + 1.0) / 6)
    assert float(range_penalty(torch.rand(2, 3, 5, 5))) == 0.0


def test_pyramid_starts_at_the_image_and_moves_every_level():
    start = torch.rand(1, 3, 32, 24, generator=torch.Generator().manual_seed(0))
    params, image_fn = pyramid(start, levels=4)
    assert [tuple(p.shape[-2:]) for p in params] == [(32, 24), (16, 12), (8, 6), (4, 3)]
    assert torch.equal(image_fn(), start)
    image_fn()[..., :16, :].sum().backward()            # a coarse change reaches the coarse levels
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    coarse = params[-1].grad.abs().sum() / params[-1].numel()
    assert coarse > 16 * params[0].grad.abs().sum() / params[0].numel()   # one coarse value moves 8x8 pixels


def test_pyramid_beats_pixels_on_region_colour(vgg16, chelsea):
    """The reason it is the default: at the same budget, the colour of whole regions (8x8 block means) lands
    closer to the image's. Overall PSNR is no test of that at this size: pixels lead or trail by about 1 dB
    with the budget and the CPU's rounding, while the block-mean error is 1.6-4x lower at 60-200 steps."""
    common = dict(model=vgg16, layers="conv2_1", size=(48, 48), steps=60, tol=0, scales=1,
                  progress=False)
    by_pyramid = invert(chelsea, param="pyramid", **common)
    by_pixels = invert(chelsea, param="pixel", tv_weight=1e-3, alpha_weight=1e-4, **common)
    original = by_pyramid.inputs["original"]

    def region_error(run):
        return float((F.avg_pool2d(run.image, 8) - F.avg_pool2d(original, 8)).square().mean().sqrt())

    pyramid_error, pixel_error = region_error(by_pyramid), region_error(by_pixels)
    assert pyramid_error < 0.5 * pixel_error, (pyramid_error, pixel_error)


def test_metrics_against_hand_values(chelsea):
    assert psnr(chelsea, chelsea) == math.inf
    assert ssim(chelsea, chelsea) == pytest.approx(1.0)
    shifted = (chelsea + 0.1).clamp(0, 1)
    mse = float((shifted - chelsea).square().mean())
    assert psnr(chelsea, shifted) == pytest.approx(10 * math.log10(1 / mse), rel=1e-4)


# --- reconstructions on the trained VGG16 -----------------------------------------------------------

def test_objective_decreases(vgg16, chelsea):
    run = invert(chelsea, model=vgg16, layers="conv2_1", size=None, steps=15, progress=False)
    loss = run.record["history"]["loss"]
    assert min(loss[-5:]) < 0.5 * loss[0]
    assert run.record["history"]["terms"].keys() == {"feature:conv2_1", "tv2", "range"}   # α-norm off by default


def test_conv1_1_reconstructs_the_image(vgg16, chelsea, tmp_path):
    """64x64, one run of 80 steps (the default early stop on)."""
    run = invert(chelsea, model=vgg16, layers="conv1_1", size=None, steps=80, progress=False)
    m = run.record["metrics"]
    assert m["psnr"] >= 25, m
    assert m["feature_error"]["conv1_1"] < 0.01
    assert m["psnr"] == pytest.approx(psnr(chelsea, run.image), abs=1e-3)   # the record says what the image is
    paths = run.save(tmp_path / "out.png", report=True)
    assert [p.suffix for p in paths] == [".png", ".json", ".html"]
    assert json.loads(paths[1].read_text())["metrics"] == json.loads(json.dumps(m))


def test_init_from_an_earlier_result_goes_on_from_it(vgg16, chelsea, tmp_path):
    first = invert(chelsea, model=vgg16, layers="conv2_1", size=None, steps=20, progress=False)
    path = first.save(tmp_path / "first.png")[0]
    again = invert(chelsea, model=vgg16, layers="conv2_1", size=None, steps=20, init=path, progress=False)
    loss, before = again.record["history"]["loss"], first.record["history"]["loss"]
    assert loss[0] < 1.1 * min(before) < 0.5 * before[0]   # starts where the first run ended (8-bit PNG aside)
    assert min(loss) < min(before)
    assert again.record["options"]["init"] == str(path)
    start = torch.rand(1, 3, 16, 16)   # a tensor is resized to the image
    assert invert(chelsea, model=vgg16, layers="conv1_1", size=None, steps=1, init=start,
                  progress=False).record["options"]["init"] == "tensor"


def test_merge_takes_each_region_from_the_run_that_matches_there(vgg16, chelsea):
    noise = torch.rand(chelsea.shape, generator=torch.Generator().manual_seed(0))
    left, right = chelsea.clone(), chelsea.clone()   # each right in one half, noise in the other
    left[..., 32:], right[..., :32] = noise[..., 32:], noise[..., :32]
    merged = merge_by_fit(vgg16, chelsea, {"conv2_1": 1.0}, torch.cat([left, right]))
    halves = max(psnr(chelsea, left), psnr(chelsea, right))
    assert psnr(chelsea, merged) > psnr(chelsea, (left + right) / 2) + 6 > halves + 6, (psnr(chelsea, merged), halves)


def test_restarts_run_as_one_batch_then_from_their_merge(vgg16, chelsea):
    """--restarts K: K starts (gray, then noises) optimised as one [K, 3, H, W] batch whose loss is the
    mean of each start's own (so one start alone gets the gradient it would get in a run of its own), merged
    by fit, then the last quarter of --steps from the merge; the step numbers run on, the record shows --steps."""
    seen = {}
    run = invert(chelsea, model=vgg16, layers="conv2_1", size=(32, 32), steps=16, tol=0, restarts=3, progress=False,
                 callback=lambda s: seen.__setitem__(s.step, (float(s.loss), s.image.clone())))
    assert sorted(seen) == list(range(1, 17)) and run.record["steps"] == 16   # 12 batched + 4 from the merge
    assert run.record["history"]["loss"] == pytest.approx([seen[k][0] for k in range(1, 17)])
    first = seen[1][1]
    assert first.shape == (3, 3, 32, 32) and torch.equal(first[0], torch.full((3, 32, 32), 0.5))
    assert not torch.equal(first[1], first[2])   # two different noises
    objective = inversion_objective(vgg16, run.inputs["original"], {"conv2_1": 1.0})
    objective = objective + RANGE_WEIGHT * Objective(lambda f, x: losses.range_penalty(x), name="range")
    each = [objective.at(vgg16, first[k:k + 1]) for k in range(3)]
    assert seen[1][0] == pytest.approx(sum(each) / 3, rel=1e-5)   # the batch's loss: the mean of the three

    best = min(range(1, 13), key=lambda k: seen[k][0])
    merged = merge_by_fit(vgg16, run.inputs["original"], {"conv2_1": 1.0}, seen[best][1].clamp(0, 1))
    assert torch.allclose(seen[13][1], merged, atol=1e-5)   # the last 4 steps start from the merge
    assert seen[13][1].shape == (1, 3, 32, 32) and run.image.shape == (1, 3, 32, 32)
    assert "merged" in " ".join(run.record["notes"])


def test_merged_restarts_beat_one_run_on_a_deep_layer(vgg16, chelsea):
    """What --restarts is for: single runs from nothing stop in poor minima on deep layers, each wrong in
    other places (conv3_1, 48x48, 300 steps: one run 17.3 dB, four merged 21.6 when written)."""
    common = dict(model=vgg16, layers="conv3_1", size=(48, 48), steps=300, tol=0, progress=False)
    one = invert(chelsea, restarts=1, **common).record["metrics"]["psnr"]
    merged = invert(chelsea, restarts=4, **common).record["metrics"]["psnr"]
    assert merged > one + 1, (merged, one)


def high_frequency_energy(x: torch.Tensor) -> float:
    """Mean squared Laplacian: what a smoother image has less of."""
    lap = 4 * x[..., 1:-1, 1:-1] - x[..., :-2, 1:-1] - x[..., 2:, 1:-1] - x[..., 1:-1, :-2] - x[..., 1:-1, 2:]
    return float(lap.square().mean())


def test_higher_tv_weight_gives_a_smoother_result(vgg16, chelsea):
    common = dict(model=vgg16, layers="conv2_1", size=(32, 32), steps=20, progress=False)
    rough = invert(chelsea, tv_weight=0.0, **common).image
    smooth = invert(chelsea, tv_weight=1.0, **common).image
    assert high_frequency_energy(smooth) < 0.5 * high_frequency_energy(rough)


def test_compare_gives_one_run_per_layer_and_a_sheet(vgg16, chelsea):
    run = compare_layers(chelsea, model=vgg16, layers=["conv1_1", "pool1"], size=None, steps=5, progress=False)
    assert [r["label"] for r in run.record["runs"]] == ["conv1_1", "pool1"]
    assert set(run.record["metrics"]) == {"conv1_1", "pool1"}
    assert run.image.shape[-1] > 3 * 64     # original + 2 reconstructions side by side
    table = metrics_table(run.record["runs"]).splitlines()
    assert len(table) == 3 and table[1].startswith("conv1_1")


# --- other layers and models ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fc_model(tmp_path_factory):
    """A small CNN with a fully connected layer that needs a 32x32 input, marked as the exporters do."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(4),
                              torch.nn.Flatten(), torch.nn.Linear(8 * 8 * 8, 16), torch.nn.ReLU()).eval()
    path = tmp_path_factory.mktemp("fc") / "fc.onnx"
    torch.onnx.export(net, (torch.rand(1, 3, 32, 32),), str(path), dynamo=False, opset_version=17,
                      input_names=["image"], output_names=["fc6"], dynamic_axes={"image": {0: "n"}})
    proto = onnx.load(str(path))
    conv = proto.graph.node[0].output[0]
    onnx.helper.set_model_props(proto, {"invtool.aliases": json.dumps({"conv1": conv}),
                                        "invtool.fixed_input": json.dumps({"size": [32, 32], "layers": ["fc6"]})})
    onnx.save(proto, str(path))
    return load_model(path, device="cpu")


def test_fc_layer_resizes_the_image_and_says_so(fc_model, chelsea):
    run = invert(chelsea, model=fc_model, layers=["conv1", "fc6:0.5"], size=None, steps=10, progress=False)
    assert run.image.shape[-2:] == (32, 32)
    assert run.record["layer_weights"] == {"conv1": 1.0, "fc6": 0.5}
    assert any("64x64 to 32x32" in n and "fully connected" in n for n in run.record["notes"])
    assert run.record["final_loss"] < run.record["history"]["loss"][0]   # the best image is kept


def test_resnet_stage_and_block_run(resnet18_onnx, chelsea):
    model = load_model(resnet18_onnx[0], device="cpu")
    model.aliases["res3"] = "res3b"   # the stage alias the exporters write
    run = invert(chelsea, model=model, layers=["res3", "res4a:0.5"], size=(32, 32), steps=8, scales=1,
                 progress=False)
    assert set(run.record["metrics"]["feature_error"]) == {"res3", "res4a"}
    assert all(math.isfinite(v) for v in run.record["metrics"]["feature_error"].values())
    assert run.record["final_loss"] < run.record["history"]["loss"][0]   # the best image is kept


# --- bad input ---------------------------------------------------------------------------------------

def test_fc_layer_on_a_conv_only_model_names_the_problem(vgg16, chelsea):
    with pytest.raises(InvtoolError, match="no fully connected layer 'fc6'.*vgg16-conv"):
        invert(chelsea, model=vgg16, layers="fc6", steps=1, progress=False)


def test_layer_specs_give_weights_as_given(vgg16):
    """objectives.layer_weights' rule: unweighted 1, weights as given for inversion, each layer once."""
    assert parse_layers(vgg16, "conv3_1,conv1_1:0.5") == {"conv3_1": 1.0, "conv1_1": 0.5}
    assert parse_layers(vgg16, {"pool2": 0.25}) == {"pool2": 0.25}
    with pytest.raises(InvtoolError, match="conv3_1 is listed twice"):
        parse_layers(vgg16, ["conv3_1", "conv1_1:0.5", "conv3_1:2"])


def test_a_tensor_name_with_a_colon_is_a_name_not_a_weight():
    node = onnx.helper.make_node("Relu", ["image"], ["model/conv1/Relu:0"])
    model = FeatureModel(make_model([node], {"image": rand(1, 3, 8, 8)}, ["model/conv1/Relu:0"], 13), device="cpu")
    assert parse_layers(model, "model/conv1/Relu:0") == {"model/conv1/Relu:0": 1.0}
    assert parse_layers(model, "model/conv1/Relu:0:0.5") == {"model/conv1/Relu:0": 0.5}


@pytest.mark.parametrize("layers, message", [
    ("conv9_9", "unknown layer 'conv9_9'"),
    ("conv1_1:-1", "out of range"),
    ("conv1_1:1e9", "out of range"),
    ("conv1_1:abc", "bad weight"),
    ([], "no layers in"),
    ("conv1_1,", "no layers in"),
])
def test_bad_layers(vgg16, layers, message):
    with pytest.raises(InvtoolError, match=message):
        parse_layers(vgg16, layers)


@pytest.mark.parametrize("kwargs, message", [
    (dict(tv_weight=-1.0), "--tv-weight -1"),
    (dict(alpha_weight=float("nan")), "--alpha-weight nan"),
    (dict(alpha=0.5), "--alpha 0.5"),
    (dict(tv_beta=0.0), "--tv-beta 0"),
    (dict(init="zeros"), "unknown init"),
    (dict(restarts=0), "--restarts 0 is out of range"),
    (dict(restarts=2, steps=4), "--restarts 2 with --steps 4: give at least 8 steps"),
    (dict(size=(8, 8), layers="pool5"), "the image \\(after --size\\) is 8x8"),
])
def test_bad_options(vgg16, chelsea, kwargs, message):
    with pytest.raises(InvtoolError, match=message):
        invert(chelsea, model=vgg16, **{"steps": 1, "progress": False, **kwargs})


def test_non_finite_input_is_refused(vgg16):
    x = torch.rand(1, 3, 32, 32)
    x[0, 1, 3, 4] = math.nan
    with pytest.raises(InvtoolError, match="NaN or infinite"):
        invert(x, model=vgg16, layers="conv1_1", steps=1, progress=False)


class _Sqrt(torch.nn.Module):
    def forward(self, x):
        return (x - 0.6) ** 0.5      # NaN wherever a pixel is below 0.6


def test_cli_names_the_term_that_blew_up_and_keeps_the_image(tmp_path):
    model = tmp_path / "sqrt.onnx"
    torch.onnx.export(_Sqrt(), (torch.rand(1, 3, 8, 8),), str(model), dynamo=False, opset_version=17,
                      input_names=["image"], output_names=["root"], dynamic_axes={"image": {2: "h", 3: "w"}})
    out = tmp_path / "nan.png"
    result = CliRunner().invoke(main, ["invert", str(CHELSEA), "--layer", "root", "--size", "16", "--steps", "5",
                                       "--model", str(model), "-q", "-o", str(out)])
    assert result.exit_code == 1
    assert "error: non-finite loss in term 'feature:root' at step 1" in result.output
    assert read_image(out)[0].isfinite().all() and out.with_suffix(".json").is_file()


# --- CLI ------------------------------------------------------------------------------------------------

@needs_vgg16
def test_cli_invert_writes_image_record_and_table(tmp_path):
    out = tmp_path / "inv.png"
    result = CliRunner().invoke(main, ["invert", str(CHELSEA), "--layer", "conv1_1", "--size", "32x32", "--steps", "5",
                                       "--model", str(VGG16_ONNX), "-q", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "PSNR dB" in result.output and "conv1_1" in result.output
    record = json.loads(out.with_suffix(".json").read_text())
    # one run of --steps at one scale (the pyramid does coarse to fine)
    assert record["command"] == "invert" and record["steps"] == 5 and record["sizes"] == [[32, 32]]
    assert record["scale_starts"] == [0] and record["options"]["restarts"] == 1
    assert record["options"]["param"] == "pyramid"
    assert read_image(out)[0].shape == (1, 3, 32, 32)


@needs_vgg16
def test_cli_compare_and_errors(tmp_path):
    out = tmp_path / "cmp.png"
    runner = CliRunner()
    result = runner.invoke(main, ["invert", str(CHELSEA), "--compare", "conv1_1,conv2_1", "--size", "32",
                                  "--steps", "3", "--model", str(VGG16_ONNX), "-q", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert [r["label"] for r in json.loads(out.with_suffix(".json").read_text())["runs"]] == ["conv1_1", "conv2_1"]
    bad = runner.invoke(main, ["invert", str(CHELSEA), "--layer", "fc6", "--model", str(VGG16_ONNX),
                               "-o", str(tmp_path / "x.png")])
    assert bad.exit_code == 1 and bad.output.startswith("error: ") and "Traceback" not in bad.output
    assert not (tmp_path / "x.png").exists()
    bad = runner.invoke(main, ["invert", str(CHELSEA), "--init", "zeros", "--model", str(VGG16_ONNX),
                               "-o", str(tmp_path / "x.png")])
    assert bad.exit_code == 1 and "unknown init 'zeros'" in bad.output and "image file" in bad.output
    assert not (tmp_path / "x.png").exists()
