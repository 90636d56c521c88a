"""Start-up (issue 32): `invtool --help` and each command's `--help` load no heavy module, and a command loads
only what it uses. Checked in fresh processes through sys.modules; the timings are in
tests/bench/bench_startup.py, not here.
"""
import inspect
import json
import subprocess
import sys

import pytest

from conftest import ROOT, VGG16_ONNX

HEAVY = ("torch", "onnx", "onnxruntime", "skimage", "scipy", "matplotlib", "ray")
COMMANDS = ("layers", "texture", "visualize", "invert", "style", "atlas")

# runs the CLI in this process as `invtool ARGS` would, then prints which of the modules asked for it holds
PROBE = """
import json, sys
from invtool.cli import main
mods, args = json.loads(sys.argv[1]), sys.argv[2:]
try:
    main(args, prog_name="invtool", standalone_mode=False)
except SystemExit as e:
    assert not e.code, e.code
print(json.dumps([m for m in mods if m in sys.modules]))
"""


def loaded(args, modules=HEAVY) -> list[str]:
    """Which of `modules` a fresh process holds after `invtool ARGS`."""
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(modules), *map(str, args)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_import_and_help_load_nothing_heavy():
    out = subprocess.run([sys.executable, "-c", "import json, sys, invtool, invtool.cli; "
                          f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"],
                         check=True, capture_output=True, text=True).stdout
    assert json.loads(out) == []
    assert loaded(["--help"]) == []


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_loads_nothing_heavy(command):
    assert loaded([command, "--help"]) == []


def test_layers_loads_only_torch_and_onnx(vgg16_conv_onnx):
    path, _ = vgg16_conv_onnx
    assert loaded(["layers", path]) == ["torch", "onnx"]


def test_every_default_is_the_apis():
    """The CLI's defaults come from invtool.defaults, and so do the API's: each entry of a command's dict is its
    function's default, and the dict names every optimiser option the function takes (the CLI offers those)."""
    from invtool import defaults
    from invtool.atlas import build_atlas
    from invtool.inversion import invert
    from invtool.style import transfer_style
    from invtool.texture import synthesize_texture
    from invtool.visualization import visualize

    optimiser = {"optimizer", "steps", "lr", "lr_schedule", "tol", "scales", "work_size", "seed", "save_every"}
    for api, params in [(synthesize_texture, defaults.TEXTURE), (visualize, defaults.VISUALIZE),
                        (invert, defaults.INVERT), (transfer_style, defaults.STYLE), (build_atlas, defaults.ATLAS)]:
        signature = inspect.signature(api).parameters
        assert {k: signature[k].default for k in params} == params, api.__name__
        assert optimiser & set(signature) <= set(params), api.__name__
        assert signature["model"].default is defaults.DEFAULT_MODEL


def test_the_optimisers_choices_are_the_clis():
    """What optimize checks against is what the CLI offers (until optimize takes them from invtool.defaults)."""
    from invtool import defaults, optimize

    assert (optimize.OPTIMIZERS, optimize.LR_SCHEDULES, optimize.WORK_SIZE) == (
        defaults.OPTIMIZERS, defaults.LR_SCHEDULES, defaults.WORK_SIZE)


def test_record_has_time_to_first_step(tmp_path):
    """`time_to_first_step`: seconds from the start of the process to the first evaluated step."""
    from click.testing import CliRunner

    from invtool.cli import main

    if not VGG16_ONNX.is_file():
        pytest.skip("needs models/vgg16.onnx (make export-models)")
    out = tmp_path / "t.png"
    result = CliRunner().invoke(main, ["texture", str(ROOT / "examples" / "textures" / "brick.png"), "--model",
                                       str(VGG16_ONNX), "--size", "32", "--steps", "2", "--scales", "1", "-q",
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(out.with_suffix(".json").read_text())
    assert 0 < record["time_to_first_step"]
