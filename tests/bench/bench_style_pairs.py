"""Style transfer on content/style pairs: does the default keep the content while taking the style?

For each pair (both squashed to 128x128, VGG16, `transfer_style` with its defaults):
- content ratio: the result's content error at the content layer (MSE at conv4_2) over the style image's
  own (the style image taken as the result); 1 means the content is as lost as if the style were pasted;
- style ratio: the result's style loss (Gram, conv1_1 … conv5_1) over the content image's own; 0 means
  the style is fully taken, 1 that nothing changed.
Targets (issue 19), on every pair: content ratio ≤ 0.6 and style ratio ≤ 0.2.

Two sets of pairs: `tuning`, from examples/ (where the default weights were chosen), and `held-out`, whose
images were never looked at while choosing: portraits (matplotlib's Grace Hopper, scikit-image's
cameraman) and a scene (scikit-image's motorcycle) as contents, a retina photograph, a rendered gift box
(matplotlib's sample) and a coins photograph as styles. No painting ships offline with the installed
packages, so none is among the styles.

    python tests/bench/bench_style_pairs.py                        # both sets at the default weights
    python tests/bench/bench_style_pairs.py --style-weights 1,0.1  # a sweep
    python tests/bench/bench_style_pairs.py --sets tuning --sheet out/pairs.png
"""
import argparse
import os
import sys
import time
from pathlib import Path

import matplotlib
import skimage.data
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from invtool import load_model  # noqa: E402
from invtool.geometry import default_layers  # noqa: E402
from invtool.image import contact_sheet, read_image, write_png  # noqa: E402
from invtool.objectives import layer_weights  # noqa: E402
from invtool.style import content_objective, style_objective, transfer_style  # noqa: E402

SKIMAGE = Path(skimage.data.__file__).parent
MPL = Path(matplotlib.get_data_path()) / "sample_data"
EXAMPLES = ROOT / "examples"
SETS = {
    "tuning": [(EXAMPLES / "images" / "chelsea.png", EXAMPLES / "textures" / "ihc.png"),
               (EXAMPLES / "images" / "astronaut.png", EXAMPLES / "textures" / "hubble.png"),
               (EXAMPLES / "images" / "coffee.png", EXAMPLES / "textures" / "gravel.png")],
    "held-out": [(c, s) for c in (MPL / "grace_hopper.jpg", SKIMAGE / "camera.png", SKIMAGE / "motorcycle_left.png")
                 for s in (SKIMAGE / "retina.jpg", MPL / "Minduka_Present_Blue_Pack.png", SKIMAGE / "coins.png")],
}
CONTENT_TARGET, STYLE_TARGET = 0.6, 0.2
SIZE = (128, 128)


def ratios(model, content: torch.Tensor, style: torch.Tensor, result: torch.Tensor) -> tuple[float, float]:
    """(result's content error / the style image's, result's style loss / the content image's)."""
    c_obj = content_objective(model, content, layer_weights(default_layers(model, "content")))
    s_obj = style_objective(model, [style], layer_weights(default_layers(model, "style"), normalise=True), [1.0])
    return c_obj.at(model, result) / c_obj.at(model, style), s_obj.at(model, result) / s_obj.at(model, content)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="tuning,held-out")
    parser.add_argument("--style-weights", default=None, help="comma list; default: transfer_style's default")
    parser.add_argument("--sheet", default=None, help="write a contact sheet of the pairs here (last weight)")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))
    model = load_model(ROOT / "models" / "vgg16.onnx", device="cpu")
    weights = [float(w) for w in args.style_weights.split(",")] if args.style_weights else [None]
    print(f"{'set':9} {'content':20} {'style':28} {'style w':>8} {'content ratio':>13} {'style ratio':>11} {'wall s':>7}")
    for weight in weights:
        sheet = []
        for name in args.sets.split(","):
            worst = [0.0, 0.0]
            for content_path, style_path in SETS[name]:
                content, style = read_image(content_path, SIZE)[0], read_image(style_path, SIZE)[0]
                start = time.perf_counter()
                options = {} if weight is None else {"style_weight": weight}
                run = transfer_style(content, style, model=model, size=None, progress=False, **options)
                wall = time.perf_counter() - start
                c, s = ratios(model, content, style, run.image)
                worst = [max(worst[0], c), max(worst[1], s)]
                shown = run.record["options"]["style_weight"]
                print(f"{name:9} {content_path.name:20} {style_path.name:28} {shown:8g} {c:13.3f} {s:11.3f} "
                      f"{wall:7.1f}", flush=True)
                sheet += [content, style, run.image]
            print(f"  {name}: worst content ratio {worst[0]:.3f} ({'met' if worst[0] <= CONTENT_TARGET else 'MISSED'}"
                  f", <= {CONTENT_TARGET}), worst style ratio {worst[1]:.3f} "
                  f"({'met' if worst[1] <= STYLE_TARGET else 'MISSED'}, <= {STYLE_TARGET})", flush=True)
        if args.sheet:
            write_png(args.sheet, contact_sheet(sheet, ["content", "style", "result"] * (len(sheet) // 3), cols=6))


if __name__ == "__main__":
    main()
