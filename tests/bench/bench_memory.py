"""Print-size results in bounded memory (issue 20): peak RSS and wall time of `invtool texture` and `invtool style`
at large sizes under `--memory 2G`, each run in its own process under /usr/bin/time -v, and the compute overhead
of tiling (seconds per step, tiled / one pass, at 1024x1024 where both fit). One scale at the full size
(`--scales 1 --work-size 0`), so that the seconds per step are the full size's.

    OMP_NUM_THREADS=2 .venv/bin/python tests/bench/bench_memory.py [SIZES] [--steps N] [--memory BUDGET] [--commands style]
        [--device cuda] [--one-pass-at SIZES]

SIZES defaults to 1024,2048; ask for 4096 by hand with --steps 1 (a step there takes over ten minutes on 2 CPU cores).
With `--device cuda` the table adds the GPU's peak (the most bytes torch allocated in any scale, from the record);
the budget is then GPU memory, and `--one-pass-at 1024,2048,4096` times one pass at the sizes where the GPU holds it.
Both commands run on square images (the style's content is the astronaut). Outputs go to a temporary folder.
Targets: 2048² under 3 GB peak RSS, 4096² under 6 GB; tiled/one-pass time per step ≤ 1.5x.
"""
import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EX = ROOT / "examples"
COMMANDS = {"texture": lambda n: ["texture", str(EX / "textures" / "brick.png"), "--out-size", str(n)],
            "style": lambda n: ["style", str(EX / "images" / "astronaut.png"), str(EX / "textures" / "ihc.png"),
                                "--size", str(n)]}


def run(args: list[str], out: Path) -> dict:
    """One command line under /usr/bin/time -v: its record, peak RSS (GiB) and wall time (s)."""
    proc = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "invtool", *args, "-q", "-o", str(out)],
                          cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:   # the command's own last line, before time's report
        return {"error": proc.stderr.split("\tCommand being timed")[0].strip().splitlines()[-1]}
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1)) / 2**20
    wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", proc.stderr).group(1)
    seconds = sum(float(p) * 60**i for i, p in enumerate(reversed(wall.split(":"))))
    return {"record": json.loads(out.with_suffix(".json").read_text()), "rss": rss, "wall": seconds}


def describe(plan: dict) -> str:
    if not plan.get("tiled"):
        return f"one pass, {plan['optimizer']}"
    return f"{plan['tiles']} tiles of {plan['tile']}, halo {plan['halo']}, {plan['optimizer']}" + (
        f" ({plan['history']} pairs)" if plan["optimizer"] in ("lbfgs", "lbfgs-torch") else "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sizes", nargs="?", default="1024,2048")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--memory", default="2G", help="the budget of the bounded runs")
    ap.add_argument("--commands", default=",".join(COMMANDS), help="which of texture,style to run")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--one-pass-at", default="1024", help="sizes at which a run without a budget is timed too")
    opts = ap.parse_args()
    one_pass_at = {int(s) for s in opts.one_pass_at.split(",")}
    gpu = opts.device != "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'command':8} {'size':>5} {'memory':>7} {'peak RSS GiB':>11}" + (f" {'GPU peak GiB':>12}" if gpu else "")
              + f" {'wall s':>7} {'s/step':>7}  plan (last scale)")
        timing = {}
        for n in [int(s) for s in opts.sizes.split(",")]:
            for name in opts.commands.split(","):
                args = COMMANDS[name]
                for memory in [opts.memory] + [None] * (n in one_pass_at):
                    extra = ["--steps", str(opts.steps), "--scales", "1", "--work-size", "0", "--device", opts.device] + (
                        ["--memory", memory] if memory else [])
                    res = run(args(n) + extra, Path(tmp) / f"{name}-{n}.png")
                    if "error" in res:
                        print(f"{name:8} {n:5d} {memory or 'free':>7}  refused: {res['error']}", flush=True)
                        continue
                    rec = res["record"]
                    per_step = rec["wall_time"] / rec["steps"]
                    if memory is None or rec["memory"][-1].get("tiled"):   # a budget that tiled, or none
                        timing[name, n, memory] = per_step
                    peak = f" {max(m.get('peak', 0) for m in rec['memory']) / 2**30:12.2f}" if gpu else ""
                    print(f"{name:8} {n:5d} {memory or 'free':>7} {res['rss']:11.2f}{peak} {res['wall']:7.0f} {per_step:7.2f}"
                          f"  {describe(rec['memory'][-1])}", flush=True)
        for name, n in sorted({(name, n) for name, n, _ in timing}):
            if (name, n, opts.memory) in timing and (name, n, None) in timing:
                print(f"{name}: tiled / one pass at {n}x{n}, seconds per step: "
                      f"{timing[name, n, opts.memory] / timing[name, n, None]:.2f}x")


if __name__ == "__main__":
    main()
