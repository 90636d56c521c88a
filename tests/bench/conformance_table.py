"""ONNX's conformance cases against invtool's converters: pass / refused / = ONNX Runtime / wrong / crash
per op, as a markdown table (the cases and rules are tests/test_conformance.py's).

Run: `.venv/bin/python tests/bench/conformance_table.py` (add `-v` for every case that does not pass).
docs/conformance.md keeps its output. Not a timing bench: `make bench` does not run it.
"""
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

warnings.filterwarnings("ignore")  # onnx's case generators warn about the overflows they test

import test_conformance  # noqa: E402


def main():
    results = test_conformance.run_all(test_conformance.CASES)
    print(test_conformance.table(results))
    if "-v" in sys.argv:
        print()
        print(test_conformance.details(results))


if __name__ == "__main__":
    main()
