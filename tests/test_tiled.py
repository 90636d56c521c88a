"""Tiled evaluation (invtool/tiled.py): the loss and gradient over tiles equal one pass over the whole image, on
VGG16 and ResNet18, with zero and circular padding; a run forced into tiles by a budget gives the untiled run's
image; the memory plan; bad input."""
import os
import re
import signal

import pytest
import torch
from click.testing import CliRunner

from conftest import ROOT, VGG16_ONNX
from devices import NEEDS_CUDA
from invtool import InvtoolError, load_model, losses
from invtool.cli import main
from invtool.objectives import Objective
from invtool.style import content_objective, style_objective, transfer_style
from invtool.image import read_image
from invtool.memory import (IMAGE_BUFFERS, LBFGS_BUFFERS, LBFGS_HISTORY, STATE, Tiling, estimate_memory,
                            parse_memory, plan)
from invtool.optimize import optimize
from invtool.texture import synthesize_texture, texture_objective
from invtool.tiled import evaluate, features

BRICK = ROOT / "examples" / "textures" / "brick.png"
CAT = ROOT / "examples" / "images" / "chelsea.png"
DEVICES = ["cpu", pytest.param("cuda", marks=NEEDS_CUDA)]
VGG_STYLE = ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]
RESNET_STYLE = ["conv1", "res2b", "res3b", "res4b", "res5b"]


@pytest.fixture(scope="module")
def models(vgg16_model, resnet18_onnx):
    """name -> device -> FeatureModel: the trained VGG16 and a random-init ResNet18 (other strides and fields)."""
    cache = {}

    def get(name, device="cpu"):
        if (name, device) not in cache:
            cache[name, device] = (vgg16_model if (name, device) == ("vgg16", "cpu") else
                                   load_model(VGG16_ONNX if name == "vgg16" else resnet18_onnx[0], device=device))
        return cache[name, device]
    return get


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def style_like(model, style_layers, content_layer):
    """Gram terms of a style image, a content term, and TV: what `invtool style` optimises."""
    content, style = rand(1, 3, 192, 256, seed=1).to(model.device), rand(1, 3, 160, 160, seed=2).to(model.device)
    tv = Objective(lambda f, x: losses.tv_loss(x), name="tv")
    return (content_objective(model, content, {content_layer: 1.0})
            + 0.01 * style_objective(model, [style], {n: 0.2 for n in style_layers}, [1.0]) + 10 * tv)


def one_pass(model, objective, x, view=lambda x: x):
    """The oracle: loss, terms and gradient from one pass over the whole image."""
    x = x.detach().clone().requires_grad_(True)
    loss, terms = objective.evaluate(model.features(view(x), objective.layers), x)
    loss.backward()
    return float(loss), {k: float(v) for k, v in terms.items()}, x.grad


def over_tiles(model, objective, x, tiling, wrap=False, view=lambda x: x):
    x = x.detach().clone().requires_grad_(True)
    loss, terms = evaluate(model, objective, view(x), x, tiling, wrap=wrap)
    loss.backward()
    return float(loss), {k: float(v) for k, v in terms.items()}, x.grad


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name, style_layers, content_layer", [("vgg16", VGG_STYLE, "conv4_2"),
                                                                ("resnet18", RESNET_STYLE, "res4b")])
def test_tiled_loss_and_gradient_equal_one_pass(models, device, name, style_layers, content_layer):
    """192x256 through conv5_1 (res5b): Gram + content + TV over 64 px tiles (12 on VGG16, whose alignment is 16;
    ResNet18's is 32 and its field far wider) against one pass: loss within 1e-5, gradient within 1e-4."""
    model = models(name, device)
    objective = style_like(model, style_layers, content_layer)
    x = rand(1, 3, 192, 256, seed=3).to(device)
    loss, terms, grad = one_pass(model, objective, x)
    tiling = Tiling.of(model, objective.layers, 64)
    assert len(tiling.tiles(192, 256)) == 12
    tiled_loss, tiled_terms, tiled_grad = over_tiles(model, objective, x, tiling)
    assert abs(tiled_loss - loss) <= 1e-5 * abs(loss)
    assert tiled_terms == pytest.approx(terms, rel=1e-5)
    assert relative(tiled_grad, grad) <= 1e-4
    assert float((tiled_grad - grad).abs().max()) <= 1e-4 * float(grad.abs().max())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name, layers", [("vgg16", ["conv1_1", "pool1", "pool2", "pool3", "pool4"]),
                                          ("resnet18", RESNET_STYLE)])
def test_tiled_with_circular_padding_wraps_the_halo(models, device, name, layers):
    """A tileable texture's objective through the circular-padding network: the tiles' halos wrap around the
    image, and loss and gradient equal one pass of the circular network over the whole image. Seen through a
    random roll (applied to the whole image before tiling) to show that transforms compose."""
    model = models(name, device).variant(padding="circular")
    source = rand(1, 3, 128, 128, seed=4).to(device)
    objective = texture_objective(model, source, layers, [1 / len(layers)] * len(layers))
    x = rand(1, 3, 128, 256, seed=5).to(device)
    roll = lambda img: torch.roll(img, (37, 101), (-2, -1))   # noqa: E731
    loss, _, grad = one_pass(model, objective, x, roll)
    tiling = Tiling.of(model, layers, 128)   # one tile's rows (the network wraps them), two tiles' columns
    assert any(t.crop_cols[0] < 0 or t.crop_cols[1] > 256 for t in tiling.tiles(128, 256, wrap=True))   # wrapped
    tiled_loss, _, tiled_grad = over_tiles(model, objective, x, tiling, wrap=True, view=roll)
    assert abs(tiled_loss - loss) <= 1e-5 * abs(loss)
    assert relative(tiled_grad, grad) <= 1e-4


def test_tiled_features_equal_the_whole_images(models):
    """The target maps computed in tiles (a content image's) equal one pass, each position once."""
    model = models("vgg16")
    x = rand(1, 3, 200, 152, seed=6)   # sides that are no multiple of the stride: the last tiles are partial
    layers = ["conv1_1", "pool2", "conv4_2", "pool4"]
    whole = features(model, x, layers)
    parts = features(model, x, layers, Tiling.of(model, layers, 48))
    for name in layers:
        assert parts[name].shape == whole[name].shape
        assert torch.allclose(parts[name], whole[name], rtol=1e-5, atol=1e-5 * float(whole[name].abs().max()))


def test_the_tiles_gradient_becomes_the_pixels_gradient_without_a_copy(models, monkeypatch):
    """What the memory plan counts on (`IMAGE_BUFFERS`, `STATE`): the tiled step's image-sized gradient is handed
    on in place and becomes the pixels' `.grad` (no second buffer); Adam keeps two moments (its step's one
    temporary comes after the pass's peak)."""
    from invtool.optimize import _make_optimizer

    model = models("vgg16")
    objective = texture_objective(model, rand(1, 3, 48, 48, seed=1), ["conv1_1", "pool1"], [0.5, 0.5])
    x = rand(1, 3, 64, 64, seed=2).requires_grad_(True)
    seen = {}
    original = torch.zeros_like

    def spy(t, *a, **k):   # _gradient's accumulator is the only image-sized zeros_like of the step
        out = original(t, *a, **k)
        if out.shape == x.shape:
            seen["ptr"] = out.data_ptr()
        return out

    monkeypatch.setattr(torch, "zeros_like", spy)
    loss, _ = evaluate(model, objective, x, x, Tiling.of(model, objective.layers, 32))
    monkeypatch.undo()
    loss.backward()
    assert x.grad.data_ptr() == seen["ptr"]
    adam = _make_optimizer("adam", [x], 0.02)
    assert [m.shape for pair in adam.moments for m in pair] == [x.shape, x.shape] and STATE["adam"] == 2


def forced_budget(model, objective, h, w, optimizer="lbfgs"):
    """A budget that leaves the optimiser its state (L-BFGS its 50 pairs) but not one pass over the image, so
    that the run must tile and nothing else changes."""
    image = 4 * 3 * h * w
    state = image * (2 * LBFGS_HISTORY + LBFGS_BUFFERS if optimizer == "lbfgs" else STATE[optimizer])
    whole = estimate_memory(model, list(objective.layers), h, w)
    for share in (0.9, 0.8, 0.7, 0.6, 0.5):
        budget = int(IMAGE_BUFFERS * image + state + share * whole)
        found = plan(model, objective, 1, h, w, optimizer=optimizer, memory=budget)
        if found.tiling is not None and found.optimizer == optimizer and found.history == LBFGS_HISTORY:
            return budget
    pytest.fail("no budget tiles with the optimiser unchanged")


def test_a_style_run_forced_into_tiles_gives_the_untiled_image(models):
    """`invtool style` with SGD, 20 steps, with a budget that forces tiles: the same image as the untiled run (max
    |difference| <= 1e-3; 1e-5 seen), and the record says the tiling, halo, passes and optimiser.

    SGD, because its steps are linear in the gradient: Adam's first steps are ±lr wherever a pixel's gradient is
    at fp32 rounding level, and L-BFGS amplifies rounding over its line searches (see the next test), so with
    them nothing bounds how far two runs drift apart from the tiling's 1e-7 gradient error. (Fused Adam here
    happens to end 1.2e-7 to 1.8e-7 apart in 2 to 16 tiles, on 2 CPU cores.)"""
    model = models("vgg16")
    kwargs = dict(model=model, size=96, steps=20, optimizer="sgd", lr=1e-3, style_layers="conv1_1,conv2_1,conv3_1",
                  content_layers="conv3_2", progress=False)
    untiled, tiled = (transfer_style(CAT, BRICK, memory=m, **kwargs) for m in (None, "14M"))
    assert untiled.record["memory"][0]["tiled"] is False
    info = tiled.record["memory"][0]
    assert info["tiled"] and info["tiles"] > 1 and info["passes"] == 2 and info["halo"][0] % info["align"] == 0
    assert info["optimizer"] == "sgd" and info["budget"] == 14 * 2**20
    assert any("tiles of" in n for n in tiled.record["notes"]) and tiled.record["steps"] == 20
    assert tiled.record["history"]["loss"][-1] < 0.5 * tiled.record["history"]["loss"][0]   # it did optimise
    assert float((tiled.image - untiled.image).abs().max()) <= 1e-3
    assert tiled.record["metrics"] == pytest.approx(untiled.record["metrics"], rel=1e-4)


def test_an_lbfgs_texture_run_forced_into_tiles_follows_the_untiled_one(models):
    """`invtool texture` (L-BFGS) through VGG16 to pool2, 20 steps, forced into tiles with its 50 pairs kept.

    L-BFGS amplifies fp32 rounding over its steps whatever the tiling: the untiled run alone, on 1 thread instead
    of 2, ends up to 1.4e-2 apart (seed 2). So the loss histories agree to 1e-5 for 10 steps, the final Gram
    loss to 1e-3, and the images within that floor."""
    model = models("vgg16")
    layers = ["conv1_1", "pool1", "pool2"]
    objective = texture_objective(model, read_image(BRICK, 64)[0], layers, [1 / 3] * 3)
    budget = forced_budget(model, objective, 96, 128)
    kwargs = dict(model=model, size=64, out_size=(96, 128), layers=layers, steps=20, scales=1, seed=1, progress=False)
    runs = [synthesize_texture(BRICK, memory=m, **kwargs) for m in (None, budget)]
    assert float((runs[0].image - runs[1].image).abs().max()) <= 1e-2
    untiled, tiled = (run.record for run in runs)
    assert untiled["memory"][0]["tiled"] is False and tiled["memory"][0]["tiled"] is True
    assert tiled["memory"][0]["optimizer"] == "lbfgs" and tiled["memory"][0]["history"] == LBFGS_HISTORY
    assert tiled["history"]["loss"][:10] == pytest.approx(untiled["history"]["loss"][:10], rel=1e-5)
    assert tiled["metrics"]["gram_loss"] == pytest.approx(untiled["metrics"]["gram_loss"], rel=1e-3)


def test_interrupt_during_a_tiled_step_keeps_the_last_complete_image(models, monkeypatch):
    """SIGINT in the middle of step 3's tiles: the run ends with the best of steps 1-2, whose loss it reports."""
    model = models("vgg16")
    objective = texture_objective(model, rand(1, 3, 64, 64, seed=9), ["conv1_1", "pool1"], [0.5, 0.5])
    start = rand(1, 3, 96, 96, seed=10)
    budget = forced_budget(model, objective, 96, 96, "adam")
    tiles = plan(model, objective, 1, 96, 96, optimizer="adam", memory=budget).info["tiles"]
    assert tiles > 1
    calls, features_of = [], model.features

    def counting(x, names):
        calls.append(1)
        # a step: the tiles in pass 1, all but the last again in pass 2 (pass 1 kept the last one's graph);
        # after two steps, stop at step 3's first tile
        if len(calls) == 2 * (2 * tiles - 1) + 1:
            os.kill(os.getpid(), signal.SIGINT)
        return features_of(x, names)

    monkeypatch.setattr(model, "features", counting)
    seen = []
    res = optimize(model, objective, start, optimizer="adam", lr=0.02, steps=10, progress=False, memory=budget,
                   callback=lambda s: seen.append((float(s.loss), s.image.clone())))
    assert res.interrupted and res.steps == 2 and len(seen) == 2
    best_loss, best_image = min(seen, key=lambda s: s[0])
    assert res.loss == pytest.approx(best_loss) and torch.equal(res.image, best_image.clamp(0, 1))


def test_plan_trades_lbfgs_history_for_memory_and_gives_way_to_adam(models):
    model = models("vgg16")
    layers = ["conv1_1", "pool1", "pool2"]
    objective = texture_objective(model, rand(1, 3, 64, 64, seed=11), layers, [1 / 3] * 3)
    h = w = 512
    image = 4 * 3 * h * w
    fixed = IMAGE_BUFFERS * image
    # room for 20 pairs in half of what the image's buffers leave: L-BFGS keeps 20
    fewer = plan(model, objective, 1, h, w, memory=fixed + 2 * image * (2 * 20 + LBFGS_BUFFERS))
    assert fewer.optimizer == "lbfgs" and fewer.history == 20 and "20 curvature pairs" in fewer.notes[0]
    adam = plan(model, objective, 1, h, w, memory=fixed + 2 * image * (2 * 4 + LBFGS_BUFFERS))
    assert adam.optimizer == "adam" and adam.lr == 0.02 and "Adam" in adam.notes[0]
    assert adam.tiling is not None   # and the rest is not one pass: tiles
    everything = plan(model, objective, 1, h, w, memory=None)
    assert everything.optimizer == "lbfgs" and everything.history == LBFGS_HISTORY and everything.tiling is None


# --- bad input -----------------------------------------------------------------------------------------------

def test_a_budget_too_small_for_one_tile_names_the_smallest_that_works(models):
    model = models("vgg16")
    objective = style_like(model, VGG_STYLE, "conv4_2")
    with pytest.raises(InvtoolError, match=r"too small for a 256x192 image .* use --memory (\d+)M or more") as e:
        plan(model, objective, 1, 192, 256, memory="8M")
    assert "\n" not in str(e.value)
    smallest = int(re.search(r"--memory (\d+)M", str(e.value)).group(1))
    assert plan(model, objective, 1, 192, 256, memory=f"{smallest}M").tiling is not None   # it works
    with pytest.raises(InvtoolError, match="too small"):
        plan(model, objective, 1, 192, 256, memory=f"{smallest - 1}M")   # and is the smallest


def test_losses_that_do_not_tile_are_refused_when_tiles_are_needed(models):
    model = models("vgg16")
    source = rand(1, 3, 64, 64, seed=12)
    for loss in ("sorted", "swd"):
        objective = texture_objective(model, source, ["conv1_1", "pool1"], [0.5, 0.5], loss=loss)
        with pytest.raises(InvtoolError, match=rf"term {loss}:conv1_1 cannot be evaluated in tiles: the Gram"):
            plan(model, objective, 1, 512, 512, optimizer="adam", memory="64M")
        assert plan(model, objective, 1, 64, 64, optimizer="adam", memory="64M").tiling is None   # fits: runs


def test_sizes_that_overflow_are_refused_before_allocating(models, monkeypatch):
    monkeypatch.setattr(torch, "rand", lambda *a, **k: pytest.fail("allocated"))
    with pytest.raises(InvtoolError, match=r"an output of 100000x100000 has 10,000,000,000 pixels, more than"):
        synthesize_texture(BRICK, model=models("vgg16"), out_size=100000, layers="conv1_1", progress=False)
    monkeypatch.setattr("invtool.style.resize_image", lambda *a, **k: pytest.fail("allocated"))
    with pytest.raises(InvtoolError, match=r"an output of 40000x\d+ has"):
        transfer_style(CAT, BRICK, model=models("vgg16"), size=40000, progress=False)


def test_a_tileable_output_in_tiles_needs_sides_that_are_multiples_of_the_alignment(models):
    model = models("vgg16").variant(padding="circular")
    objective = texture_objective(model, rand(1, 3, 64, 64, seed=13), ["conv1_1", "pool4"], [0.5, 0.5])
    with pytest.raises(InvtoolError, match=r"multiples of 16 .* use --out-size 512x512"):
        plan(model, objective, 1, 500, 500, optimizer="adam", memory="200M", wrap=True)


@pytest.mark.parametrize("text, value", [("2G", 2 * 2**30), ("512M", 512 * 2**20), ("1.5GB", 3 * 2**29),
                                         ("300mib", 300 * 2**20), ("4096", 4096), (2**20, 2**20)])
def test_parse_memory(text, value):
    assert parse_memory(text) == value


@pytest.mark.parametrize("args, message", [
    (["--memory", "lots"], "error: bad memory budget 'lots'; give a size like 2G, 512M or 1.5G"),
    (["--memory", "0G"], "error: bad memory budget '0G'"),
    (["--memory", "1M"], "error: a memory budget of 1 MB is too small for a 256x256 image"),
])
@pytest.mark.parametrize("command", ["texture", "style"])
def test_cli_bad_memory_is_one_line_and_writes_nothing(tmp_path, args, message, command):
    out = tmp_path / "out.png"
    inputs = [str(BRICK)] if command == "texture" else [str(BRICK), str(CAT), "--size", "256"]
    result = CliRunner().invoke(main, [command, *inputs, "-o", str(out), "--steps", "1", "-q", *args])
    assert result.exit_code == 1, result.output
    assert result.output.startswith(message) and result.output.count("\n") == 1 and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []
