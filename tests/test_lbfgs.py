"""invtool's device-side L-BFGS (invtool/lbfgs.py): its compact-form product equals the two-loop recursion, it
comes near torch's L-BFGS's losses at equal evaluations (Rosenbrock; a Gram loss on VGG16), restarts cleanly, and
works on every path of the engine (scales, several parameter tensors, batches, held random transforms, tiles,
callbacks, Ctrl-C). The comparison on the commands (texture, style, invert on held-out inputs) is in
tests/bench/bench_gpu.py's lbfgs section."""
import os
import signal

import pytest
import torch

import conftest

from invtool.lbfgs import LBFGS
from invtool.objectives import Objective
from invtool.optimize import optimize
from invtool.param import pyramid
from invtool.transforms import random_roll

LAYERS = ["conv1_1", "pool1", "pool2"]


def gram_objective(model, source, layers=LAYERS):
    return conftest.gram_objective(model, source, layers)


@pytest.fixture(scope="module")
def model(vgg16_model):
    return vgg16_model


def two_loop(g, pairs):
    """Nocedal & Wright's algorithm 7.4, oldest pair first in `pairs`."""
    q, alphas = g.clone(), []
    for s, y in reversed(pairs):
        a = s.dot(q) / y.dot(s)
        alphas.append(a)
        q -= a * y
    s, y = pairs[-1]
    q *= s.dot(y) / y.dot(y)
    for (s, y), a in zip(pairs, reversed(alphas)):
        q += (a - y.dot(q) / y.dot(s)) * s
    return q


def test_the_compact_product_is_the_two_loop_recursion():
    """H g from the ring of pairs (wrapped around twice, so that rows are out of order) equals the two-loop's."""
    n, m = 40, 5
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen, dtype=torch.float64)
    hessian = a @ a.T + n * torch.eye(n, dtype=torch.float64)
    x = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    opt = LBFGS([x], history_size=m)
    f = lambda: 0.5 * x @ hessian @ x - x.sum() + (x ** 4).sum()   # noqa: E731 (curved: pairs differ)
    def closure():
        opt.zero_grad()
        loss = f()
        loss.backward()
        return loss
    for _ in range(14):
        opt.step(closure)
    b = opt._buffers
    kept = int((b["stamp"] >= 0).sum())
    pairs = [(b["S"][i], b["Y"][i]) for i in torch.argsort(b["stamp"])[-kept:]]   # oldest first
    assert int(b["clock"]) > m + 1   # more pairs were kept than the ring holds: it has wrapped
    assert len(pairs) == m   # the ring is full and has wrapped
    g = torch.randn(n, generator=gen, dtype=torch.float64)
    assert torch.allclose(opt._direction(g), two_loop(g, pairs), rtol=1e-10, atol=1e-12)


def rosenbrock(x):
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


def losses_at(opt_name, steps=150):
    x = torch.full((20,), -1.0, dtype=torch.float64, requires_grad=True)
    seen = []

    def closure():
        x.grad = None
        loss = rosenbrock(x)
        loss.backward()
        seen.append(loss.item())
        return loss
    if opt_name == "device":
        opt = LBFGS([x], history_size=10)
        for _ in range(steps):
            opt.step(closure)
    else:
        opt = torch.optim.LBFGS([x], max_iter=20, max_eval=10**6, history_size=10, tolerance_grad=0,
                                tolerance_change=0, line_search_fn="strong_wolfe")
        while len(seen) < steps:
            opt.step(closure)
    return [min(seen[:k]) for k in range(1, steps + 1)]


def test_rosenbrock_as_fast_as_torch():
    """20-d Rosenbrock from (-1, ..., -1): both reach its minimum (below 1e-8) within 150 evaluations (torch's
    strong-Wolfe L-BFGS in about 140; the paths differ on the way, 12.6 against 11.3 at 50 evaluations)."""
    device, ref = losses_at("device"), losses_at("torch")
    assert ref[-1] < 1e-8 and device[-1] < 1e-8, (device[-1], ref[-1])


def camera(size=32):
    """A held-out image: scikit-image's camera, grey as RGB, resized."""
    from skimage import data
    from invtool.param import resize_image
    x = torch.tensor(data.camera(), dtype=torch.float32).div(255)[None, None].expand(1, 3, -1, -1).contiguous()
    return resize_image(x, size, size)


def noise(seed, size=32, n=1):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_a_gram_loss_near_torchs(model):
    """A Gram loss on VGG16 (camera at 32 px, from noise, 60 steps over two scales, 16 then 32 px): within the
    issue's 10% of torch's (measured 25803 against 26119). Before short steps' pairs were left out and the
    extrapolation grew 10x (as torch's), 30373: +16%. The commands on held-out inputs: tests/bench/bench_gpu.py's
    lbfgs section, docs/benchmarks.md."""
    obj = gram_objective(model, camera())
    runs = {o: optimize(model, obj, noise(1), optimizer=o, lr=1.0, steps=60, scales=2, progress=False)
            for o in ("lbfgs", "lbfgs-torch")}
    assert runs["lbfgs"].steps == runs["lbfgs-torch"].steps == 60
    assert runs["lbfgs"].loss <= 1.10 * runs["lbfgs-torch"].loss, {o: r.loss for o, r in runs.items()}


def test_every_path_of_the_engine(model):
    """A pyramid (several tensors), a batch of two, a random transform held for 20 steps, a callback: the loss
    falls, the run is deterministic under its seed, and each scale's record says L-BFGS."""
    obj = gram_objective(model, camera())
    seen = []
    kwargs = dict(optimizer="lbfgs", lr=1.0, steps=30, scales=2, transforms=random_roll(), seed=3, progress=False)
    runs = [optimize(model, obj, pyramid(noise(1, n=2), levels=3), callback=lambda s: seen.append(s.step), **kwargs)
            for _ in range(2)]
    assert runs[0].history == runs[1].history and torch.equal(runs[0].image, runs[1].image)
    assert runs[0].image.shape == (2, 3, 32, 32) and seen == list(range(1, 31)) * 2
    assert min(runs[0].history[15:]) < 0.5 * runs[0].history[15]
    assert [m["optimizer"] for m in runs[0].memory] == ["lbfgs", "lbfgs"]


def test_tiles_give_the_one_pass_path(model):
    """Forced into tiles by a budget, the device L-BFGS follows the one-pass run (the evaluation is exact)."""
    from invtool.memory import IMAGE_BUFFERS, LBFGS_BUFFERS, LBFGS_HISTORY, estimate_memory, plan
    from invtool.texture import texture_objective
    obj = texture_objective(model, camera(64), LAYERS, [1 / 3] * 3)
    image = 4 * 3 * 64 * 64
    whole = estimate_memory(model, LAYERS, 64, 64)
    budget = next(b for share in (0.9, 0.7, 0.5, 0.3)
                  if plan(model, obj, 1, 64, 64, memory=(b := int((IMAGE_BUFFERS + 2 * LBFGS_HISTORY + LBFGS_BUFFERS)
                                                                 * image + share * whole))).tiling is not None)
    one, tiled = (optimize(model, obj, noise(2, 64), optimizer="lbfgs", steps=12, memory=m, progress=False)
                  for m in (None, budget))
    assert tiled.memory[0]["tiled"] and not one.memory[0]["tiled"]
    assert tiled.history == pytest.approx(one.history, rel=1e-3)


def test_interrupt_keeps_the_best_image(model):
    obj = gram_objective(model, camera())

    def sigint(step):
        if step.step == 5:
            os.kill(os.getpid(), signal.SIGINT)

    res = optimize(model, obj, noise(1), optimizer="lbfgs", steps=50, callback=sigint, progress=False)
    assert res.interrupted and res.steps == 5 and res.loss == pytest.approx(min(res.history), rel=1e-6)
    with torch.no_grad():
        assert obj(model.features(res.image, LAYERS), res.image).item() == pytest.approx(res.loss, rel=1e-4)


def test_early_stop_and_a_flat_loss(model):
    """A flat loss: every step is accepted with nothing to learn; tol stops the scale after two windows."""
    flat = Objective(lambda f, x: f["conv1_1"].mean() * 0 + 1.0, ["conv1_1"], name="flat")
    res = optimize(model, flat, noise(1), optimizer="lbfgs", steps=100, tol=1e-3, window=5, progress=False)
    assert res.stopped_early and res.steps == 10


def test_reset_and_a_non_descent_direction_restart_from_the_gradient():
    x = torch.tensor([3.0, -2.0], requires_grad=True)
    opt = LBFGS([x], lr=1.0, history_size=3)

    def closure():
        opt.zero_grad()
        loss = (x ** 2).sum() + x[0] * x[1]
        loss.backward()
        return loss
    for _ in range(6):
        opt.step(closure)
    assert float(closure()) < 1e-3   # a convex quadratic: solved in a few steps
    opt.reset()
    assert bool(opt._buffers["fresh"]) and (opt._buffers["stamp"] < 0).all()
    opt.step(closure)   # a fresh start takes the point as it is
    assert not bool(opt._buffers["fresh"])
