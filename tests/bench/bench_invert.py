"""Feature inversion on held-out images: quality and time of `invtool invert`'s default, beside the previous
default measured in the same run.

The six images are scikit-image's motorcycle_left, retina, camera, coins, moon and clock_motion. They were
chosen before the defaults changed and none of them is in examples/: the defaults (one run of at most 600
steps, early stop at 1e-3 over 20 steps) were set on examples/images, and these images only judge them.
Each is squashed to 128x128 and inverted from VGG16's conv1_1 … conv5_1 with no option but the layer; the
table gives Mahendran & Vedaldi's normalised feature error ‖Φ(x) − Φ(x₀)‖² / ‖Φ(x₀)‖², PSNR, SSIM, steps
and wall time, then the targets of issue 19:

- feature error ≤ 0.02 at conv3_1 and below, ≤ 0.05 at conv4_1 and conv5_1;
- PSNR ≥ 30 dB at conv1_1 and ≥ 25 dB at conv2_1;
- at least 4x less wall time than the previous default.

The previous default (4 runs of 400 L-BFGS steps, 12 noisy runs of 150, one of 50: 3450 steps, ~4 min per
image at conv3_1 on 2 cores) is the code of commit PREVIOUS, extracted with `git archive` into
.cache/invtool-previous and run in a subprocess on the same model. `--restarts 4` (the search, now
optional) is measured too. Both cost minutes per image, so by default they run at conv3_1 only, the layer
the previous default was tuned for:

    python tests/bench/bench_invert.py                     # new default everywhere; previous and search at conv3_1
    python tests/bench/bench_invert.py --previous-layers all --search-layers conv3_1,conv5_1
    python tests/bench/bench_invert.py --images moon,coins --layers conv3_1
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import skimage.data
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from invtool import load_model  # noqa: E402
from invtool.image import read_image, write_png  # noqa: E402
from invtool.inversion import invert  # noqa: E402

HELD_OUT = {"motorcycle": "motorcycle_left.png", "retina": "retina.jpg", "camera": "camera.png",
            "coins": "coins.png", "moon": "moon.png", "clock": "clock_motion.png"}
LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
FEATURE_ERROR_TARGET = {"conv1_1": 0.02, "conv2_1": 0.02, "conv3_1": 0.02, "conv4_1": 0.05, "conv5_1": 0.05}
PSNR_TARGET = {"conv1_1": 30.0, "conv2_1": 25.0}
SPEEDUP_TARGET = 4.0
SIZE = (128, 128)
PREVIOUS = "85e5707"   # the last commit whose invert default was the 3450-step search
PREVIOUS_DIR = ROOT / ".cache" / "invtool-previous"
MODEL = ROOT / "models" / "vgg16.onnx"

# run inside the previous code's tree: its invert with its defaults, the figures as JSON
PREVIOUS_RUNNER = """
import json, sys, time, torch
from invtool import load_model
from invtool.image import read_image
from invtool.inversion import invert
torch.set_num_threads(int(sys.argv[4]))
model = load_model(sys.argv[1], device="cpu")
src = read_image(sys.argv[2])[0]
start = time.perf_counter()
rec = invert(src, model=model, layers=sys.argv[3], size=None, progress=False).record
print(json.dumps(dict(m=rec["metrics"], steps=rec["steps"], wall=time.perf_counter() - start)))
"""


def held_out(name: str) -> Path:
    """The image at 128x128 as a PNG in .cache, so that both codes read the same 8-bit pixels."""
    path = ROOT / ".cache" / f"held-out-{name}.png"
    if not path.is_file():
        path.parent.mkdir(exist_ok=True)
        write_png(path, read_image(Path(skimage.data.__file__).parent / HELD_OUT[name], SIZE)[0])
    return path


def figures(rec: dict, layer: str, wall: float) -> dict:
    m = rec["metrics"] if "metrics" in rec else rec["m"]
    return dict(fe=m["feature_error"][layer], psnr=m["psnr"], ssim=m["ssim"], steps=rec["steps"], wall=wall)


def run_new(model, image: str, layer: str, **options) -> dict:
    start = time.perf_counter()
    rec = invert(held_out(image), model=model, layers=layer, size=None, progress=False, **options).record
    return figures(rec, layer, time.perf_counter() - start)


def previous_tree() -> Path:
    """The previous default's code, extracted once from git."""
    if not (PREVIOUS_DIR / "invtool").is_dir():
        PREVIOUS_DIR.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", PREVIOUS, "invtool"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(PREVIOUS_DIR)], input=archive, check=True)
    return PREVIOUS_DIR


def run_previous(image: str, layer: str, threads: int) -> dict:
    out = subprocess.run([sys.executable, "-c", PREVIOUS_RUNNER, str(MODEL), str(held_out(image)), layer, str(threads)],
                         cwd=previous_tree(), check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(previous_tree())}).stdout
    rec = json.loads(out.strip().splitlines()[-1])
    return figures(rec, layer, rec["wall"])


def row(who: str, image: str, layer: str, f: dict) -> None:
    print(f"{who:9} {image:11} {layer:8} {f['fe']:9.4f} {f['psnr']:8.2f} {f['ssim']:6.3f} {f['steps']:6d} "
          f"{f['wall']:7.1f}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=",".join(HELD_OUT))
    parser.add_argument("--layers", default=",".join(LAYERS))
    parser.add_argument("--previous-layers", default="conv3_1", help="'all', 'none' or a comma list")
    parser.add_argument("--search-layers", default="conv3_1", help="--restarts 4 at these ('all', 'none', a list)")
    parser.add_argument("--search-images", default=None, help="on these images only (default: all)")
    args = parser.parse_args(argv)
    threads = int(os.environ.get("OMP_NUM_THREADS", 2))
    torch.set_num_threads(threads)
    images, layers = args.images.split(","), args.layers.split(",")

    def chosen(spec):
        return layers if spec == "all" else [] if spec == "none" else [x for x in spec.split(",") if x in layers]

    model = load_model(MODEL, device="cpu")
    print(f"{'run':9} {'image':11} {'layer':8} {'feat.err':>9} {'PSNR dB':>8} {'SSIM':>6} {'steps':>6} {'wall s':>7}")
    table = {}
    for image in images:
        for layer in layers:
            table["default", image, layer] = f = run_new(model, image, layer)
            row("default", image, layer, f)
            if layer in chosen(args.search_layers) and image in (args.search_images or image).split(","):
                table["restarts4", image, layer] = f = run_new(model, image, layer, restarts=4)
                row("restarts4", image, layer, f)
            if layer in chosen(args.previous_layers):
                table["previous", image, layer] = f = run_previous(image, layer, threads)
                row("previous", image, layer, f)

    print("\ntargets for the default, every held-out image:")
    for layer in layers:
        sel = {image: table["default", image, layer] for image in images}
        worst_fe = max(f["fe"] for f in sel.values())
        checks = [f"worst feature error {worst_fe:.4f} {'met' if worst_fe <= FEATURE_ERROR_TARGET[layer] else 'MISSED'}"
                  f" (<= {FEATURE_ERROR_TARGET[layer]})"]
        if layer in PSNR_TARGET:
            worst = min(f["psnr"] for f in sel.values())
            checks.append(f"worst PSNR {worst:.2f} dB {'met' if worst >= PSNR_TARGET[layer] else 'MISSED'} "
                          f"(>= {PSNR_TARGET[layer]:g})")
        prev = [(table["previous", i, layer], sel[i]) for i in images if ("previous", i, layer) in table]
        if prev:
            ratio = min(p["wall"] / n["wall"] for p, n in prev)
            checks.append(f"time: previous / default at least {ratio:.1f}x {'met' if ratio >= SPEEDUP_TARGET else 'MISSED'}"
                          f" (>= {SPEEDUP_TARGET:g}); PSNR {statistics.mean(n['psnr'] for _, n in prev):.2f} dB vs "
                          f"previous {statistics.mean(p['psnr'] for p, _ in prev):.2f}")
        print(f"  {layer:8} mean wall {statistics.mean(f['wall'] for f in sel.values()):5.1f} s; " + "; ".join(checks))


if __name__ == "__main__":
    main()
