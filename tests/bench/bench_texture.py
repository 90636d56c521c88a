"""Texture synthesis: invtool's defaults against the seeds' approach (tests/bench/baseline.py), one run.

Both are judged by the same evaluator, Gatys' Gram loss on conv1_1, pool1..pool4 (`gram_texture_loss`),
computed on images kept along the way, outside the timed loops. Printed:
- the baseline's final evaluator loss after its step budget, its wall time, and the time invtool's
  defaults take to reach that loss (target: at most 1/5 of the baseline's time) at 256x256;
- steps/s and peak RSS of invtool's defaults at 256x256 and 512x512 (a short run: --steps-512; target:
  512 under 4 GB).
Each configuration runs in its own process, so each peak RSS is its own.

    OMP_NUM_THREADS=2 .venv/bin/python tests/bench/bench_texture.py [--baseline-steps 200] [--steps-512 20]
"""
import argparse
import json
import resource
import sys
import time
from pathlib import Path

from baseline import run_worker  # the script's folder is on sys.path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "examples" / "textures" / "brick.png"
MODEL = ROOT / "models" / "vgg16.onnx"


def worker(kind: str, size: int, steps: int, source: str) -> dict:
    """One configuration in this process: its evaluator trace, wall time, steps/s and peak RSS."""
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from baseline import baseline_texture

    import invtool
    from invtool.image import read_image
    from invtool.texture import GATYS_LAYERS, gram_texture_loss, synthesize_texture

    torch.manual_seed(0)
    model = invtool.load_model(MODEL)
    src, _ = read_image(source, size)
    if kind == "baseline":
        out = baseline_texture(model, src, steps=steps, every=max(1, steps // 10))
        trace = [(t, s, gram_texture_loss(model, src, img, GATYS_LAYERS)) for t, s, img in out["trace"]]
        wall, done = out["wall_time"], out["steps"]
    else:
        kept, start = [], time.perf_counter()

        def keep(step):   # the image as it is after each step, timed; judged after the run
            if step.step % 5 == 0 and step.image.shape[-1] == src.shape[-1]:
                kept.append((time.perf_counter() - start, step.step, step.image.cpu().clone()))

        run = synthesize_texture(source, model=model, size=size, progress=False, callback=keep,
                                 **({"steps": steps} if steps else {}))
        wall, done = time.perf_counter() - start, run.record["steps"]   # with the set-up (targets, checks)
        trace = [(t, s, gram_texture_loss(model, src, img, GATYS_LAYERS)) for t, s, img in kept]
        trace.append((wall, done, run.record["metrics"]["gram_loss"]))
    return {"kind": kind, "size": size, "steps": done, "wall_time": wall, "steps_per_sec": done / wall,
            "trace": trace, "final": min(v for _, _, v in trace),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", choices=["baseline", "invtool"])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=0, help="0: invtool's default")
    ap.add_argument("--baseline-steps", type=int, default=200)
    ap.add_argument("--steps-512", type=int, default=20, help="a short 512x512 run: for steps/s and peak RSS")
    ap.add_argument("--source", default=str(SOURCE))
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.size, args.steps, args.source)))
        return
    if not MODEL.is_file():
        raise SystemExit("models/vgg16.onnx is missing: run `make export-models`")

    base = run_worker(__file__, "baseline", size=256, steps=args.baseline_steps, source=args.source)
    inv = run_worker(__file__, "invtool", size=256, steps=0, source=args.source)
    big = run_worker(__file__, "invtool", size=512, steps=args.steps_512, source=args.source)
    reach = next((t for t, _, v in inv["trace"] if v <= base["final"]), None)
    print(f"source {Path(args.source).name}; evaluator: Gatys Gram loss on conv1_1,pool1..pool4 (lower is better)")
    print(f"{'run':<22}{'steps':>7}{'wall s':>9}{'steps/s':>9}{'final loss':>12}{'peak RSS MB':>13}")
    for name, r in [("baseline 256 (adam)", base), ("invtool 256 defaults", inv),
                    (f"invtool 512 ({big['steps']} st.)", big)]:
        print(f"{name:<22}{r['steps']:>7}{r['wall_time']:>9.1f}{r['steps_per_sec']:>9.2f}{r['final']:>12.4g}"
              f"{r['peak_rss_mb']:>13.0f}")
    if reach is None:
        print(f"invtool never reached the baseline's final loss {base['final']:.4g} (its best: {inv['final']:.4g})")
    else:
        ratio = reach / base["wall_time"]
        print(f"invtool reached the baseline's final loss {base['final']:.4g} after {reach:.1f} s = "
              f"{ratio:.3f} x the baseline's {base['wall_time']:.1f} s (target <= 0.2: {'met' if ratio <= 0.2 else 'MISSED'})")
    print(f"invtool's final loss / baseline's: {inv['final'] / base['final']:.3g} at 256")
    print(f"512x512 peak RSS {big['peak_rss_mb'] / 1024:.2f} GB (target < 4 GB: "
          f"{'met' if big['peak_rss_mb'] < 4096 else 'MISSED'})")


if __name__ == "__main__":
    main()
