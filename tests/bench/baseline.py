"""The seeds' way of optimising an image, written out plainly as the benchmarks' point of comparison.

Every step runs the whole network (all 13 conv layers and the 5 pools of VGG16), the loss is summed over
all 13 conv layers, Adam moves the pixels, which are clamped to [0, 1] after each step; no coarse-to-fine,
no early stop. It uses only `model.features`, not invtool's engine, so the benchmark compares approaches.

Example:
    >>> out = baseline_texture(model, source, steps=200)
    >>> out["image"], out["wall_time"], out["trace"][-1]     # trace: (seconds, step, loss)
"""
import json
import subprocess
import sys
import time

import torch

from invtool import losses

VGG16_CONVS = [f"conv{b}_{k}" for b, n in [(1, 2), (2, 2), (3, 3), (4, 3), (5, 3)] for k in range(1, n + 1)]
VGG16_ALL = VGG16_CONVS + [f"pool{b}" for b in range(1, 6)]


def baseline_optimize(model, loss_fn, init: torch.Tensor, *, steps: int, lr: float = 0.05, every: int = 10,
                      layers=VGG16_ALL) -> dict:
    """Adam on the pixels for `steps` steps, the whole network each step; `loss_fn(features) -> scalar`.

    Returns the final image, wall time and a trace of (seconds since start, step, image) every `every`
    steps, so a benchmark can judge the images with its own evaluator outside the timed loop.
    """
    x = init.detach().clone().to(model.device).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    trace, start = [], time.perf_counter()
    for step in range(1, steps + 1):
        opt.zero_grad()
        loss = loss_fn(model.features(x, layers))
        loss.backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)
        if step % every == 0 or step == steps:
            trace.append((time.perf_counter() - start, step, x.detach().cpu().clone()))
    return {"image": x.detach().cpu(), "wall_time": time.perf_counter() - start, "steps": steps, "trace": trace}


def baseline_texture(model, source: torch.Tensor, *, steps: int, lr: float = 0.05, seed: int = 0,
                     out_size: tuple[int, int] | None = None, every: int = 10) -> dict:
    """Gatys-style texture the seeds' way: Gram loss (Gatys normalisation) on all 13 conv layers, equal
    weights, white-noise start, Adam."""
    with torch.no_grad():
        targets = {n: losses.gram_matrix(f) for n, f in model.features(source.to(model.device), VGG16_CONVS).items()}
    h, w = out_size or source.shape[-2:]
    init = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))

    def loss_fn(feats):
        return sum(losses.gram_loss(losses.gram_matrix(feats[n]), t) for n, t in targets.items()) / len(targets)

    return baseline_optimize(model, loss_fn, init, steps=steps, lr=lr, every=every)


def run_worker(script: str, kind: str, **options) -> dict:
    """Run `script --worker KIND --option value …` in a fresh process (so its peak RSS is its own) and
    return the JSON object it prints last."""
    cmd = [sys.executable, script, "--worker", kind]
    for name, value in options.items():
        cmd += [f"--{name.replace('_', '-')}", str(value)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{kind} {options} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])
