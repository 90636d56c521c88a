"""Tileable textures: how visible the wrap-around seams are, on VGG16 (the demo's brick) and ResNet18.

Run: `make bench` (or `.venv/bin/python tests/bench/bench_tile.py [SEEDS]`). 2 threads, the built models.
For each model, SEEDS runs of `texture --tile` (brick, 64 px source, 128x64 output, 60 steps, default
layers), and SEEDS runs at `make demo`'s settings (128 px source, 256x128, the default steps) on each; per run
`metrics.seam_ratios`: mean |first - last column| over the mean difference of neighbouring columns (and the
same for rows), about 1 when the seam is like the interior. One image says
little on brick, whose mortar lines may fall on the seam as anywhere else, so the figures are the mean
over seeds, the seam's percentile among the image's own neighbouring pairs (uniform, mean 0.5, when
the seam is no different from them; near 1 for a real seam), the ratio of all the pairs that the run's
shift symmetry makes equivalent to the seam (`phase_ratios`): the seam's expected ratio, from more samples,
and how many runs have both ratios at most 1.1. For scale, the share of the source photo's own
neighbouring pairs above 1.1 times their mean: how often that bound fails inside an untouched image.
"""
import inspect
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from invtool import load_model  # noqa: E402
from invtool.geometry import alignment, default_layers  # noqa: E402
from invtool.image import read_image  # noqa: E402
from invtool.metrics import neighbour_differences, seam_ratios  # noqa: E402
from invtool.texture import synthesize_texture  # noqa: E402

SOURCE = ROOT / "examples" / "textures" / "brick.png"
DEFAULTS = inspect.signature(synthesize_texture).parameters
DEMO_STEPS = DEFAULTS["steps"].default   # make demo passes none


def seam_percentiles(image: torch.Tensor) -> tuple[float, float]:
    """The share of neighbouring column (row) pairs whose mean difference is below the seam's."""
    return tuple(float((d[:-1] < d[-1]).double().mean()) for d in neighbour_differences(image))


def phase_ratios(image: torch.Tensor, period: int) -> tuple[float, float]:
    """Mean difference of the column (row) pairs that straddle a multiple of `period`, the seam among them, over
    the mean of all pairs. Shifting the image by `period` pixels is a symmetry of the whole tiled run (circular
    network, periodic resize between scales, i.i.d. starting noise, and optimisers that commute with permuting
    pixels), so each of these pairs is distributed exactly as the seam is: their mean estimates the seam's
    expected ratio from one image with several samples instead of one."""
    return tuple(float(d[period - 1::period].mean() / d.mean()) for d in neighbour_differences(image))


def share_above(image: torch.Tensor, bound: float = 1.1) -> tuple[float, float]:
    """The share of an image's neighbouring column (row) pairs, the wrap-around pair left out, whose mean difference
    is above `bound` times the mean: how often a one-pair bound fails on pairs that are no seam."""
    return tuple(float((d[:-1] > bound * d[:-1].mean()).double().mean()) for d in neighbour_differences(image))


def main():
    torch.set_num_threads(2)
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    source, _ = read_image(SOURCE)
    cols, rows = share_above(source)
    print(f"brick.png itself: neighbouring pairs above 1.1x their mean: columns {cols:.2f}, rows {rows:.2f}")
    for label, name, size, out_size, steps in (("vgg16", "vgg16", 64, (64, 128), 60),
                                               ("resnet18", "resnet18", 64, (64, 128), 60),
                                               ("vgg16, make demo's settings", "vgg16", 128, (128, 256), DEMO_STEPS),
                                               ("resnet18, make demo's settings", "resnet18", 128, (128, 256),
                                                DEMO_STEPS)):
        model = load_model(ROOT / "models" / f"{name}.onnx", device="cpu")
        layers = default_layers(model, "texture")
        period = alignment(model, layers) * 2 ** (DEFAULTS["scales"].default - 1)
        ratios, ranks, phases = [], [], []
        for seed in range(seeds):
            image = synthesize_texture(SOURCE, model=model, size=size, out_size=out_size, tile=True, steps=steps,
                                       seed=seed, progress=False).image
            ratios.append(seam_ratios(image))
            ranks.append(seam_percentiles(image))
            phases.append(phase_ratios(image, period))
        cols, rows = (statistics.mean(r[k] for r in ratios) for k in (0, 1))
        pcols, prows = (statistics.mean(r[k] for r in ranks) for k in (0, 1))
        print(f"{label}: seam ratio over {seeds} seeds, columns {cols:.2f} (runs {min(r[0] for r in ratios):.2f}-"
              f"{max(r[0] for r in ratios):.2f}), rows {rows:.2f} ({min(r[1] for r in ratios):.2f}-"
              f"{max(r[1] for r in ratios):.2f}); seam percentile among the image's pairs: columns {pcols:.2f}, "
              f"rows {prows:.2f}; all pairs at the seam's phase (every {period} px): columns "
              f"{statistics.mean(p[0] for p in phases):.2f}, rows {statistics.mean(p[1] for p in phases):.2f}; "
              f"runs with both ratios <= 1.1: {sum(max(r) <= 1.1 for r in ratios)} of {seeds}")


if __name__ == "__main__":
    main()
