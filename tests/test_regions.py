"""`invtool style --mask`: a style per region through guided Gram matrices (Gatys et al. 2017 §4), on the real
VGG16 at tiny sizes: the formula by hand, two regions taking their own styles, tiles equal to one pass, bad input."""
import json

import numpy as np
import pytest
import skimage.data
import torch
from click.testing import CliRunner

from conftest import ROOT
from invtool import losses
from invtool.cli import main
from invtool.image import read_image, write_png
from invtool.memory import Tiling
from invtool.objectives import layer_weights
from invtool.param import resize_image
from invtool.style import style_objective, transfer_style
from invtool.tiled import evaluate

CAT = ROOT / "examples" / "images" / "chelsea.png"
IHC = ROOT / "examples" / "textures" / "ihc.png"
LAYERS = "conv1_1,conv2_1,conv3_1"


@pytest.fixture(scope="module")
def model(vgg16_model):
    return vgg16_model


def as_image(a: np.ndarray) -> torch.Tensor:
    """uint8 HxW or HxWx3 -> [1, 3, H, W] in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(a)).float() / 255
    x = x[..., None].expand(-1, -1, 3) if x.dim() == 2 else x[..., :3]
    return x.permute(2, 0, 1)[None].contiguous()


@pytest.fixture(scope="module")
def held_out():
    """Two styles nobody tuned on (not in examples/): a crop of the retina (red, vessels) and printed text (grey)."""
    return as_image(skimage.data.retina()[500:900, 500:900]), as_image(skimage.data.page())


def halves(h, w):
    left = torch.zeros(1, 1, h, w)
    left[..., : w // 2] = 1
    return left, 1 - left


# --- the formula -------------------------------------------------------------------------------------------

def test_guided_gram_of_a_hand_made_8x8_case_is_the_formula():
    """G_r = Σ_p m(p)² f(p) f(p)ᵀ / (2 Σ_p m(p)²), computed by hand in numpy, for 4 channels on an 8x8 map and a
    mask that is 1 on the left half, 0.5 on two columns, 0 elsewhere; a constant mask gives the plain Gram."""
    rng = np.random.default_rng(0)
    f = rng.normal(size=(1, 4, 8, 8))
    m = np.zeros((1, 1, 8, 8))
    m[..., :4], m[..., 5:7] = 1.0, 0.5
    by_hand = np.zeros((4, 4))
    for i in range(8):
        for j in range(8):
            by_hand += m[0, 0, i, j] ** 2 * np.outer(f[0, :, i, j], f[0, :, i, j])
    by_hand /= 2 * (m ** 2).sum()   # Σ m² = 8*4*1 + 8*2*0.25 = 36
    ft, mt = torch.from_numpy(f).float(), torch.from_numpy(m).float()
    got = losses.normalize_guided_gram(losses.guided_gram_sum(ft, mt), mt)
    assert got[0].numpy() == pytest.approx(by_hand, rel=1e-5, abs=1e-6)
    assert torch.allclose(losses.normalize_guided_gram(losses.guided_gram_sum(ft, 0.3 * torch.ones(1, 1, 8, 8)),
                                                       0.3 * torch.ones(1, 1, 8, 8)), losses.gram_matrix(ft), rtol=1e-5)
    # the mask at a layer of stride 2 and 4: the mean of the pixels each position stands for; a 10x10 mask's last
    # window at stride 4 holds 2 pixels
    assert losses.pool_mask(mt, 2)[0, 0].numpy() == pytest.approx(m[0, 0].reshape(4, 2, 4, 2).mean(axis=(1, 3)))
    ten = torch.arange(100.0).reshape(1, 1, 10, 10)
    assert float(losses.pool_mask(ten, 4)[0, 0, 2, 2]) == pytest.approx(float(ten[0, 0, 8:, 8:].mean()))


def test_masked_style_objective_is_the_formula_on_vgg16(model):
    """The style term of an 8x8 image with a region mask and a style mask, on conv1_1 (8x8 features) and conv2_1
    (4x4, the masks averaged over 2x2 blocks): Σ_l w_l (Σ m² / M) mean((G_r - A_r)²), everything by hand."""
    g = torch.Generator().manual_seed(1)
    x, style = torch.rand(1, 3, 8, 8, generator=g), torch.rand(1, 3, 8, 8, generator=g)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:7, 1:5] = 1.0
    mask[..., 0, :] = 0.25
    smask = torch.zeros(1, 1, 8, 8)
    smask[..., 4:, :] = 1.0
    layers = {"conv1_1": 0.5, "conv2_1": 0.5}
    obj = style_objective(model, [style], layers, [1.0], masks=[mask], style_masks=[smask])
    with torch.no_grad():
        fx, fs = model.features(x, list(layers)), model.features(style, list(layers))
        got = float(obj(fx, x))

    def guided(f, m):   # numpy, position by position
        f, m = f[0].double().numpy(), m[0, 0].double().numpy()
        total = sum(m[i, j] ** 2 * np.outer(f[:, i, j], f[:, i, j]) for i in range(m.shape[0]) for j in range(m.shape[1]))
        return total / (2 * (m ** 2).sum()), (m ** 2).sum() / m.size

    by_hand = 0.0
    for name, k in (("conv1_1", 1), ("conv2_1", 2)):
        def pooled(a):
            return torch.from_numpy(a[0, 0].numpy().reshape(8 // k, k, 8 // k, k).mean(axis=(1, 3)))[None, None]
        gr, area = guided(fx[name], pooled(mask))
        target, _ = guided(fs[name], pooled(smask))
        by_hand += layers[name] * area * ((gr - target) ** 2).mean()
    assert got == pytest.approx(by_hand, rel=1e-4)


# --- two regions, two styles -------------------------------------------------------------------------------

def gram_loss_to(model, image, style, layers=LAYERS):
    """The plain Gram loss of `image` (a region's crop) against a whole style image: the independent judge."""
    weights = layer_weights(layers, normalise=True)
    obj = style_objective(model, [style], weights, [1.0])
    with torch.no_grad():
        return float(obj(model.features(image, list(weights)), image))


def test_each_region_takes_its_own_style(model, held_out):
    """Left half retina, right half printed text, 40 Adam steps at 64x42: each half's Gram loss (on its crop)
    against its own style is far below (> 2x; ~80x seen) its loss against the other style. Without masks the two
    halves mix both styles (3-4x, from the content alone) - the masks are what separates them. (Adam: its progress
    in 40 steps does not depend on the loss's scale or on a line search.)"""
    retina, page = held_out
    content = read_image(CAT, 64)[0]
    h, w = content.shape[-2:]
    left, right = halves(h, w)
    kw = dict(model=model, size=64, steps=40, optimizer="adam", style_weight=100.0, content_layers="conv2_2",
              style_layers=LAYERS, progress=False)
    run = transfer_style(CAT, [retina, page], masks=[left, right], **kw)
    a = resize_image(retina, 64, 64)   # the styles as the run saw them: longer side the output's
    b = resize_image(page, round(page.shape[-2] * 64 / page.shape[-1]), 64)

    def ratios(x):
        lx, rx = x[..., : w // 2], x[..., w // 2:]
        return (gram_loss_to(model, lx, b) / gram_loss_to(model, lx, a),
                gram_loss_to(model, rx, a) / gram_loss_to(model, rx, b))
    left_ratio, right_ratio = ratios(run.image)
    print(f"masked: left own/other {left_ratio:.1f}x, right {right_ratio:.1f}x")
    assert left_ratio > 2 and right_ratio > 2, (left_ratio, right_ratio)
    mixed = ratios(transfer_style(CAT, [retina, page], **kw).image)
    print(f"unmasked: left {mixed[0]:.2f}x, right {mixed[1]:.2f}x")
    assert max(mixed[0], 1 / mixed[0]) < left_ratio / 4 and max(mixed[1], 1 / mixed[1]) < right_ratio / 4
    rec = run.record
    assert rec["options"]["masks"] == ["tensor", "tensor"]
    assert len(rec["metrics"]["region_style_losses"]) == 2
    assert set(rec["history"]["terms"]) == {"content:conv2_2", *(f"style{i}:{n}" for i in (1, 2)
                                                                 for n in LAYERS.split(","))}


def test_one_mask_over_everything_is_the_plain_run(model):
    """A mask that is 1 everywhere gives exactly the unmasked objective: same image, same losses."""
    kw = dict(model=model, size=32, steps=5, content_layers="conv2_2", style_layers="conv1_1,conv2_1", progress=False)
    plain = transfer_style(CAT, IHC, **kw)
    masked = transfer_style(CAT, IHC, masks=[torch.ones(1, 1, 5, 7)], **kw)
    assert torch.allclose(plain.image, masked.image, atol=1e-5)
    assert masked.record["metrics"]["style_loss"] == pytest.approx(plain.record["metrics"]["style_loss"], rel=1e-4)
    assert masked.record["metrics"]["region_style_losses"] == pytest.approx([plain.record["metrics"]["style_loss"]],
                                                                            rel=1e-4)
    assert any("mask 1: 7x5 resized to 32x21" in n for n in masked.record["notes"])


# --- tiles -------------------------------------------------------------------------------------------------

def test_masked_objective_over_tiles_equals_one_pass(model, held_out):
    """A soft region mask and a style mask, conv1_1 … conv3_1, 64x96 in 32 px tiles (6): loss within 1e-5 and
    gradient within 1e-4 of one pass (rounding: ~1e-7 seen)."""
    retina, page = held_out
    h, w = 64, 96
    ramp = torch.linspace(0, 1, w).expand(1, 1, h, w).contiguous()
    smask = torch.zeros(1, 1, *retina.shape[-2:])
    smask[..., :200, :] = 1
    weights = layer_weights(LAYERS, normalise=True)
    obj = style_objective(model, [resize_image(retina, 80, 80), resize_image(page, 48, 96)], weights, [0.5, 0.5],
                          masks=[ramp, 1 - ramp], style_masks=[resize_image(smask, 80, 80), None])
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(3))
    one = x.clone().requires_grad_(True)
    loss, _ = obj.evaluate(model.features(one, obj.layers), one)
    loss.backward()
    tiling = Tiling.of(model, obj.layers, 32)
    assert len(tiling.tiles(h, w)) == 6
    tiles = x.clone().requires_grad_(True)
    tiled_loss, _ = evaluate(model, obj, tiles, tiles, tiling)
    tiled_loss.backward()
    loss_err = abs(float(tiled_loss.detach()) - float(loss.detach())) / abs(float(loss.detach()))
    grad_err = float((tiles.grad - one.grad).norm() / one.grad.norm())
    print(f"tiled vs one pass: loss {loss_err:.1e}, gradient {grad_err:.1e}")
    assert loss_err <= 1e-5 and grad_err <= 1e-4


def test_a_masked_run_forced_into_tiles_gives_the_untiled_image(model, held_out):
    """`--memory` small enough to force tiles (as tests/test_tiled.py forces them), SGD for 15 steps: the masked
    run's image and metrics are the untiled run's, to rounding."""
    retina, _ = held_out
    content = read_image(CAT, 96)[0]
    left, right = halves(*content.shape[-2:])
    kw = dict(model=model, size=96, steps=15, optimizer="sgd", lr=1e-3, style_layers=LAYERS, content_layers="conv3_2",
              masks=[left, right], progress=False)
    untiled, tiled = (transfer_style(CAT, [retina, IHC], memory=m, **kw) for m in (None, "14M"))
    assert untiled.record["memory"][0]["tiled"] is False
    assert tiled.record["memory"][0]["tiled"] and tiled.record["memory"][0]["tiles"] > 1
    assert tiled.record["history"]["loss"][-1] < 0.7 * tiled.record["history"]["loss"][0]   # it did optimise
    diff = float((tiled.image - untiled.image).abs().max())
    print(f"tiled vs untiled run: max |image difference| {diff:.1e}")
    assert diff <= 1e-3
    got, want = tiled.record["metrics"], untiled.record["metrics"]
    assert got["region_style_losses"] == pytest.approx(want["region_style_losses"], rel=1e-4)
    assert got["style_loss"] == pytest.approx(want["style_loss"], rel=1e-4)


# --- the command line and bad input ------------------------------------------------------------------------

def test_cli_masks_write_a_record_that_lists_them(tmp_path, model):
    left, right = halves(30, 40)
    write_png(tmp_path / "left.png", left)
    write_png(tmp_path / "right.png", right[..., ::2, ::2])   # half the size: resized, with a note
    out = tmp_path / "out" / "regions.png"
    result = CliRunner().invoke(main, ["style", str(CAT), str(IHC), str(CAT), "--mask", str(tmp_path / "left.png"),
                                       "--mask", str(tmp_path / "right.png"), "--style-mask", str(tmp_path / "left.png"),
                                       "--style-mask", str(tmp_path / "left.png"), "-o", str(out), "--size", "40",
                                       "--steps", "2", "--content-layers", "conv2_2", "--style-layers",
                                       "conv1_1,conv2_1", "-q"])
    assert result.exit_code == 0, result.output
    rec = json.loads(out.with_suffix(".json").read_text())
    assert rec["options"]["masks"] == [str(tmp_path / "left.png"), str(tmp_path / "right.png")]
    assert rec["options"]["style_masks"] == [str(tmp_path / "left.png")] * 2
    assert len(rec["metrics"]["region_style_losses"]) == 2
    assert "mask 2 (right.png): 20x15 resized to 40x27 (the output's size)" in rec["notes"]
    assert any(n.startswith("style mask 1 (left.png): 40x30 resized to") for n in rec["notes"])


@pytest.mark.parametrize("args, message", [
    (["--mask", "{white}"], "error: 1 masks for 2 style images; give one --mask per style image"),
    (["--mask", "{white}", "--mask", "{black}"], "error: mask 2 (black.png) is all black: it covers no pixel"),
    (["--mask", "{white}", "--mask", "{white}", "--style-mask", "{white}"], "error: 1 style masks for 2 style images"),
    (["--mask", "{white}", "--mask", "{white}", "--style-loss", "swd"], "error: masks need the gram style loss"),
    (["--mask", "{white}", "--mask", "{white}", "--style-scale", "0.5,1,2"], "error: 3 style scales for 2 style"),
    (["--mask", "{missing}", "--mask", "{white}"], "nope.png: no such file"),
])
def test_cli_bad_masks_are_one_line_and_write_nothing(tmp_path, model, args, message):
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_png(inputs / "white.png", torch.ones(1, 1, 20, 30))
    write_png(inputs / "black.png", torch.zeros(1, 1, 20, 30))
    names = dict(white=inputs / "white.png", black=inputs / "black.png", missing=inputs / "nope.png")
    out = tmp_path / "out" / "x.png"
    result = CliRunner().invoke(main, ["style", str(CAT), str(IHC), str(CAT), *[a.format(**names) for a in args],
                                       "-o", str(out),
                                       "--size", "32", "--steps", "1", "-q"])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message.removeprefix("error: ") in lines[0], result.output
    assert not (tmp_path / "out").exists()
