"""`invtool style` on the real VGG16 at tiny sizes: the objective, colour preservation, blends, pooling, the CLI."""
import json

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from conftest import ROOT, VGG16_ONNX
from invtool import InvtoolError, load_model
from invtool.cli import main
from invtool.image import match_histograms, read_image, rgb_to_yuv, yuv_to_rgb
from invtool.param import resize_image
from invtool.objectives import layer_weights
from invtool.start import initial_image
from invtool.style import blend_weights, content_objective, style_objective, transfer_style

CAT = ROOT / "examples" / "images" / "chelsea.png"
COFFEE = ROOT / "examples" / "images" / "coffee.png"
IHC = ROOT / "examples" / "textures" / "ihc.png"
HUBBLE = ROOT / "examples" / "textures" / "hubble.png"
SHALLOW = dict(content_layers="conv2_2", style_layers="conv1_1,conv2_1", progress=False)


@pytest.fixture(scope="module")
def model(vgg16_model):
    return vgg16_model


def style_loss_to(model, image, style, layers=("conv1_1", "conv2_1")):
    """Gatys' Gram loss of `image` against one style image, the independent judge of the blend test."""
    obj = style_objective(model, [style], layer_weights(list(layers), normalise=True), [1.0])
    with torch.no_grad():
        return float(obj(model.features(image, list(layers)), image))


def test_targets_follow_the_size(model):
    """Under coarse-to-fine the content is compared at the size asked: the content itself, resized to any
    size, has zero content loss; and a style image has zero style loss against itself at its own size."""
    content, _ = read_image(CAT, 64)
    obj = content_objective(model, content, {"conv2_2": 1.0})
    for h, w in [(42, 64), (21, 32)]:
        x = resize_image(content, h, w)
        assert float(obj(model.features(x, ["conv2_2"]), x)) == pytest.approx(0.0, abs=1e-6)
    noise = torch.rand(1, 3, 21, 32)
    assert float(obj(model.features(noise, ["conv2_2"]), noise)) > 1.0
    style, _ = read_image(IHC, 48)
    assert style_loss_to(model, style, style) == pytest.approx(0.0, abs=1e-6)


def test_content_equals_style_stays_at_the_content(model):
    """With the content as its own style the start is already optimal (targets at the same size and scale),
    so the result stays at the content; another style moves it well away."""
    content, _ = read_image(CAT, 48)
    same = transfer_style(CAT, CAT, model=model, size=48, steps=10, **SHALLOW)
    other = transfer_style(CAT, IHC, model=model, size=48, steps=10, **SHALLOW)
    assert (same.image - content).abs().mean() < 0.005
    assert (other.image - content).abs().mean() > 0.03
    assert same.record["metrics"]["style_loss"] < 1e-3 * other.record["metrics"]["style_loss"]


def test_content_and_style_terms_each_fall(model):
    run = transfer_style(CAT, IHC, model=model, size=48, init="noise", steps=30, style_weight=0.1, **SHALLOW)
    terms = run.record["history"]["terms"]
    assert set(terms) == {"content:conv2_2", "style:conv1_1", "style:conv2_1"}
    for name, values in terms.items():
        assert values[-1] < 0.6 * values[0], (name, values[0], values[-1])
    # the record's metrics are the two losses of the returned image, by hand: the content's conv2_2 MSE at
    # the output's 48x32, and Gatys' Gram loss against the style at 48x48 (its longer side the output's),
    # 1/2 on each style layer, G = F Fᵀ / (2M)
    x, content, style = run.image, read_image(CAT, 48)[0], read_image(IHC, 48)[0]
    assert x.shape == content.shape == (1, 3, 32, 48)
    layers = ["conv2_2", "conv1_1", "conv2_1"]
    with torch.no_grad():
        fx, fc, fs = (model.features(im, layers) for im in (x, content, style))

    def gram(f):
        f = f[0].flatten(1)
        return f @ f.T / (2 * f.shape[1])
    content_loss = float((fx["conv2_2"] - fc["conv2_2"]).square().mean())
    style_loss = sum(0.5 * float((gram(fx[n]) - gram(fs[n])).square().mean()) for n in ("conv1_1", "conv2_1"))
    metrics = run.record["metrics"]
    assert metrics["content_loss"] == pytest.approx(content_loss, rel=1e-4)
    assert metrics["style_loss"] == pytest.approx(style_loss, rel=1e-3)


def test_preserve_color_luminance_keeps_the_content_chroma(model):
    content, _ = read_image(COFFEE, 48)
    chroma = rgb_to_yuv(content)[:, 1:]
    kw = dict(model=model, size=48, steps=20, style_weight=100.0, **SHALLOW)
    kept = transfer_style(COFFEE, IHC, preserve_color="luminance", **kw)
    plain = transfer_style(COFFEE, IHC, **kw)
    kept_err = (rgb_to_yuv(kept.image)[:, 1:] - chroma).abs().mean()
    plain_err = (rgb_to_yuv(plain.image)[:, 1:] - chroma).abs().mean()
    assert kept_err < 0.01 and plain_err > 3 * kept_err, (float(kept_err), float(plain_err))
    # and the luminance did change: the style was applied
    assert (rgb_to_yuv(kept.image)[:, :1] - rgb_to_yuv(content)[:, :1]).abs().mean() > 0.02


def test_preserve_color_histogram_gives_the_style_the_content_colours(model):
    content, _ = read_image(COFFEE, 48)
    style, _ = read_image(IHC)
    matched = match_histograms(style, content)
    for c in range(3):   # per channel, the matched style's quantiles are the content's
        q = torch.linspace(0.05, 0.95, 7)
        assert torch.quantile(matched[0, c].flatten(), q) == pytest.approx(
            torch.quantile(content[0, c].flatten(), q), abs=0.03)
    run = transfer_style(COFFEE, IHC, model=model, size=48, steps=2, preserve_color="histogram", **SHALLOW)
    assert torch.allclose(run.inputs["style"], matched, atol=1e-6)


def test_yuv_round_trip():
    x = torch.rand(2, 3, 8, 8)
    yuv = rgb_to_yuv(x)
    assert yuv[:, 0] == pytest.approx(0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2], abs=1e-5)
    assert torch.allclose(yuv_to_rgb(yuv), x, atol=1e-3)


def test_style_blend_moves_the_result_monotonically(model):
    """The more weight on a style, the closer the result's statistics come to it and the farther from the other."""
    a, _ = read_image(IHC)
    b, _ = read_image(HUBBLE)
    to_a, to_b = [], []
    for wa in (0.9, 0.5, 0.1):
        run = transfer_style(CAT, [IHC, HUBBLE], model=model, size=40, style_blend=[wa, 1 - wa], style_weight=100.0,
                             steps=25, **SHALLOW)
        side = max(run.image.shape[-2:])
        to_a.append(style_loss_to(model, run.image, resize_image(a, side, side)))
        to_b.append(style_loss_to(model, run.image, resize_image(b, side, side)))
    assert to_a[0] < to_a[1] < to_a[2], to_a
    assert to_b[0] > to_b[1] > to_b[2], to_b


def test_pool_avg_really_swaps_the_pooling(model):
    """The run's own metrics match an average-pooling network, not the max-pooling one it was given."""
    run = transfer_style(CAT, IHC, model=model, size=32, steps=3, pool="avg", content_layers="conv2_1",
                         style_layers="conv2_1", progress=False)
    avg = load_model(VGG16_ONNX, pool="avg", device="cpu")
    feats = avg.features(torch.rand(1, 3, 32, 32), ["conv1_2", "pool1"])
    assert torch.allclose(feats["pool1"], F.avg_pool2d(feats["conv1_2"], 2), atol=1e-4)
    x, content = run.image, read_image(CAT, 32)[0]
    style = read_image(IHC)[0]

    def metrics(m):
        with torch.no_grad():
            f = m.features(x, ["conv2_1"])
            c = content_objective(m, content, {"conv2_1": 1.0})(f, x)
            s = style_objective(m, [style], {"conv2_1": 1.0}, [1.0])(f, x)
        return float(c), float(s)

    got = (run.record["metrics"]["content_loss"], run.record["metrics"]["style_loss"])
    assert got == pytest.approx(metrics(avg), rel=1e-4)
    assert got != pytest.approx(metrics(model), rel=1e-2)
    assert run.record["options"]["pool"] == "avg"


def test_sizes_and_aspect_ratios_are_handled_and_recorded(model):
    """A 4:1 style for a 48x32 output at style scale 0.5: resized to a 24-px longer side it would be 6 px
    high, too small for conv4_1, so it is enlarged to the layers' minimum on its shorter side."""
    wide = read_image(IHC)[0][..., :64, :]   # 256x64
    run = transfer_style(CAT, wide, model=model, size=48, style_scale=0.5, steps=2, content_layers="conv2_2",
                         style_layers="conv1_1,conv4_1", progress=False)
    assert tuple(run.image.shape) == (1, 3, 32, 48)
    (sh, sw), = run.record["style_sizes"]   # [h, w], as every size in a record
    need = model.min_size(["conv1_1", "conv4_1"])
    assert need > 6
    assert sh == need and sw == round(256 * need / 64)
    assert run.record["output_size"] == [32, 48]
    assert any("style 1: 256x64 resized to" in n for n in run.record["notes"])


def test_outputs_past_the_working_size_start_there_and_are_refined(model):
    run = transfer_style(CAT, IHC, model=model, size=64, work_size=32, steps=4, content_layers="conv2_2",
                         style_layers="conv1_1,conv2_1", progress=False)
    h, w = run.image.shape[-2:]
    # the working size halves the output, rounded to the layers' alignment (2 px for conv2_x): 42 -> 21 -> 20
    assert max(h, w) == 64 and run.record["sizes"] == [[20, 32], [h, w]] and (h, w) == (42, 64)
    assert run.record["scale_starts"] == [0, 3]   # the doubling takes a quarter of the working size's steps
    assert any("larger than the working size 32" in n for n in run.record["notes"])


def test_init_modes():
    content, style = torch.rand(1, 3, 8, 12), torch.rand(1, 3, 8, 12)
    noise = torch.rand(1, 3, 8, 12, generator=torch.Generator().manual_seed(3))

    def start(spec):
        return initial_image(spec, content.shape, seed=3, like=content, styles=[style], blend=[1.0])
    assert torch.equal(start("content"), content)
    assert torch.equal(start("noise"), noise)
    assert torch.allclose(start("style"), style)
    assert torch.allclose(start("blend:0.25"), 0.25 * content + 0.75 * noise)
    assert torch.allclose(start("blend:0.25:style"), 0.25 * content + 0.75 * style)
    for bad in ("blend", "blend:2", "blend:x", "blend:0.5:sky", "photo"):
        with pytest.raises(InvtoolError, match="bad init"):
            start(bad)


def test_layer_and_blend_parsing(model):
    """Style layers by objectives.layer_weights' rule, their weights divided by their sum; content layers'
    as given; each layer once."""
    run = transfer_style(CAT, IHC, model=model, size=24, steps=1, content_layers="conv1_1,conv2_1:0.5",
                         style_layers="conv1_1:1,conv2_1:3", progress=False)
    assert run.record["content_layers"] == {"conv1_1": 1.0, "conv2_1": 0.5}
    assert run.record["style_layers"] == {"conv1_1": 0.25, "conv2_1": 0.75}
    assert layer_weights("conv1_1,conv2_1", "style", normalise=True) == {"conv1_1": 0.5, "conv2_1": 0.5}
    assert layer_weights(["conv4_2"]) == {"conv4_2": 1.0}
    assert layer_weights({"conv4_2": 2}) == {"conv4_2": 2.0}
    for bad, message in [("conv1_1:x", "bad weight"), ("", "no style layers"), ("conv1_1,conv1_1", "twice")]:
        with pytest.raises(InvtoolError, match=message):
            layer_weights(bad, "style")
    assert blend_weights("3,1", 2) == pytest.approx([0.75, 0.25])
    assert blend_weights(None, 4) == pytest.approx([0.25] * 4)
    with pytest.raises(InvtoolError, match="2 style blend weights for 3 style images"):
        blend_weights([0.5, 0.5], 3)


def test_cli_writes_image_record_and_report(tmp_path):
    out = tmp_path / "sub" / "styled.png"
    result = CliRunner().invoke(main, ["style", str(CAT), str(IHC), str(HUBBLE), "-o", str(out), "--size", "40",
                                       "--steps", "4", "--content-layers", "conv2_2", "--style-layers",
                                       "conv1_1:1,conv2_1:0.5", "--style-blend", "0.7,0.3", "--init", "blend:0.5",
                                       "--preserve-color", "luminance", "--tv-weight", "1", "--report", "-q"])
    assert result.exit_code == 0, result.output
    rec = json.loads(out.with_suffix(".json").read_text())
    assert rec["command"] == "style" and rec["steps"] == 4
    assert rec["content_layers"] == {"conv2_2": 1.0} and rec["style_layers"] == pytest.approx({"conv1_1": 2 / 3, "conv2_1": 1 / 3})
    assert rec["options"]["style_blend"] == pytest.approx([0.7, 0.3])
    assert set(rec["history"]["terms"]) == {"content:conv2_2", "style1:conv1_1", "style1:conv2_1", "style2:conv1_1",
                                            "style2:conv2_1", "tv"}
    assert rec["output_size"] == [27, 40] and len(rec["style_sizes"]) == 2
    assert out.with_suffix(".html").read_text().count("<img") == 5   # content, 2 styles, result, loss curve
    from invtool.image import read_image as read
    assert tuple(read(out)[0].shape) == (1, 3, 27, 40)


@pytest.mark.parametrize("args, message", [
    (["{missing}"], "no such file"),
    (["{ihc}", "--style-blend", "0.5,0.3,0.2"], "3 style blend weights for 1 style images"),
    (["{ihc}", "--content-layers", "fc7"], "no fully connected layer 'fc7'"),
    (["{ihc}", "--init", "blend:3"], "bad init"),
    (["{ihc}", "--style-layers", "conv1_1:heavy"], "bad weight"),
])
def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    if not VGG16_ONNX.is_file():
        pytest.skip("models/vgg16.onnx is missing")
    out = tmp_path / "x.png"
    args = [a.format(missing=tmp_path / "nope.png", ihc=IHC) for a in args]
    result = CliRunner().invoke(main, ["style", str(CAT), *args, "-o", str(out), "--size", "32", "--steps", "1", "-q"])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_to_overwrite_an_input(tmp_path):
    style = tmp_path / "style.png"
    style.write_bytes(IHC.read_bytes())
    result = CliRunner().invoke(main, ["style", str(CAT), str(style), "-o", str(style), "--steps", "1"])
    assert result.exit_code == 1 and "is the input image" in result.output
    assert style.read_bytes() == IHC.read_bytes()


def test_tv_term_is_per_pixel(model):
    """--tv-weight is "total variation per pixel": the TV term of one-pixel stripes is the hand-computed
    Σ_c (W-1)/W = 3 (W-1)/W whatever the size (it was divided by the pixel count a second time)."""
    for w in (16, 32):
        stripes = (torch.arange(w) % 2).float().expand(1, 3, w, w).contiguous()
        run = transfer_style(stripes, stripes, model=model, size=None, steps=1, optimizer="adam", lr=1e-6,
                             content_weight=0.0, style_weight=0.0, tv_weight=1.0, content_layers="conv1_1",
                             style_layers="conv1_1", progress=False)
        assert run.record["history"]["terms"]["tv"][0] == pytest.approx(3 * (w - 1) / w, rel=1e-4)


def test_each_optimiser_gets_its_own_step_and_swd_runs_on_adam(model):
    """The optimiser's step where none is given (`memory.PIXEL_LR`, as texture takes it): Adam at lr 1.0 on
    pixels in [0, 1] would throw them to the box's corners; and swd, whose random projections change at every
    evaluation, defaults to Adam rather than L-BFGS, whose line search assumes one function."""
    adam = transfer_style(CAT, IHC, model=model, size=32, steps=2, optimizer="adam", **SHALLOW)
    assert adam.record["options"]["optimizer"] == "adam" and adam.record["options"]["lr"] == 0.02
    swd = transfer_style(CAT, IHC, model=model, size=32, steps=2, style_loss="swd", **SHALLOW)
    assert swd.record["options"]["optimizer"] == "adam" and swd.record["options"]["lr"] == 0.02
    gram = transfer_style(CAT, IHC, model=model, size=32, steps=2, **SHALLOW)
    assert gram.record["options"]["optimizer"] == "lbfgs" and gram.record["options"]["lr"] == 1.0


def test_swd_style_moves_the_image_towards_the_style(model):
    """`--style-loss swd` (sliced Wasserstein): its own loss falls from the content start, and the image's Gram
    loss against the style (an independent judge) falls with it, while the content stays recognisable."""
    content, _ = read_image(CAT, 48)
    style, _ = read_image(IHC, 48)
    run = transfer_style(CAT, IHC, model=model, size=48, steps=60, style_loss="swd", seed=1, **SHALLOW)
    history = run.record["history"]["terms"]
    swd_terms = [k for k in history if k.startswith("swd") or "style" in k]
    assert swd_terms, history.keys()
    first, last = run.record["history"]["loss"][0], run.record["final_loss"]
    assert last < 0.8 * first
    assert style_loss_to(model, run.image, style) < 0.8 * style_loss_to(model, content, style)
    assert (run.image - content).abs().mean() < 0.2


def test_style_scale_per_style_image(tmp_path):
    """`--style-scale 0.5,1.0`: one scale per style image (each style's longer side that times the output's), one
    value for all; with `--preserve-color histogram` from the command line. Bad scales are one line, exit 1."""
    if not VGG16_ONNX.is_file():
        pytest.skip("models/vgg16.onnx is missing")
    out = tmp_path / "scaled.png"
    args = ["style", str(CAT), str(IHC), str(HUBBLE), "-o", str(out), "--size", "48", "--steps", "1",
            "--content-layers", "conv2_2", "--style-layers", "conv1_1,conv2_1", "-q"]
    result = CliRunner().invoke(main, [*args, "--style-scale", "0.5,1.0", "--preserve-color", "histogram"])
    assert result.exit_code == 0, result.output
    rec = json.loads(out.with_suffix(".json").read_text())
    assert rec["options"]["style_scale"] == [0.5, 1.0] and rec["options"]["preserve_color"] == "histogram"
    assert [max(s) for s in rec["style_sizes"]] == [24, 48]   # longer sides: 0.5 and 1 times the output's 48
    result = CliRunner().invoke(main, [*args, "--style-scale", "0.5"])
    rec = json.loads(out.with_suffix(".json").read_text())
    assert result.exit_code == 0 and rec["options"]["style_scale"] == 0.5
    assert [max(s) for s in rec["style_sizes"]] == [24, 24]
    for bad, message in [("0.5,1,2", "3 style scales for 2 style images"), ("0,1", "style scale must be positive"),
                         ("big", "bad style scale 'big'")]:
        bad_out = tmp_path / "bad" / "x.png"
        result = CliRunner().invoke(main, [*args[:5], str(bad_out), *args[6:], "--style-scale", bad])
        assert result.exit_code == 1 and result.output.count("\n") == 1 and message in result.output, result.output
        assert not bad_out.parent.exists()
