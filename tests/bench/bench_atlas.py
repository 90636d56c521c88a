"""The atlas: its dataset pass on ONNX Runtime against the rebuilt torch graph, and 64 channels of VGG16's
conv3_1 at 128x128 in process against 2 Ray workers, with Ray's start-up cost.

Run: `.venv/bin/python tests/bench/bench_atlas.py [STEPS]` (models/vgg16.onnx, examples/images; STEPS
defaults to 16: per-step costs add up linearly, so a short run compares the two as well as the default's
128). Each atlas is built from scratch in a temporary folder; the two must give byte-identical PNGs.
"""
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from invtool import load_model  # noqa: E402
from invtool.atlas import build_atlas  # noqa: E402
from invtool.atlas.examples import activation_maxima  # noqa: E402
from invtool.atlas.runner import Runner  # noqa: E402
from invtool.visualization import relu_input  # noqa: E402

MODEL = ROOT / "models" / "vgg16.onnx"
LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")


def dataset_pass(model):
    """Images/s of the forward pass to conv5_1 (all five layers read) at 224x224, batches of 8, each engine."""
    paths = sorted((ROOT / "examples" / "images").iterdir()) * 8      # 32 images
    tensors = [relu_input(model, n) for n in LAYERS]
    for engine in ("ort", "torch"):
        activation_maxima(model, paths[:8], tensors, size=224, engine=engine)       # warm-up
        _, stats = activation_maxima(model, paths, tensors, size=224, engine=engine)
        print(f"dataset pass on {engine:5s}: {stats['images_per_sec']:6.1f} images/s "
              f"({stats['images']} images at 224x224, {stats['seconds']:.1f} s in the forward passes)")


def atlas_time(steps: int, workers: int) -> tuple[float, dict, Path]:
    folder = Path(tempfile.mkdtemp()) / "atlas"
    t0 = time.perf_counter()
    record = build_atlas(MODEL, folder, layers=["conv3_1"], channels="0-63", size=128, steps=steps, batch=8,
                         workers=workers, progress=False, device="cpu")
    return time.perf_counter() - t0, record, folder


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    dataset_pass(load_model(MODEL, device="cpu"))

    t0 = time.perf_counter()
    with Runner(workers=2) as runner:
        init = runner.startup_seconds
    print(f"Ray start-up: ray.init with 2 workers {init:.1f} s, shut down after {time.perf_counter() - t0:.1f} s")

    serial, _, a = atlas_time(steps, 1)
    parallel, record, b = atlas_time(steps, 2)
    print(f"64 channels of conv3_1 at 128x128, {steps} steps (128 tiles: positive and negative), batches of 8:")
    print(f"  in process: {serial:.1f} s;  --workers 2: {parallel:.1f} s (of which ray.init "
          f"{record['runner']['ray_startup_seconds']:.1f} s)")
    same = all((b / p.relative_to(a)).read_bytes() == p.read_bytes() for p in a.rglob("units/**/*.png"))
    print(f"  PNGs byte-identical: {same}")


if __name__ == "__main__":
    main()
