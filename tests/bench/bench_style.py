"""Style transfer: invtool's defaults against the seeds' approach (tests/bench/baseline.py), in one run.

The baseline optimises content (MSE at conv4_2) + style (Gram loss averaged over all 13 conv layers) with
Adam through the whole network each step, starting from the content image. invtool runs its defaults
(L-BFGS from the content, Gram on conv1_1..conv5_1, the network cut after conv5_1). Both are judged by the
same evaluator, invtool's default objective with the max-pooling network: content term, style term and
their weighted total, computed on images kept along the way, outside the timed loops. Printed, at 256 and
512 (longer side): steps, wall time, steps/s, the final content and style terms and total of each, and the
time invtool takes to reach the baseline's final total (target: at most 1/3 of the baseline's time).
Each configuration runs in its own process.

    OMP_NUM_THREADS=2 .venv/bin/python tests/bench/bench_style.py [--sizes 256,512] [--baseline-steps 200]
"""
import argparse
import json
import sys
import time
from pathlib import Path

from baseline import run_worker  # the script's folder is on sys.path

ROOT = Path(__file__).resolve().parents[2]
CONTENT = ROOT / "examples" / "images" / "chelsea.png"
STYLE = ROOT / "examples" / "textures" / "ihc.png"
MODEL = ROOT / "models" / "vgg16.onnx"


def worker(kind: str, size: int, steps: int, lr: float) -> dict:
    """One configuration in this process: its evaluator trace (seconds, step, content, style, total)."""
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from baseline import VGG16_CONVS, baseline_optimize

    import invtool
    from invtool import losses
    from invtool.image import read_image
    from invtool.objectives import layer_weights
    from invtool.style import (CONTENT_LAYERS, STYLE_LAYERS, STYLE_WEIGHTS, content_objective, style_objective,
                               transfer_style)

    torch.manual_seed(0)
    model = invtool.load_model(MODEL)
    content, _ = read_image(CONTENT, size)
    style, _ = read_image(STYLE, size)
    weight = STYLE_WEIGHTS["gram"]
    judge_c = content_objective(model, content, layer_weights(CONTENT_LAYERS))
    judge_s = style_objective(model, [style], layer_weights(STYLE_LAYERS, normalise=True), [1.0])

    def judge(img):
        with torch.no_grad():
            f = model.features(img, list(judge_c.layers + judge_s.layers))
            c, s = float(judge_c(f, img)), float(judge_s(f, img))
        return c, s, c + weight * s

    if kind == "baseline":
        with torch.no_grad():
            target_c = model.features(content, ["conv4_2"])["conv4_2"]
            grams = {n: losses.gram_matrix(f) for n, f in model.features(style, VGG16_CONVS).items()}

        def loss_fn(feats):
            s = sum(losses.gram_loss(losses.gram_matrix(feats[n]), g) for n, g in grams.items()) / len(grams)
            return losses.feature_mse(feats["conv4_2"], target_c) + weight * s

        out = baseline_optimize(model, loss_fn, content, steps=steps, lr=lr, every=max(1, steps // 10))
        kept, wall, done = out["trace"], out["wall_time"], out["steps"]
    else:
        kept, start = [], time.perf_counter()

        def keep(step):   # the image after each 5th step, timed; judged after the run
            if step.step % 5 == 0:
                kept.append((time.perf_counter() - start, step.step, step.image.cpu().clone()))

        run = transfer_style(content, style, model=model, size=None, progress=False, callback=keep,
                             **({"steps": steps} if steps else {}))
        wall, done = run.record["wall_time"], run.record["steps"]
        kept.append((wall, done, run.image))
    trace = [(t, s, *judge(img)) for t, s, img in kept]
    best = min(trace, key=lambda r: r[4])
    return {"kind": kind, "size": size, "steps": done, "wall_time": wall, "steps_per_sec": done / wall,
            "trace": trace, "content": best[2], "style": best[3], "total": best[4]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", choices=["baseline", "invtool"])
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--steps", type=int, default=0, help="invtool's steps (0: its default)")
    ap.add_argument("--baseline-steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=0.02, help="the baseline's Adam learning rate")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, int(args.sizes), args.steps, args.lr)))
        return
    if not MODEL.is_file():
        raise SystemExit("models/vgg16.onnx is missing: run `make export-models`")

    print(f"content {CONTENT.name}, style {STYLE.name}; evaluator: invtool's default objective on the max-pool "
          f"VGG16 (content MSE conv4_2 + style weight x Gram conv1_1..conv5_1; lower is better)")
    print(f"{'run':<24}{'steps':>7}{'wall s':>9}{'steps/s':>9}{'content':>10}{'style':>10}{'total':>10}")
    for size in [int(s) for s in args.sizes.split(",")]:
        base = run_worker(__file__, "baseline", sizes=size, steps=args.baseline_steps, lr=args.lr)
        inv = run_worker(__file__, "invtool", sizes=size, steps=args.steps, lr=args.lr)
        for name, r in [(f"baseline {size} (adam)", base), (f"invtool {size} defaults", inv)]:
            print(f"{name:<24}{r['steps']:>7}{r['wall_time']:>9.1f}{r['steps_per_sec']:>9.3f}{r['content']:>10.4g}"
                  f"{r['style']:>10.4g}{r['total']:>10.4g}")
        reach = next((t for t, _, _, _, total in inv["trace"] if total <= base["total"]), None)
        if reach is None:
            print(f"  invtool never reached the baseline's total {base['total']:.4g} (its best: {inv['total']:.4g})")
        else:
            ratio = reach / base["wall_time"]
            print(f"  invtool reached the baseline's final total {base['total']:.4g} after {reach:.1f} s = {ratio:.3f} x "
                  f"the baseline's {base['wall_time']:.1f} s (target <= 0.333: {'met' if ratio <= 1 / 3 else 'MISSED'}); "
                  f"steps/s ratio invtool/baseline {inv['steps_per_sec'] / base['steps_per_sec']:.2f}")


if __name__ == "__main__":
    main()
