"""Grey-input CNNs end to end: the channel count read from the model, colour given as luminance, every command
on the corpus's OCR-style recogniser (tests/corpus.py, exported by both torch exporters), grey PNGs out, and
the one-line refusals of what makes no sense in grey."""
import json

import cv2
import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from invtool import load_model
from invtool.cli import main
from invtool.errors import InvtoolError
from invtool.geometry import stages
from invtool.image import LUMA, read_input, write_png
from invtool.param import fourier
from invtool.preprocess import resolve_preprocess
from oracle import model_of, run_ort

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec:FutureWarning")


@pytest.fixture(scope="module")
def grey(corpus_model):
    return corpus_model("grey_ocr_legacy")


@pytest.fixture(scope="module")
def colour_png(tmp_path_factory):
    """A 48x64 colour image with distinct channels (so its luminance is not any one channel)."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 48, 64, generator=g)
    x[:, 0] *= 0.3
    path = tmp_path_factory.mktemp("grey-inputs") / "colour.png"
    write_png(path, x)
    return path


@pytest.mark.parametrize("name", ["grey_ocr_legacy", "grey_ocr_dynamo"])
def test_the_channel_count_comes_from_the_model(corpus_model, name):
    model = load_model(corpus_model(name).path, device="cpu")
    assert model.in_channels == 1
    assert [s.stride for s in stages(model)] == [1, 2, 4, 8]


def test_channels_come_from_the_first_convolution_when_the_input_does_not_say(grey, tmp_path):
    proto = grey.proto
    dim = proto.graph.input[0].type.tensor_type.shape.dim[1]
    dim.Clear()
    dim.dim_param = "c"
    path = tmp_path / "symbolic.onnx"
    onnx.save(proto, str(path))
    assert load_model(path, device="cpu").in_channels == 1


def test_a_grey_tensor_goes_in_and_an_rgb_one_is_refused(grey):
    model = load_model(grey.path, device="cpu")
    x = torch.rand(1, 1, 64, 96)
    tap = grey.proto.graph.output[0].name
    ref = run_ort(grey.proto, {"images": x.numpy()}, [tap])[0]
    np.testing.assert_allclose(model.features(x, [tap])[tap].numpy(), ref, atol=1e-4)
    with pytest.raises(InvtoolError, match=r"\[N, 1, H, W\] grey"):
        model.features(torch.rand(1, 3, 64, 96), [tap])


def test_colour_is_read_as_bt601_luminance(colour_png):
    rgb, _ = read_input(colour_png)
    y, notes = read_input(colour_png, channels=1)
    assert y.shape == (1, 1, 48, 64)
    expected = LUMA[0] * rgb[:, 0] + LUMA[1] * rgb[:, 1] + LUMA[2] * rgb[:, 2]
    torch.testing.assert_close(y[:, 0], expected, atol=1e-6, rtol=0)
    assert any("luminance" in n and "0.299" in n for n in notes)
    # OpenCV's own conversion of the file agrees to rounding
    cv = cv2.cvtColor(cv2.imread(str(colour_png)), cv2.COLOR_BGR2GRAY).astype(np.float32) / 255
    assert np.abs(y[0, 0].numpy() - cv).max() <= 1 / 255 + 1e-6


def test_grey_fourier_reproduces_its_image():
    x = torch.rand(2, 1, 24, 30).clamp(0.01, 0.99)
    _, image_fn = fourier(x)
    torch.testing.assert_close(image_fn(), x, atol=1e-5, rtol=0)


def test_single_channel_preprocessing(grey, tmp_path):
    pre = resolve_preprocess("mean=0.5,std=0.25")
    model = load_model(grey.path, preprocess=pre, device="cpu")
    x = torch.rand(1, 1, 32, 32)
    torch.testing.assert_close(model.network_input(x), (x - 0.5) / 0.25)
    with pytest.raises(InvtoolError, match="3 mean values .* 1-channel model"):
        load_model(grey.path, preprocess="imagenet", device="cpu")
    with pytest.raises(InvtoolError, match="bgr"):
        load_model(grey.path, preprocess="caffe", device="cpu")
    assert load_model(grey.path, preprocess="tf", device="cpu").network_input(torch.ones(1, 1, 2, 2)).eq(1).all()


COMMANDS = {
    "texture": ["texture", "{colour}", "--size", "64", "--steps", "3"],
    "invert": ["invert", "{colour}", "--size", "64", "--steps", "3"],
    "style": ["style", "{colour}", "{colour}", "--size", "64", "--steps", "3"],
    "visualize": ["visualize", "--layer", "{stage}", "--channels", "0-1", "--size", "48", "--steps", "3"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_runs_on_a_grey_model_and_writes_a_grey_png(grey, colour_png, tmp_path, command):
    out = tmp_path / f"{command}.png"
    stage = stages(load_model(grey.path, device="cpu"))[-1].name
    args = [a.format(colour=colour_png, stage=stage) for a in COMMANDS[command]]
    result = CliRunner().invoke(main, [*args, "--model", str(grey.path), "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    image = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert image.ndim == 2 and image.std() > 0, "a grey PNG that is not flat"
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["model"]["input_channels"] == 1 and "0.299" in record["model"]["grey_input"]
    if command != "visualize":
        assert any("luminance" in n for n in record["notes"])


def test_atlas_and_layers_stages_on_a_grey_model(grey, atlas_images, tmp_path):
    result = CliRunner().invoke(main, ["layers", str(grey.path), "--stages", "--json"])
    assert result.exit_code == 0, result.output
    assert [s["stride"] for s in json.loads(result.output)] == [1, 2, 4, 8]
    out = tmp_path / "atlas"
    result = CliRunner().invoke(main, ["atlas", str(grey.path), "-o", str(out), "--quiet", "--channels", "0-1",
                                       "--size", "32", "--steps", "3", "--images", str(atlas_images),
                                       "--example-size", "32", "--top", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    atlas = json.loads((out / "atlas.json").read_text())
    units = [u for layer in atlas["layers"] for u in json.loads((out / "layers" / f"{layer['slug']}.json").read_text())["units"]]
    images = [out / u[k] for u in units for k in ("positive", "negative")] + [out / u["examples"][0]["crop"] for u in units]
    assert units and all(cv2.imread(str(p), cv2.IMREAD_UNCHANGED).ndim == 2 for p in images)


BAD = {
    "not-an-image": (["invert", "{notes}"], "not an image"),
    "three-means": (["invert", "{colour}", "--preprocess", "mean=0.4/0.5/0.6,std=0.2"], "3 mean values"),
    "preserve-color": (["style", "{colour}", "{colour}", "--preserve-color", "luminance"], "no colour"),
    "bad-field": (["invert", "{colour}", "--preprocess", "mean=a"], "bad preprocessing value"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_for_a_grey_model_is_one_line_and_writes_nothing(grey, colour_png, tmp_path, case):
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    args, message = BAD[case]
    out = tmp_path / "out" / "x.png"
    result = CliRunner().invoke(main, [*[a.format(colour=colour_png, notes=notes) for a in args],
                                       "--model", str(grey.path), "-o", str(out), "--quiet", "--steps", "2"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
    assert not out.parent.exists()


def _tiny(tmp_path, channels=1, extra_input=None, weight_dtype=np.float32):
    """A one-Conv model reading `channels` channels; optionally a second input; weights of `weight_dtype`."""
    w = numpy_helper.from_array(np.ones((2, channels, 3, 3), weight_dtype), "w")
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", channels, "h", "w"])]
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"])]
    if extra_input:
        inputs.append(helper.make_tensor_value_info(extra_input, TensorProto.FLOAT, [1, 3]))
    graph = helper.make_graph(nodes, "tiny", inputs, [helper.make_empty_tensor_value_info("y")], [w])
    path = tmp_path / f"tiny{channels}{extra_input or ''}.onnx"
    onnx.save(model_of(graph, 13), str(path))
    return path


def test_other_channel_counts_and_second_inputs_are_refused_by_name(tmp_path):
    with pytest.raises(InvtoolError, match=r"reads 4 \(RGBA or RGB \+ depth\?\) channels; invtool makes images of 1"):
        load_model(_tiny(tmp_path, 4))
    with pytest.raises(InvtoolError, match=r"reads 8 channels"):
        load_model(_tiny(tmp_path, 8))
    with pytest.raises(InvtoolError, match=r"input 'im_info' \[1, 3\] besides the image 'x'"):
        load_model(_tiny(tmp_path, 1, extra_input="im_info"))


def test_a_probe_that_fails_for_another_reason_than_size_says_it(tmp_path):
    model = load_model(_tiny(tmp_path, 1, weight_dtype=np.float64), device="cpu")
    with pytest.raises(InvtoolError, match="the network fails with: .*(Double|double)") as e:
        model.min_size(["y"])
    assert "4096" not in str(e.value)
