"""Feature visualisation: wall time of a grid of 16 channels of VGG16's conv4_1 at 128x128, as one batched
run (one image per channel, `objectives.on_image`) against 16 separate runs.

Run: `make bench` (or `.venv/bin/python tests/bench/bench_visualize.py`). 2 threads, models/vgg16.onnx.
Prints the per-step time of the batched run against 16 single-image runs of SHORT steps each (in the
optimisation loop, and over whole calls, which add each run's set-up), then the full grid's wall time at
STEPS steps and how many tiles excite their own channel most (same run, same machine).
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
STEPS = 128     # the default budget of `visualize`
SHORT = 8       # steps per run in the batched-vs-separate comparison


def per_step(channels, kwargs) -> tuple[float, float]:
    """Seconds per step of a SHORT-step run: over the whole call (set-up included) and in its loop."""
    t = time.perf_counter()
    run = visualize(LAYER, channels, steps=SHORT, **kwargs)
    return (time.perf_counter() - t) / SHORT, run.record["wall_time"] / SHORT


def main():
    torch.set_num_threads(2)
    model = load_model(ROOT / "models" / "vgg16.onnx", device="cpu")
    kwargs = dict(model=model, size=SIZE, progress=False, batch=len(CHANNELS))   # one batched run, as before --batch auto
    visualize(LAYER, [0], steps=2, **kwargs)   # warm-up: builds the module, first allocations

    call_b, loop_b = per_step(CHANNELS, kwargs)
    separate = [per_step([c], kwargs) for c in CHANNELS]
    call_s, loop_s = sum(c for c, _ in separate), sum(loop for _, loop in separate)
    print(f"{len(CHANNELS)} tiles of {LAYER} at {SIZE}x{SIZE}, per step: one batched run {loop_b:.2f} s in the "
          f"loop ({call_b:.2f} s per step of the whole {SHORT}-step call), {len(CHANNELS)} separate runs "
          f"{loop_s:.2f} s ({call_s:.2f} s) -> batching is {loop_s / loop_b:.2f}x faster in the loop, "
          f"{call_s / call_b:.2f}x over whole calls")

    t = time.perf_counter()
    run = visualize(LAYER, CHANNELS, steps=STEPS, **kwargs)
    total = time.perf_counter() - t
    print(f"grid of {len(CHANNELS)} channels of {LAYER} at {SIZE}x{SIZE}, {STEPS} steps: {total:.1f} s wall "
          f"({run.record['steps_per_sec']:.2f} steps/s); tiles that excite their own channel most: "
          f"{run.record['metrics']['own_objective_highest']}")


if __name__ == "__main__":
    main()
