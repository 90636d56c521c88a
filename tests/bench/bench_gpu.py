"""As fast as the hardware allows (issue #32): one table, on whatever device runs it (its name printed first).

    OMP_NUM_THREADS=2 python tests/bench/bench_gpu.py            # default: under ~6 minutes on 2 CPU cores
    OMP_NUM_THREADS=2 python tests/bench/bench_gpu.py --quick    # a smoke run: ~2 minutes on 2 CPU cores
    python tests/bench/bench_gpu.py --full                       # everything, style at 512² 500 steps included
    python tests/bench/bench_gpu.py --only lbfgs                 # one section: commands, rate, style512, lbfgs

Sections (each row names the command that reproduces it):
1. commands: each default command line (texture brick.png; style chelsea.png ihc.png; invert chelsea.png;
   visualize --layer conv4_1 --channels 0-7) as a subprocess, the whole process: `first step` is the time from
   the process's start to the end of its first step (a bootstrap `-c` script patches the engine's `_Run.record`
   to note it, then runs invtool's CLI as `python -m invtool` would), `loop` the record's wall_time (the
   optimisation loops), `process` start to exit. --quick runs each with --steps 10 (loop times then not the
   defaults'). Reproduce one: `python -m invtool texture examples/textures/brick.png -o /tmp/t.png`.
2. rate: steps/s of the engine at 256² (--quick: 128²) on texture's default layers of VGG16 (conv1_1, pool1-4),
   Adam and L-BFGS, against a bare forward+backward pass of the same layers (captured as a CUDA graph on CUDA,
   as the engine's steps are): the engine's overhead over the model's work. Target on a GPU: within 2x.
3. style512: `invtool style chelsea.png ihc.png --size 512 --steps 500` through the Python API, the loop time
   (neural-style-pt's benchmark; target ≤ 5 s on an H200). On the CPU only with --full.
4. lbfgs: invtool's device-side L-BFGS ("lbfgs") against torch's ("lbfgs-torch") at equal steps, on inputs
   that are not the examples (scikit-image's data: coins, moon, camera, retina, an astronaut crop), the final
   loss of each and their ratio (target: within 10%). Texture and style at --size 96 (--quick 64), invert at
   --size 64, 60 steps (--quick 30), tol 0; --full: each command's default size and steps (invert with tol 0). Reproduce a row with the API, e.g.
   `synthesize_texture("coins.png", size=96, steps=60, optimizer="lbfgs", progress=False)` on
   `skimage.data.coins()` saved as a PNG.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from bench_defaults import COMMANDS, EX  # noqa: E402  (each default command line, one list for both benches)
TEXTURE_LAYERS = ["conv1_1", "pool1", "pool2", "pool3", "pool4"]
# the bootstrap of a timed command: the wall clock at the process's start comes from the parent, the first step's
# end is written to a file, then the CLI runs as `python -m invtool` runs it
BOOTSTRAP = """
import os, sys, time
import invtool.optimize as o
record, path = o._Run.record, os.environ["BENCH_FIRST_STEP"]
def first(self, *args):
    record(self, *args)
    if not os.path.exists(path):
        open(path, "w").write(repr(time.time()))
o._Run.record = first
from invtool.cli import main
sys.argv = ["invtool"] + sys.argv[1:]
main(prog_name="invtool")
"""


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}, torch {torch.__version__})"
    return f"CPU, {torch.get_num_threads()} threads (torch {torch.__version__})"


def commands(args, device: str, tmp: Path) -> list[tuple]:
    rows = []
    for name, argv in COMMANDS.items():
        out, mark = tmp / f"{name}.png", tmp / f"{name}.first"
        extra = ["--steps", "10"] if args.quick else []
        env = {**os.environ, "BENCH_FIRST_STEP": str(mark)}
        start = time.time()
        subprocess.run([sys.executable, "-c", BOOTSTRAP, *argv, *extra, "--device", device, "-q", "-o", str(out)],
                       check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        process = time.time() - start
        first = float(mark.read_text()) - start
        record = json.loads(out.with_suffix(".json").read_text())
        line = " ".join(Path(a).name if "/" in a else a for a in argv + extra)
        rows.append((name, first, record["wall_time"], process, record["steps"], f"invtool {line}"))
        print(f"  {name:10} first step {first:6.1f} s  loop {record['wall_time']:6.1f} s  process {process:6.1f} s"
              f"  {record['steps']:4d} steps  invtool {line}", flush=True)
    return rows


def rate(args, device: str) -> list[tuple]:
    from invtool import load_model
    from invtool.capture import Capture, backend
    from invtool.optimize import optimize
    from invtool.texture import texture_objective

    side, steps = (128, 6) if args.quick else (256, 10)
    model = load_model(ROOT / "models" / "vgg16.onnx", device=device)
    gen = torch.Generator().manual_seed(0)
    source = torch.rand(1, 3, side, side, generator=gen).to(device)
    obj = texture_objective(model, source, TEXTURE_LAYERS, [0.2] * 5)
    start = torch.rand(1, 3, side, side, generator=gen).to(device)
    rows = []
    for optimizer in ("adam", "lbfgs", "lbfgs-torch"):
        lr = 0.02 if optimizer == "adam" else 1.0
        optimize(model, obj, start, optimizer=optimizer, lr=lr, steps=2, progress=False)   # warm
        res = optimize(model, obj, start, optimizer=optimizer, lr=lr, steps=steps, progress=False)
        rows.append((f"engine, {optimizer}", res.steps_per_sec, res.memory[0].get("graphs", "")))
    x = start.clone().requires_grad_(True)

    def bare():
        feats = model.features(x, TEXTURE_LAYERS)
        loss = sum(f.square().mean() for f in feats.values())
        return (torch.autograd.grad(loss, x)[0],)

    found = backend(device)
    cap = Capture(found) if found is not None else None
    for _ in range(2 + (cap.warmup + 1 if cap else 0)):   # warm (and capture)
        cap((0,), bare) if cap else bare()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        cap((0,), bare) if cap else bare()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    rows.append(("bare forward+backward" + (" (captured)" if cap else ""), steps / (time.perf_counter() - t), ""))
    for what, sps, graphs in rows:
        print(f"  {what:34} {sps:7.2f} steps/s at {side}²  {graphs}", flush=True)
    return rows


def style512(args, device: str) -> float:
    from invtool.style import transfer_style
    run = transfer_style(EX / "images" / "chelsea.png", [EX / "textures" / "ihc.png"], size=512, steps=500,
                         device=device, progress=False)
    print(f"  style 512², 500 steps: loop {run.record['wall_time']:.1f} s "
          f"(invtool style chelsea.png ihc.png --size 512 --steps 500)", flush=True)
    return run.record["wall_time"]


def held_out(tmp: Path) -> dict[str, Path]:
    """scikit-image's sample images (none of them in examples/), as PNGs, RGB, at most 256 px."""
    from PIL import Image
    from skimage import data

    def rgb(a):
        a = np.asarray(a)
        return np.repeat(a[..., None], 3, -1) if a.ndim == 2 else a[..., :3]
    images = {"coins": data.coins(), "moon": data.moon(), "camera": data.camera(), "retina": data.retina(),
              "astronaut-crop": data.astronaut()[40:296, 120:376]}
    paths = {}
    for name, a in images.items():
        img = Image.fromarray(rgb(a).astype(np.uint8))
        img.thumbnail((256, 256))
        paths[name] = tmp / f"{name}.png"
        img.save(paths[name])
    return paths


def lbfgs(args, device: str, tmp: Path) -> list[tuple]:
    from invtool.inversion import invert
    from invtool.style import transfer_style
    from invtool.texture import synthesize_texture

    img = held_out(tmp)
    # --full: the commands' own defaults (size, steps, scales), invert without its early stop
    side, inv_side, steps = (64, 64, 30) if args.quick else (None, None, None) if args.full else (96, 64, 60)
    sized = {} if args.full else dict(size=side, steps=steps)
    inv_sized = {} if args.full else dict(size=inv_side, steps=steps)
    cases = [("texture", "coins", lambda o: synthesize_texture(img["coins"], optimizer=o, device=device,
                                                                progress=False, **sized)),
             ("style", "camera + retina", lambda o: transfer_style(img["camera"], [img["retina"]], optimizer=o,
                                                                   device=device, progress=False, **sized)),
             ("invert", "moon", lambda o: invert(img["moon"], tol=0.0, optimizer=o, device=device, progress=False,
                                                 **inv_sized))]
    if not args.quick:
        cases += [("texture", "astronaut-crop", lambda o: synthesize_texture(img["astronaut-crop"], optimizer=o,
                                                                             device=device, progress=False, **sized))]
    if args.full:
        cases += [("style", "astronaut-crop + coins",
                   lambda o: transfer_style(img["astronaut-crop"], [img["coins"]], optimizer=o, device=device,
                                            progress=False)),
                  ("invert", "camera", lambda o: invert(img["camera"], tol=0.0, optimizer=o, device=device,
                                                        progress=False))]
    rows = []
    for command, inputs, run in cases:
        got = {}
        for optimizer in ("lbfgs-torch", "lbfgs"):
            t = time.perf_counter()
            r = run(optimizer).record
            got[optimizer] = (r["final_loss"], r["steps"], time.perf_counter() - t)
        (torch_loss, steps_t, time_t), (dev_loss, steps_d, time_d) = got["lbfgs-torch"], got["lbfgs"]
        ratio = dev_loss / torch_loss
        size = (inv_side if command == "invert" else side) or "default"
        rows.append((command, inputs, size, steps_d, torch_loss, dev_loss, ratio))
        print(f"  {command:8} {inputs:24} {size!s:>7} px {steps_d:4d}/{steps_t:<4d} steps  torch {torch_loss:11.5g}  "
              f"device {dev_loss:11.5g}  device/torch {ratio:5.3f}  ({time_t:.0f} s, {time_d:.0f} s)", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes and fewer steps: a smoke run")
    size.add_argument("--full", action="store_true", help="everything, style at 512² 500 steps on the CPU too")
    parser.add_argument("--only", choices=["commands", "rate", "style512", "lbfgs"], default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    print(f"device: {device_name(args.device)}", flush=True)
    sections = [args.only] if args.only else ["commands", "rate", "style512", "lbfgs"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "commands" in sections:
            print("default command lines (subprocesses; first step = process start to the end of step 1):")
            commands(args, args.device, tmp)
        if "rate" in sections:
            print("steps/s against a bare forward+backward of the same layers (texture's, VGG16):")
            rate(args, args.device)
        if "style512" in sections:
            if args.device.startswith("cuda") or args.full or args.only == "style512":
                style512(args, args.device)
            else:
                print("style 512², 500 steps: skipped on the CPU (--full or --only style512 runs it)")
        if "lbfgs" in sections:
            print("L-BFGS at equal steps, held-out inputs (scikit-image data): final loss, torch's vs invtool's:")
            lbfgs(args, args.device, tmp)


if __name__ == "__main__":
    main()
