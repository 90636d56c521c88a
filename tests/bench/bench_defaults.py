"""How long each command takes with its defaults: the wall time of the command line a new user types,
start to finish (loading the model included), one after another, on the built VGG16.

    OMP_NUM_THREADS=2 python tests/bench/bench_defaults.py

Inputs are the examples' (the times do not depend on the picture, only on sizes and steps); outputs go
to a temporary folder. The target (issue 19) is about a minute each on 2 CPU cores.
"""
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EX = ROOT / "examples"
COMMANDS = {
    "texture": ["texture", str(EX / "textures" / "brick.png")],
    "style": ["style", str(EX / "images" / "chelsea.png"), str(EX / "textures" / "ihc.png")],
    "invert": ["invert", str(EX / "images" / "chelsea.png")],
    "visualize": ["visualize", "--layer", "conv4_1", "--channels", "0-7"],
}


def main():
    print(f"{'command':10} {'wall s':>7} {'steps':>6} {'output':>9}  command line")
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in COMMANDS.items():
            out = Path(tmp) / f"{name}.png"
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "invtool", *args, "-q", "-o", str(out)], check=True, cwd=ROOT)
            wall = time.perf_counter() - start
            record = json.loads(out.with_suffix(".json").read_text())
            h, w = record["sizes"][-1] if record.get("sizes") else (0, 0)
            line = " ".join(Path(a).name if "/" in a else a for a in args)
            print(f"{name:10} {wall:7.1f} {record.get('steps', 0):6d} {f'{w}x{h}':>9}  invtool {line}",
                  flush=True)


if __name__ == "__main__":
    main()
