"""How long invtool takes to start: whole processes, the way a person types them (issue 32, item 3).

    OMP_NUM_THREADS=2 python tests/bench/bench_startup.py [--runs 5]

Each command line runs `--runs` times as a fresh process (interpreter start-up and imports included); the
table gives the median wall time and its ratio to `python -c "import torch, onnx"` on the same machine,
the floor any command that runs a model pays. Targets: `--help` and a command's `--help` under 1 s;
`invtool layers MODEL` within 1.4x of the floor. Other processes on the machine move the absolute
figures; the ratios, measured in the same run, move less.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FLOOR = "import torch, onnx"
COMMANDS = {
    "invtool --help": ["-m", "invtool", "--help"],
    "invtool texture --help": ["-m", "invtool", "texture", "--help"],
    "invtool layers models/vgg16.onnx": ["-m", "invtool", "layers", str(ROOT / "models" / "vgg16.onnx")],
    f'python -c "{FLOOR}"': ["-c", FLOOR],
}


def wall(args, runs: int) -> float:
    """Median wall time of `runs` fresh `python ARGS` processes, in seconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                       env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")})
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    medians = {name: wall(args, runs) for name, args in COMMANDS.items()}
    floor = medians[f'python -c "{FLOOR}"']
    print(f"{'command':40} {'median s':>9} {'x import':>9}   (median of {runs} processes, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f})")
    for name, t in medians.items():
        print(f"{name:40} {t:9.2f} {t / floor:9.2f}")


if __name__ == "__main__":
    main()
