"""What `pip install invtool[...]` asks for: ONNX Runtime's CPU and GPU wheels as alternatives, never both."""
import re
import tomllib

import pytest

from conftest import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _names(requirements) -> set[str]:
    return {re.split(r"[\s<>=!~\[;]", r, maxsplit=1)[0].lower() for r in requirements}


def test_core_install_has_no_onnxruntime_wheel():
    """Both wheels install the same `onnxruntime` module: a core dependency on one would fight the other."""
    assert not {"onnxruntime", "onnxruntime-gpu"} & _names(PROJECT["dependencies"])


@pytest.mark.parametrize("extra, wheel, other", [("cpu", "onnxruntime", "onnxruntime-gpu"),
                                                 ("gpu", "onnxruntime-gpu", "onnxruntime")])
def test_each_extra_brings_exactly_one_wheel(extra, wheel, other):
    names = _names(PROJECT["optional-dependencies"][extra])
    assert wheel in names and other not in names


def test_missing_onnxruntime_is_a_one_line_error(monkeypatch):
    import sys

    from invtool import InvtoolError
    from invtool.runtime import ort_session
    monkeypatch.setitem(sys.modules, "onnxruntime", None)   # as if neither wheel were installed
    with pytest.raises(InvtoolError, match=r"pip install 'invtool\[cpu\]'"):
        ort_session(b"")
