"""How long invtool takes to start: whole processes, the way a person types them (issue 32, item 3).

    OMP_NUM_THREADS=2 python tests/bench/bench_startup.py [--runs 5]
    OMP_NUM_THREADS=2 python tests/bench/bench_startup.py --against /tmp/base   # first step against another checkout

Each command line runs `--runs` times as a fresh process (interpreter start-up and imports included); the
table gives the median wall time and its ratio to `python -c "import torch, onnx"` on the same machine,
the floor any command that runs a model pays. Targets: `--help` and a command's `--help` under 1 s;
`invtool layers MODEL` within 1.4x of the floor.

Then the time to the first step of `invtool texture examples/textures/brick.png`: from the process's start to the
end of its first backward pass (a bootstrap wraps torch.Tensor.backward, so it measures any version of invtool the
same way, and exits there; on the CPU, where this runs: a CUDA run's captured steps call torch.autograd.grad, and
bench_gpu.py times its first step from the engine's record instead). With `--against DIR` (e.g. `git worktree add
/tmp/base d4d8457`, the tree before issue 32's work, with models/vgg16.onnx linked in), the two checkouts take
turns and the ratio is printed (target: at most 0.6). Other processes on the machine move the absolute figures; the
ratios, measured in the same run, move less.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
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
FIRST_STEP = ["texture", "examples/textures/brick.png"]
# runs invtool's CLI from the current directory's checkout; prints the seconds from T0 (the parent's clock at the
# process's start) to the end of the first backward pass, and exits there
BOOTSTRAP = """
import os, sys, time
import torch
backward = torch.Tensor.backward
def first(self, *args, **kwargs):
    backward(self, *args, **kwargs)
    print(f"FIRST {time.time() - float(os.environ['T0'])}", file=sys.stderr, flush=True)
    os._exit(0)
torch.Tensor.backward = first
sys.path.insert(0, os.getcwd())
from invtool.cli import main
main(sys.argv[1:], prog_name="invtool")
"""


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}


def wall(args, runs: int) -> float:
    """Median wall time of `runs` fresh `python ARGS` processes, in seconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], check=True, cwd=ROOT, stdout=subprocess.DEVNULL, env=env())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def first_step(checkout: Path, out: Path) -> float:
    """Seconds from a fresh process's start to the end of the first step of FIRST_STEP, run in `checkout`."""
    start = time.time()
    p = subprocess.run([sys.executable, "-c", BOOTSTRAP, *FIRST_STEP, "-q", "-o", str(out)], cwd=checkout,
                       env={**env(), "T0": repr(start)}, capture_output=True, text=True)
    found = [line.split()[1] for line in p.stderr.splitlines() if line.startswith("FIRST ")]
    if not found:
        sys.exit(f"no first step in {checkout}:\n{p.stderr[-2000:]}")
    return float(found[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--against", type=Path, default=None, help="another checkout, for the first step's ratio")
    args = parser.parse_args()
    medians = {name: wall(argv, args.runs) for name, argv in COMMANDS.items()}
    floor = medians[f'python -c "{FLOOR}"']
    print(f"{'command':40} {'median s':>9} {'x import':>9}   (median of {args.runs} processes, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f})")
    for name, t in medians.items():
        print(f"{name:40} {t:9.2f} {t / floor:9.2f}")
    checkouts = {"this checkout": ROOT} | ({str(args.against): args.against} if args.against else {})
    firsts = {name: [] for name in checkouts}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.runs):   # the checkouts take turns, so that load moves both alike
            for name, path in checkouts.items():
                firsts[name].append(first_step(path, Path(tmp) / "texture.png"))
    print(f"\ntime to the first step of invtool {' '.join(FIRST_STEP)} (median of {args.runs}):")
    for name, times in firsts.items():
        print(f"  {name:40} {statistics.median(times):6.2f} s   ({', '.join(f'{t:.2f}' for t in times)})")
    if args.against:
        ratio = statistics.median(firsts["this checkout"]) / statistics.median(firsts[str(args.against)])
        print(f"  ratio {ratio:.2f} (target: at most 0.6)")


if __name__ == "__main__":
    main()
