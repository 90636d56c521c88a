"""Feature visualisation: wall time of a grid of 16 channels of VGG16's conv4_1 at 128x128, as one batched
run (one image per channel, `objectives.on_image`) against 16 separate runs.

Run: `make bench` (or `.venv/bin/python tests/bench/bench_visualize.py`). 2 threads, models/vgg16.onnx.
Prints the full grid's wall time at STEPS steps, how many tiles excite their own channel most, and the
per-step time of the batched run against 16 single-image runs of SHORT steps each (same run, same machine).
"""
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from invtool import load_model  # noqa: E402
from invtool.visualization import visualize  # noqa: E402

LAYER, CHANNELS, SIZE = "conv4_1", list(range(16)), 128
STEPS = 128     # the grid (the README's picture uses this budget)
SHORT = 8       # steps per run in the batched-vs-separate comparison


def wall(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    torch.set_num_threads(2)
    model = load_model(ROOT / "models" / "vgg16.onnx", device="cpu")
    kwargs = dict(model=model, size=SIZE, progress=False)
    visualize(LAYER, [0], steps=2, **kwargs)   # warm-up: builds the module, first allocations

    batched = wall(lambda: visualize(LAYER, CHANNELS, steps=SHORT, **kwargs)) / SHORT
    separate = sum(wall(lambda c=c: visualize(LAYER, [c], steps=SHORT, **kwargs)) for c in CHANNELS) / SHORT
    print(f"per step, 16 tiles of {LAYER} at {SIZE}x{SIZE}: one batched run {batched:.2f} s, "
          f"16 separate runs {separate:.2f} s -> batching is {separate / batched:.2f}x faster")

    t = time.perf_counter()
    run = visualize(LAYER, CHANNELS, steps=STEPS, **kwargs)
    total = time.perf_counter() - t
    print(f"grid of 16 channels of {LAYER} at {SIZE}x{SIZE}, {STEPS} steps: {total:.1f} s wall "
          f"({run.record['steps_per_sec']:.2f} steps/s); tiles that excite their own channel most: "
          f"{run.record['metrics']['own_objective_highest']}")


if __name__ == "__main__":
    main()
