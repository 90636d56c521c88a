"""Sizes every model accepts: a detector whose neck joins maps of strides 8 and 16 (the corpus's YOLO-style
net) takes only multiples of 16, so every size invtool chooses is one (coarse scales, octaves, style images)
and a size the user gives is rounded to the nearest that works, with a note."""
import json

import pytest
import torch
from click.testing import CliRunner

from invtool import load_model
from invtool.cli import main
from invtool.errors import InvtoolError
from invtool.geometry import default_layers, fit_to_model, size_step
from invtool.image import write_png
from invtool.optimize import scale_sizes

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec:FutureWarning")


@pytest.fixture(scope="module")
def yolo(corpus_model):
    return load_model(corpus_model("yolo_legacy").path, device="cpu")


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    path = tmp_path_factory.mktemp("sizes") / "in.png"
    write_png(path, torch.rand(1, 3, 72, 72, generator=torch.Generator().manual_seed(0)))
    return path


def test_the_neck_needs_multiples_of_its_alignment(yolo):
    layers = default_layers(yolo, "texture")
    assert size_step(yolo, layers) == 16
    yolo.features(torch.zeros(1, 3, 64, 80), layers)
    with pytest.raises(RuntimeError, match="Sizes of tensors must match"):
        yolo.features(torch.zeros(1, 3, 72, 72), layers)


def test_a_given_size_is_rounded_with_a_note(yolo):
    notes = []
    assert fit_to_model(yolo, default_layers(yolo, "texture"), 72, 104, notes) == (64, 96)
    assert "104x72 rounded to 96x64" in notes[0] and "16 px" in notes[0]
    assert fit_to_model(yolo, default_layers(yolo, "texture"), 80, 96, notes) == (80, 96) and len(notes) == 1


def test_chosen_sizes_are_multiples_of_the_step():
    sizes, _ = scale_sizes(80, 112, 3, 1, step=16)
    assert sizes == [(16, 32), (32, 64), (80, 112)]   # 20 and 28 would break the neck's Concat
    assert scale_sizes(80, 112, 3, 1)[0] == [(20, 28), (40, 56), (80, 112)]   # step 1: as before


COMMANDS = {
    "texture": ["texture", "{picture}", "--size", "80", "--steps", "4"],   # coarse scale 40 -> 32
    "texture-rounded": ["texture", "{picture}", "--steps", "2"],            # the 72 px source -> 64
    "invert": ["invert", "{picture}", "--layer", "/Concat_3_output_0", "--size", "72", "--steps", "2"],
    "style": ["style", "{picture}", "{picture}", "--size", "72", "--style-scale", "0.7", "--steps", "2"],
    "visualize": ["visualize", "--layer", "/Concat_3_output_0", "--channels", "0-1", "--size", "72",
                  "--octaves", "2", "--steps", "2"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_runs_where_the_neck_needs_aligned_sizes(corpus_model, picture, tmp_path, command):
    out = tmp_path / "out.png"
    args = [a.format(picture=picture) for a in COMMANDS[command]]
    result = CliRunner().invoke(main, [*args, "--model", str(corpus_model("yolo_legacy").path), "-o", str(out),
                                       "--optimizer", "adam", "--quiet"])
    assert result.exit_code == 0, result.output
    record = json.loads(out.with_suffix(".json").read_text())
    assert all(h % 16 == 0 and w % 16 == 0 for h, w in record["sizes"]), record["sizes"]
    if command != "texture":
        assert any("rounded to" in n and "16 px" in n for n in record["notes"]), record["notes"]
    if command == "style":
        assert all(h % 16 == 0 and w % 16 == 0 for h, w in record["style_sizes"])


def test_a_size_no_rounding_helps_is_one_line_naming_the_alignment(yolo, monkeypatch):
    from invtool import geometry
    monkeypatch.setattr(geometry, "_takes", lambda *a: False)   # a model that takes no size at all
    with pytest.raises(InvtoolError, match="nor 64x64, the nearest multiple of their alignment 16 px"):
        fit_to_model(yolo, default_layers(yolo, "texture"), 72, 72, [])
