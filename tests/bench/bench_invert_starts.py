"""Why conv3_1 inversion is hard, and what `--restarts` is for: single runs (invert's defaults with 400 steps and
no early stop, trained VGG16, 128x128) of the same objective from different starting images, with the
loss each run ends at and its PSNR.

Starts: flat gray (the default), four uniform-noise seeds and their average, and three that cheat on
purpose by starting from the original: blurred (Gaussian, sigma 4 px: its colours without its edges),
in grey levels (its edges without its colours), and the original itself. If the cheating starts end far
better, with a lower loss, the layer keeps the image and the optimiser does not find it from nothing;
if the honest starts end at similar losses with different PSNRs, the loss alone does not pick the image.

    python tests/bench/bench_invert_starts.py                 # three images, ~7 min on 2 cores
    python tests/bench/bench_invert_starts.py astronaut conv2_2
"""
import os
import sys
from pathlib import Path

import cv2
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from invtool import load_model  # noqa: E402
from invtool.image import read_image  # noqa: E402
from invtool.inversion import invert  # noqa: E402
from invtool.metrics import psnr  # noqa: E402

IMAGES = ("chelsea", "astronaut", "coffee")
SEEDS = (0, 1, 2, 3)


def blurred(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """`x` `[1, 3, H, W]` blurred by a Gaussian of `sigma` pixels (OpenCV's)."""
    hwc = cv2.GaussianBlur(x[0].permute(1, 2, 0).numpy(), (0, 0), sigma)
    return torch.from_numpy(hwc).permute(2, 0, 1)[None].contiguous()


def starts(original: torch.Tensor) -> dict:
    """Name -> init for `invert`: the honest ones first, then the ones built from the original."""
    return {"gray (default)": "gray", **{f"noise seed {s}": ("noise", s) for s in SEEDS},
            "original blurred 4 px": blurred(original, 4.0),
            "original in grey levels": original.mean(1, keepdim=True).expand_as(original).contiguous(),
            "the original": original}


def main(argv=()):
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))
    images = [a for a in argv if a in IMAGES] or list(IMAGES)
    layer = next((a for a in argv if a not in IMAGES), "conv3_1")
    model = load_model(ROOT / "models" / "vgg16.onnx", device="cpu")
    print(f"{layer}, single runs of invert's defaults at 128x128: the loss each start ends at, and the PSNR of its image")
    print(f"{'image':10} {'start':24} {'loss':>8} {'feat.err':>9} {'PSNR dB':>8}")
    for image in images:
        original = read_image(ROOT / "examples" / "images" / f"{image}.png", (128, 128))[0]
        noise_results = []
        for name, init in starts(original).items():
            init, seed = init if isinstance(init, tuple) else (init, 0)
            run = invert(original, model=model, layers=layer, size=None, init=init, seed=seed, steps=400, tol=0,
                         progress=False)
            if name.startswith("noise"):
                noise_results.append(run.image)
            print(f"{image:10} {name:24} {run.record['final_loss']:8.5f} "
                  f"{run.record['metrics']['feature_error'][layer]:9.5f} {run.record['metrics']['psnr']:8.2f}", flush=True)
            if name == f"noise seed {SEEDS[-1]}":
                mean = sum(noise_results) / len(noise_results)
                print(f"{image:10} {'average of the noise runs':24} {'':8} {'':9} {psnr(original, mean):8.2f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
