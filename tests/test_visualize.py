"""invtool visualize: objectives, the parser, the Fourier parameterisation, transforms, grids, DeepDream, CLI."""
import json
import math
import os
import signal

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from invtool import InvtoolError, load_model
from invtool.cli import main
from invtool.image import read_image, write_png
from invtool.objectives import channel, layer, on_image
from invtool.param import _COLOR_SQRT_COV, _FOURIER_GAIN, fourier, resize_image
from invtool.transforms import rotate, scale
from invtool.visualization import parse_channels, parse_objective, relu_input, visualize

FAST = dict(jitter=0, scale_jitter=0, rotate=0, progress=False)   # deterministic, for "it increased" checks


@pytest.fixture(scope="module")
def vgg(vgg16_model):
    return vgg16_model


@pytest.fixture(scope="module")
def small(vgg16_conv_onnx):
    return load_model(vgg16_conv_onnx[0], device="cpu")


def feature(model, name, x):
    with torch.no_grad():
        return model.features(x, [name])[name]


# --- objectives ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["channel", "neuron", "layer"])
def test_each_objective_increases_during_the_run(vgg, kind):
    spec = {"channel": "channel:conv2_1:5", "neuron": "neuron:conv2_1:5", "layer": "layer:conv2_1"}[kind]
    run = visualize(objectives=[spec], model=vgg, size=32, steps=12, **FAST)
    start, end = run.record["metrics"]["objective_start"][0], run.record["metrics"]["objective_final"][0]

    def by_hand(x):   # the objective computed directly from the features (channels: before the ReLU)
        f = feature(vgg, "conv2_1" if kind == "layer" else relu_input(vgg, "conv2_1"), x)
        return float({"channel": f[0, 5].mean(), "neuron": f[0, 5, f.shape[2] // 2, f.shape[3] // 2],
                      "layer": f.square().mean()}[kind])
    assert by_hand(run.tiles) == pytest.approx(end, rel=1e-4)
    assert end > start + 0.1 * abs(start) + 1e-3
    assert run.tiles.shape == (1, 3, 32, 32)


def test_channel_objectives_read_the_relu_input(vgg):
    pre = relu_input(vgg, "conv5_1")
    assert pre != "conv5_1" and relu_input(vgg, "pool4") == "pool4"
    x = torch.full((1, 3, 32, 32), 0.5)
    before, after = feature(vgg, pre, x), feature(vgg, "conv5_1", x)
    assert torch.equal(after, before.clamp(min=0))                     # it is the ReLU's input
    run = visualize("conv5_1", [int(after.flatten(2).amax(2).argmin())], model=vgg, size=32, steps=1, **FAST)
    assert run.record["layers"] == [pre] and "ReLU" in " ".join(run.record["notes"])


def test_on_image_sees_only_its_image(small):
    x = torch.rand(3, 3, 32, 32)
    feats = {"conv1_2": feature(small, "conv1_2", x)}
    obj = on_image(channel("conv1_2", 3) + 2 * layer("conv1_2"), 1)
    f = feats["conv1_2"][1]
    assert float(obj(feats, x)) == pytest.approx(float(f[3].mean() + 2 * f.square().mean()), rel=1e-5)


def test_fc_units_are_channels_and_out_of_range_names_the_count(resnet18_onnx):
    model = load_model(resnet18_onnx[0], device="cpu")
    run = visualize("fc", [3, 7], model=model, size=32, steps=2, **FAST)
    assert run.tiles.shape == (2, 3, 32, 32)
    assert len(run.record["metrics"]["objective_final"]) == 2
    with pytest.raises(InvtoolError, match=r"channel 1000 is out of range: fc has 1000 units, 0-999"):
        visualize("fc", "998-1000", model=model, size=32, steps=1, **FAST)


def test_channel_out_of_range_names_the_channel_count(small):
    with pytest.raises(InvtoolError, match=r"channel 64 is out of range: conv1_1 has 64 channels, 0-63"):
        visualize("conv1_1", "60-64", model=small, size=32, steps=1, **FAST)


def test_fixed_input_layers_impose_their_size(vgg16_conv_onnx):
    model = load_model(vgg16_conv_onnx[0], device="cpu")
    model.metadata["invtool.fixed_input"] = json.dumps({"size": [40, 40], "layers": ["conv1_1"]})
    run = visualize("conv1_1", "0", model=model, size=32, steps=1, **FAST)
    assert run.tiles.shape[-2:] == (40, 40)
    assert any("40x40" in n for n in run.record["notes"])


@pytest.mark.parametrize("kwargs, message", [
    (dict(layer="conv1_1", param="wavelet"), "unknown parameterisation 'wavelet'"),
    (dict(layer="conv1_1", octaves=3, steps=2), "2 steps cannot be shared by 3 octaves"),
    (dict(), "nothing to visualise"),
    (dict(layer="conv1_1", channels="0", objectives=["layer:conv1_1"]), "not both"),
    (dict(layer="conv9_9", channels="0"), "unknown layer 'conv9_9'"),
    (dict(layer="conv1_1", channels="0", optimizer="rmsprop"), "unknown optimizer 'rmsprop'; use one of adam"),
])
def test_bad_options_are_errors(small, kwargs, message):
    with pytest.raises(InvtoolError, match=message):
        visualize(model=small, size=32, progress=False, **kwargs)


# --- the parser ----------------------------------------------------------------------------------

def test_parsed_objective_is_the_weighted_sum_it_says(small):
    x = torch.rand(1, 3, 32, 32)
    f = feature(small, "conv1_2", x)
    obj = parse_objective("channel:conv1_2:12 - 0.5*channel:conv1_2:40 + 2*(neuron:conv1_2:3 - -layer:conv1_2)")
    expected = (f[0, 12].mean() - 0.5 * f[0, 40].mean() + 2 * (f[0, 3, 16, 16] + f.square().mean()))
    assert float(obj({"conv1_2": f}, x)) == pytest.approx(float(expected), rel=1e-5)
    assert obj.names == ["channel:conv1_2:12", "channel:conv1_2:40", "neuron:conv1_2:3", "layer:conv1_2"]


def test_layer_names_may_hold_colons_slashes_and_dashes():
    obj = parse_objective("channel:block1/Relu:0:12-0.5*layer:conv1-7x7 + neuron:features.3:4")
    assert obj.layers == ("block1/Relu:0", "conv1-7x7", "features.3")
    assert [t.weight for t in obj.parts] == [1.0, -0.5, 1.0]


@pytest.mark.parametrize("text, column, problem", [
    ("channel:conv4_1:12 - 0.5*chanel:conv4_1:40", 26, "unknown term kind 'chanel' (did you mean: channel?)"),
    ("channel:conv4_1", 1, "needs a layer and a channel index"),
    ("channel:conv4_1:12 +", 21, "ends too early"),
    ("(channel:conv4_1:1", 19, "missing ')'"),
    ("channel:conv4_1:1 * channel:conv4_1:2", 19, "cannot multiply two objectives"),
    ("channel:conv4_1:1 + 2", 19, "cannot add a number and an objective"),
    ("channel:conv4_1:1 )", 19, "unexpected ')'"),
    ("3 * 2", 1, "is a number, not an objective"),
])
def test_bad_objectives_say_where_parsing_failed(text, column, problem):
    with pytest.raises(InvtoolError) as e:
        parse_objective(text)
    msg = str(e.value)
    assert f"column {column}," in msg and problem in msg and "\n" not in msg
    assert f'"{text[:column - 1]} >>> {text[column - 1:]}"' in msg


def test_channel_lists():
    assert parse_channels("0-3, 7,9-10") == [0, 1, 2, 3, 7, 9, 10]
    assert parse_channels([5, 2]) == [5, 2]
    for bad in ("3-1", "a", "1,,2", ""):
        with pytest.raises(InvtoolError, match="bad channel list"):
            parse_channels(bad)


# --- the Fourier parameterisation ----------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3, 32, 48), (1, 3, 33, 31)])
def test_fourier_reproduces_an_image_and_stays_in_0_1(shape):
    x = torch.rand(*shape)
    p = fourier(x)
    assert torch.allclose(p.image_fn(), x.clamp(1e-3, 1 - 1e-3), atol=1e-5)
    with torch.no_grad():   # any spectrum, however large, is a valid image
        p.params[0].mul_(1e4)
        y = p.image_fn()
    assert y.shape == shape and torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1


def test_fourier_scales_each_frequency_by_one_over_f():
    h, w = 24, 32
    p = fourier((1, 3, h, w), sd=0.01, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = torch.logit(p.image_fn().double())
    flat = np.einsum("ij,njhw->nihw", np.linalg.inv(_COLOR_SQRT_COV.double().numpy()), logits.numpy())
    coef = np.abs(np.fft.rfft2(flat, norm="ortho"))[..., 1:w // 2]   # columns the real FFT holds once
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, 1:w // 2]
    expected = np.abs(torch.view_as_complex(p.params[0].detach()).numpy()[..., 1:w // 2]) / (
        _FOURIER_GAIN * np.maximum(np.hypot(fx, fy), 1 / max(h, w)))
    np.testing.assert_allclose(coef, expected, rtol=1e-3, atol=1e-3 * expected.max())   # float32 images


def test_fourier_resize_is_the_resized_picture():
    x = torch.rand(1, 3, 32, 40)
    small = fourier(x).resize(16, 20)
    assert isinstance(small.params[0], torch.Tensor) and small.params[0].requires_grad
    assert torch.allclose(small.image_fn(), resize_image(x.clamp(1e-3, 1 - 1e-3), 16, 20).clamp(1e-3, 1 - 1e-3),
                          atol=1e-5)


# --- transforms ----------------------------------------------------------------------------------

def disk(h, w, r):
    yy, xx = torch.meshgrid(torch.arange(h) - (h - 1) / 2, torch.arange(w) - (w - 1) / 2, indexing="ij")
    return ((yy ** 2 + xx ** 2) <= r * r).float().expand(1, 3, h, w)


def test_rotation_keeps_a_centred_disk_and_moves_a_bar():
    g = torch.Generator().manual_seed(1)
    d = disk(48, 64, 12)
    assert (rotate(30)(d, g) - d).abs().mean() < 0.01
    bar = torch.zeros(1, 3, 48, 64)
    bar[..., 22:26, 8:56] = 1
    turned = rotate(30)(bar, g)
    assert (turned - bar).abs().sum() > 0.3 * bar.sum()    # a 0.5° turn would move far less
    assert turned.sum() == pytest.approx(float(bar.sum()), rel=0.05)   # a rotation keeps the area


def test_scale_zooms_within_its_range():
    g = torch.Generator().manual_seed(0)
    d = disk(64, 64, 10)
    for _ in range(5):
        ratio = math.sqrt(float(scale(0.2)(d, g).sum() / d.sum()))   # the radius' zoom factor
        assert 0.78 <= ratio <= 1.22
    assert scale(0)(d, g) is d and rotate(0)(d, g) is d


def test_transforms_are_differentiable_and_seeded():
    def t(z):
        return rotate(10)(scale(0.1)(z, torch.Generator().manual_seed(3)), torch.Generator().manual_seed(4))
    x = torch.rand(2, 3, 32, 40, requires_grad=True)
    y1, y2 = t(x), t(x)
    assert torch.equal(y1, y2)
    y1.sum().backward()
    # a seeded resampling is linear in the image, so its gradient is its adjoint: <grad, v> = sum(t(v))
    v = torch.rand(2, 3, 32, 40, generator=torch.Generator().manual_seed(5))
    assert float((x.grad * v).sum()) == pytest.approx(float(t(v).sum()), rel=1e-4)


# --- grids and DeepDream -------------------------------------------------------------------------

def test_each_tile_of_real_vgg16_excites_its_own_channel_most(vgg):
    channels = [3, 12, 40, 77]
    run = visualize("conv3_1", channels, model=vgg, size=48, steps=24, progress=False)
    f = feature(vgg, "conv3_1", run.tiles)
    means = f[:, channels].mean(dim=(2, 3))          # [tile, channel]
    assert (means.argmax(dim=0) == torch.arange(len(channels))).all(), means
    assert run.record["metrics"]["own_objective_highest"] == "4/4"
    assert not torch.allclose(run.tiles[0], run.tiles[1], atol=0.05)
    # the grid: 2 rows of 4 would be wrong for 4 tiles in one row plus captions
    assert run.image.shape[0] == 1 and run.image.shape[-1] > 4 * 48 and run.labels == [f"conv3_1:{c}" for c in channels]


def test_deepdream_from_an_image_with_octaves(vgg, tmp_path):
    src = tmp_path / "src.png"
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 40), torch.linspace(0, 1, 56), indexing="ij")
    write_png(src, torch.stack([yy, xx, 1 - xx * yy])[None])
    x, _ = read_image(src)
    run = visualize("conv2_2", image=src, octaves=2, model=vgg, size=56, steps=16, lr=0.02, progress=False)
    assert run.image.shape == (1, 3, 40, 56)           # one tile: the image itself, no caption
    assert run.record["sizes"] == [[28, 40], [40, 56]]   # 40 / 1.4 = 29, rounded to conv2_2's alignment of 2
    assert len(run.record["history"]["loss"]) == 16
    e0, e1 = run.record["metrics"]["objective_start"][0], run.record["metrics"]["objective_final"][0]
    assert e1 > 1.5 * e0
    assert float(feature(vgg, "conv2_2", run.image).square().mean()) == pytest.approx(e1, rel=1e-4)
    assert (run.image - x).abs().mean() < 0.25       # dreamt on, not replaced
    assert torch.equal(run.inputs["image"], x)


def test_pixel_param_stays_in_0_1_and_scores_its_tiles(small):
    run = visualize("conv1_2", "0-1", model=small, param="pixel", size=32, steps=4, progress=False)
    assert run.tiles.shape == (2, 3, 32, 32) and run.tiles.min() >= 0 and run.tiles.max() <= 1
    f = feature(small, relu_input(small, "conv1_2"), run.tiles)   # tile c's objective: channel c's mean
    assert run.record["metrics"]["objective_final"] == pytest.approx(
        [float(f[0, 0].mean()), float(f[1, 1].mean())], rel=1e-4, abs=1e-6)


# --- the command -----------------------------------------------------------------------------------

def test_cli_writes_the_grid_its_record_and_report(vgg16_conv_onnx, tmp_path):
    out = tmp_path / "grid.png"
    r = CliRunner().invoke(main, ["visualize", "--model", str(vgg16_conv_onnx[0]), "--layer", "conv1_2",
                                  "--channels", "0-2", "--size", "32", "--steps", "3", "--seed", "1",
                                  "-o", str(out), "--report"])
    assert r.exit_code == 0, r.output
    grid, _ = read_image(out)
    assert grid.shape == (1, 3, 6 + 32 + 22 + 6, 6 + 3 * (32 + 6))   # 3 tiles in a row, 6 px margins, captions
    rec = json.loads(out.with_suffix(".json").read_text())
    assert rec["command"] == "visualize" and rec["labels"] == ["conv1_2:0", "conv1_2:1", "conv1_2:2"]
    assert rec["steps"] == 3 and rec["options"]["seed"] == 1
    page = out.with_suffix(".html").read_text()
    assert page.startswith("<!doctype html>") and page.count("data:image/png;base64,") == 2   # grid, loss curve


def test_cli_objective_errors_are_one_line(vgg16_conv_onnx, tmp_path):
    out = tmp_path / "x.png"
    r = CliRunner().invoke(main, ["visualize", "--model", str(vgg16_conv_onnx[0]), "--objective",
                                  "channel:conv1_2:1 -", "-o", str(out)])
    assert r.exit_code == 1
    assert r.output.startswith("error: bad objective at column 20,") and r.output.count("\n") == 1
    assert not out.exists()


def test_cli_interrupt_keeps_the_best_image_and_exits_130(vgg16_conv_onnx, tmp_path, monkeypatch):
    import invtool.visualization as vis
    real = vis.optimize

    def interrupted(*args, **kwargs):   # Ctrl-C after the second step
        kwargs["callback"] = lambda step: os.kill(os.getpid(), signal.SIGINT) if step.step == 2 else None
        return real(*args, **kwargs)
    monkeypatch.setattr(vis, "optimize", interrupted)
    out = tmp_path / "int.png"
    r = CliRunner().invoke(main, ["visualize", "--model", str(vgg16_conv_onnx[0]), "--layer", "conv1_1",
                                  "--channels", "0,1", "--size", "32", "--steps", "50", "-o", str(out)])
    assert r.exit_code == 130, r.output
    rec = json.loads(out.with_suffix(".json").read_text())
    assert rec["interrupted"] and rec["steps"] <= 3
    grid, _ = read_image(out)   # the image was written: the grid of the 2 tiles
    assert grid.shape == (1, 3, 6 + 32 + 22 + 6, 6 + 2 * (32 + 6))


# --- batches of tiles --------------------------------------------------------------------------------

def spy_starts(monkeypatch) -> list:
    """Every group's starting images, as `_dream` gets them (a list that fills as visualize runs)."""
    import invtool.visualization as vis
    real, starts = vis._dream, []

    def spy(model, objective, start, *args, **kwargs):
        starts.append(start.detach().cpu().clone())
        return real(model, objective, start, *args, **kwargs)
    monkeypatch.setattr(vis, "_dream", spy)
    return starts


def least_budget(model, layer: str, k: int, side: int, channels=None) -> int:
    """The smallest budget (bytes) in which the memory planner fits k tiles of side x side reading `layer` (its
    `channels` alone, as visualize computes them, when given)."""
    from invtool.memory import batch_size
    from invtool.objectives import Objective
    tensor = relu_input(model, layer)
    model = model.variant(channels={tensor: channels}) if channels else model
    probe = Objective(lambda f, x: 0.0, [tensor])
    low, high = 1, 2**40
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if batch_size(model, probe, k, side, side, memory=mid) == k else (mid + 1, high)
    return low


def test_tiles_start_alike_in_any_batch_and_keep_their_order(small, monkeypatch):
    """Tile i starts from noise of (seed, i) whatever the grouping: --batch 2 and --batch 8 start from the same
    images; each group is its own batched run; the tiles come back in order, finite, labelled, and each is the
    one its channel's own run made (no transforms: a tile's Adam steps do not depend on its neighbours)."""
    starts = spy_starts(monkeypatch)
    grouped = visualize("conv1_2", "3-7", model=small, size=32, steps=3, batch=2, **FAST)
    assert [len(s) for s in starts] == [2, 2, 1]
    grouped_starts, starts[:] = torch.cat(starts), []
    whole = visualize("conv1_2", "3-7", model=small, size=32, steps=3, batch=8, **FAST)
    assert [len(s) for s in starts] == [5]
    assert torch.equal(grouped_starts, starts[0])
    assert not torch.allclose(grouped_starts[0], grouped_starts[1])   # each tile its own noise
    assert grouped.tiles.shape == (5, 3, 32, 32) and torch.isfinite(grouped.tiles).all()
    assert grouped.labels == [f"conv1_2:{c}" for c in range(3, 8)] == grouped.record["labels"]
    assert grouped.record["batch"] == 2 and grouped.record["batching"]["runs"] == 3
    assert whole.record["batch"] == 5 and whole.record["options"]["batch"] == 8
    assert torch.allclose(grouped.tiles, whole.tiles, atol=1e-4)
    f = feature(small, relu_input(small, "conv1_2"), grouped.tiles)
    assert grouped.record["metrics"]["objective_final"] == pytest.approx(
        [float(f[i, c].mean()) for i, c in enumerate(range(3, 8))], rel=1e-4, abs=1e-6)
    assert len(grouped.record["history"]["loss"]) == 3
    assert grouped.image.shape[-1] > 4 * 32   # the grid of all five tiles


def test_a_stop_in_one_group_ends_the_run_with_every_tile(small, monkeypatch):
    starts = spy_starts(monkeypatch)
    visualize("conv1_2", "0-4", model=small, size=32, steps=1, batch=8, **FAST)   # every tile's start, in one run
    everything, starts[:] = starts[0], []
    run = visualize("conv1_2", "0-4", model=small, size=32, steps=5, batch=2, callback=lambda step: True, **FAST)
    assert len(starts) == 1 and run.tiles.shape == (5, 3, 32, 32)   # the first group stopped, and no other ran
    assert torch.equal(run.tiles[2:], everything[2:])
    assert run.record["stopped_early"] and any("tiles 3-5 are their starting images" in n for n in run.record["notes"])


def test_auto_batch_on_the_cpu_is_the_cap_or_what_fits(small, monkeypatch):
    """On the CPU "auto" is min(memory.CPU_BATCH, what the budget holds); elsewhere the cap is every tile."""
    import invtool.memory as memory
    monkeypatch.setattr(memory, "CPU_BATCH", 3)
    roomy = visualize("conv1_2", "0-4", model=small, size=32, steps=1, memory=2**40, **FAST)
    assert roomy.record["batch"] == 3 and roomy.record["batching"]["cap"] == 3
    assert "CPU_BATCH" in roomy.record["batching"]["how"] and roomy.record["options"]["batch"] == "auto"
    tight = visualize("conv1_2", "0-4", model=small, size=32, steps=1,
                      memory=least_budget(small, "conv1_2", 2, 32, range(5)),
                      **FAST)
    assert tight.record["batch"] == 2 and tight.tiles.shape[0] == 5
    assert any(n.startswith("batch 3 lowered to 2 to fit the memory budget of") for n in tight.record["notes"])


def test_cli_lowers_a_batch_that_does_not_fit_with_a_note(vgg16_conv_onnx, small, tmp_path):
    out = tmp_path / "grid.png"
    budget = least_budget(small, "conv1_2", 2, 32, range(4))
    r = CliRunner().invoke(main, ["visualize", "--model", str(vgg16_conv_onnx[0]), "--layer", "conv1_2", "--channels",
                                  "0-3", "--size", "32", "--steps", "1", "--batch", "4", "--memory", str(budget),
                                  "--dtype", "float32", "-q", "-o", str(out)])   # the budget is small's
    assert r.exit_code == 0, r.output
    rec = json.loads(out.with_suffix(".json").read_text())
    assert rec["batch"] == 2 and rec["batching"]["runs"] == 2 and rec["options"]["memory"] == str(budget)
    assert any(n.startswith("batch 4 lowered to 2 to fit the memory budget of") for n in rec["notes"]), rec["notes"]
    assert rec["labels"] == [f"conv1_2:{c}" for c in range(4)]


@pytest.mark.parametrize("value", ["0", "x", "-3", "2.5"])
def test_cli_bad_batch_is_one_line_and_writes_nothing(vgg16_conv_onnx, tmp_path, value):
    out = tmp_path / "grid.png"
    r = CliRunner().invoke(main, ["visualize", "--model", str(vgg16_conv_onnx[0]), "--layer", "conv1_2",
                                  "--channels", "0", "--size", "32", "--steps", "1", "--batch", value, "-o", str(out)])
    assert r.exit_code == 1, r.output
    assert r.output == (f"error: --batch {value} is not a batch size; give auto (sized by the memory planner) or a "
                        "whole number of at least 1, e.g. --batch 8\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", [0, -3, 2.5, True, "", "eight"])
def test_bad_batch_is_refused_before_the_model_loads(value):
    with pytest.raises(InvtoolError, match="is not a batch size; give auto"):
        visualize("conv1_2", "0", model="no-such-model.onnx", batch=value, progress=False)


def test_read_channels_are_those_only_channel_and_neuron_terms_read(small):
    """An objective's read channels, per tensor: the union over its channel and neuron terms, an alias and its
    tensor one layer; a layer that a whole-layer term also reads is not listed (every channel is needed)."""
    from invtool.objectives import neuron
    t = relu_input(small, "conv4_1")
    o = channel("conv4_1", 3, t) - 0.5 * neuron("conv4_1", 7, t) + channel("conv3_1", 1) + channel("conv4_1", 3, t)
    assert o.read_channels(small.resolve) == {t: (3, 7), small.resolve("conv3_1"): (1,)}
    assert (o + layer(small.resolve("conv3_1"))).read_channels(small.resolve) == {t: (3, 7)}
    assert on_image(-o, 1).read_channels(small.resolve) == o.read_channels(small.resolve)


def test_tiles_computed_from_their_channels_alone_are_the_same(small, monkeypatch):
    """visualize computes only the channels its tiles read (the last Conv narrowed): the same tiles and scores
    as a run on the whole layer."""
    import invtool.model as model_module
    seen = []
    build = model_module.build
    monkeypatch.setattr(model_module, "build", lambda *a, **k: seen.append(k["channels"]) or build(*a, **k))
    narrowed = visualize("conv2_1", "5,2,9", model=small, size=32, steps=4, **FAST)
    assert {relu_input(small, "conv2_1"): (2, 5, 9)} in seen
    monkeypatch.setattr(model_module.FeatureModel, "variant", lambda self, **k: self)   # every channel
    whole = visualize("conv2_1", "5,2,9", model=small, size=32, steps=4, **FAST)
    assert torch.allclose(narrowed.tiles, whole.tiles, atol=1e-5)
    assert narrowed.record["metrics"]["objective_final"] == pytest.approx(whole.record["metrics"]["objective_final"],
                                                                          rel=1e-4)
