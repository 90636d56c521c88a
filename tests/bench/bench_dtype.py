"""visualize in bfloat16 against float32: the loop's time, and each tile's objective scored again in float32.

Run: `make bench` (or `.venv/bin/python tests/bench/bench_dtype.py`). 2 threads, models/vgg16.onnx.

`visualize`'s default compute dtype is "auto": bfloat16 on a CPU with bfloat16 instructions (AVX512-BF16, AMX),
float32 elsewhere. This bench runs every set of channels both ways with the defaults (64 Adam steps, 128 px,
seed 0) and prints, per set: the loop's seconds in each dtype; the mean over the tiles of the channel objective,
every tile scored by the float32 model (so the two dtypes are judged by one yardstick); and how many tiles
excite their own channel more than any other tile does (scored in float32 too). conv4_1 0-7 is the README's
command; the other sets were not looked at before bfloat16 became the default (held out).
"""
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from invtool import load_model  # noqa: E402
from invtool.model import native_bfloat16  # noqa: E402
from invtool.objectives import channel  # noqa: E402
from invtool.visualization import objective_matrix, relu_input, visualize  # noqa: E402

SETS = [("conv4_1", range(0, 8), "README"), ("conv2_2", range(10, 14), "held out"),
        ("conv3_1", range(40, 44), "held out"), ("conv4_1", range(100, 104), "held out"),
        ("conv5_1", range(200, 204), "held out")]


def scored(model, layer, channels, tiles) -> tuple[float, int]:
    """(the tiles' mean objective, how many excite their own channel most), on `model`."""
    objectives = [channel(layer, c, relu_input(model, layer)) for c in channels]
    m = objective_matrix(model, objectives, tiles)
    n = len(objectives)
    own = sum(all(m[i][i] > m[k][i] for k in range(n) if k != i) for i in range(n))
    return sum(m[i][i] for i in range(n)) / n, own


def main():
    torch.set_num_threads(2)
    path = ROOT / "models" / "vgg16.onnx"
    models = {dtype: load_model(path, device="cpu", dtype=dtype) for dtype in ("float32", "bfloat16")}
    print(f"CPU bfloat16 instructions: {native_bfloat16(torch.device('cpu'))} (without them bfloat16 is emulated)")
    for model in models.values():
        visualize("conv4_1", [0], steps=2, model=model, progress=False)   # warm-up
    print(f"{'layer':8} {'channels':9} {'set':9} {'f32 s':>6} {'bf16 s':>6} {'speed-up':>8} "
          f"{'f32 obj':>8} {'bf16 obj':>8} {'ratio':>6} {'own f32/bf16':>12}")
    for layer, channels, kind in SETS:
        row = {}
        for dtype, model in models.items():
            t = time.perf_counter()
            run = visualize(layer, list(channels), model=model, progress=False)
            row[dtype] = (run.record["wall_time"], time.perf_counter() - t,
                          *scored(models["float32"], layer, channels, run.tiles))
        (t32, _, o32, own32), (t16, _, o16, own16) = row["float32"], row["bfloat16"]
        n = len(channels)
        print(f"{layer:8} {f'{channels.start}-{channels.stop - 1}':9} {kind:9} {t32:6.1f} {t16:6.1f} "
              f"{t32 / t16:8.2f} {o32:8.2f} {o16:8.2f} {o16 / o32:6.3f} {f'{own32}/{n} {own16}/{n}':>12}", flush=True)


if __name__ == "__main__":
    main()
