"""The optimisation engine on the real VGG16 at tiny sizes: descent, scales, determinism, stops, errors."""
import os
import signal

import pytest
import torch

import conftest

from invtool import InvtoolError
from invtool.memory import estimate_memory, plan
from invtool.objectives import Objective
from invtool.optimize import Result, _HeldTransform, _Run, chain, optimize, step_budgets
from invtool.param import fourier, pyramid, resize_image
from invtool.transforms import compose, deterministic, is_random, random_roll

LAYERS = ["conv1_1", "pool1"]


def gram_objective(model, source, layers=LAYERS):
    return conftest.gram_objective(model, source, layers)
SGD_LR = 1e-7   # plain gradient steps: this Gram loss is ~1e8, its gradients are large in pixel units


@pytest.fixture(scope="module")
def model(vgg16_model):
    return vgg16_model


def noise(seed, size=32):
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def stripes(size=32):
    """A smooth coloured pattern, far from noise in Gram terms."""
    t = torch.linspace(0, 6.28, size)
    return (0.5 + 0.4 * torch.stack([t.sin()[None, :] * torch.ones(size, 1), t.cos()[:, None] * torch.ones(1, size),
                                     torch.full((size, size), 0.3)]))[None]


def test_objective_algebra():
    a = Objective(lambda f, x: x.sum(), name="s")
    b = Objective(lambda f, x: f["conv1_1"].mean(), layers=["conv1_1"], name="m")
    total = 2 * a - b / 4 + a
    assert total.names == ["s", "m", "s#2"] and total.layers == ("conv1_1",)
    x, f = torch.ones(1, 3, 2, 2), {"conv1_1": torch.full((1, 2, 2, 2), 8.0)}
    value, terms = total.evaluate(f, x)
    assert value.item() == pytest.approx(2 * 12 - 8 / 4 + 12)
    assert total.terms(f, x) == {"s": 24.0, "m": -2.0, "s#2": 12.0}


@pytest.mark.parametrize("optimizer, lr", [("adam", 0.05), ("sgd", SGD_LR), ("lbfgs", 1.0)])
def test_loss_decreases_and_best_image_is_returned(model, optimizer, lr):
    obj = gram_objective(model, stripes())
    res = optimize(model, obj, noise(1), optimizer=optimizer, lr=lr, steps=15, progress=False)
    assert res.steps == 15 and len(res.history) == 15 and set(res.term_history) == set(LAYERS)
    assert res.loss == pytest.approx(min(res.history), rel=1e-5)
    assert res.loss < 0.5 * res.history[0]
    assert res.image.shape == (1, 3, 32, 32) and 0 <= res.image.min() and res.image.max() <= 1
    # the returned image really has the reported loss
    with torch.no_grad():
        assert obj(model.features(res.image, LAYERS), res.image).item() == pytest.approx(res.loss, rel=1e-4)


def test_deterministic_under_seed(model):
    from invtool.transforms import random_roll

    obj = gram_objective(model, stripes())
    runs = [optimize(model, obj, noise(1), steps=6, seed=s, transforms=random_roll(), progress=False)
            for s in (3, 3, 4)]
    assert torch.equal(runs[0].image, runs[1].image)
    assert not torch.equal(runs[0].image, runs[2].image)


def test_coarse_to_fine(model):
    obj = gram_objective(model, stripes())
    res = optimize(model, obj, noise(1), steps=10, scales=2, save_every=3, progress=False)
    assert res.sizes == [(16, 16), (32, 32)] and res.scale_starts == [0, 5]
    assert res.image.shape == (1, 3, 32, 32)
    assert [s for s, _ in res.snapshots] == [3, 6, 9]
    assert res.snapshots[0][1].shape[-1] == 16 and res.snapshots[-1][1].shape[-1] == 32


def test_snapshots_are_copies_of_the_image_at_their_step(model):
    """On the CPU `.cpu()` returns the tensor itself: snapshots of a pixel run once all showed the final image."""
    seen = {}
    res = optimize(model, gram_objective(model, stripes()), noise(1), steps=6, save_every=2, progress=False,
                   callback=lambda s: seen.__setitem__(s.step, s.image.clone()))
    assert [s for s, _ in res.snapshots] == [2, 4, 6]
    for step, snap in res.snapshots:
        assert torch.equal(snap, seen[step].cpu())
    assert not torch.equal(res.snapshots[0][1], res.snapshots[-1][1])


def test_outputs_past_the_working_size_are_refined_at_each_doubling(model):
    obj = gram_objective(model, stripes())
    res = optimize(model, obj, noise(1, 64), steps=8, scales=2, work_size=20, progress=False)
    # 64 px is 2 doublings past 20 (20 -> 40 -> 80 >= 64): two refining scales after the 2 of the working size
    # the 2 working scales share the steps evenly, each doubling gets a quarter of the size before it
    assert res.sizes == [(8, 8), (16, 16), (32, 32), (64, 64)] and res.scale_starts == [0, 3, 6, 7]
    assert "larger than the working size 20: 2 refining scales" in " ".join(res.notes)
    same = optimize(model, obj, noise(1, 64), steps=8, scales=2, work_size=64, progress=False)
    assert same.sizes == [(32, 32), (64, 64)]
    few = optimize(model, obj, noise(1, 64), steps=2, scales=2, work_size=20, progress=False)
    assert few.sizes == [(32, 32), (64, 64)] and few.steps == 2 and few.image.shape[-1] == 64


def test_doublings_past_the_working_size_get_a_quarter_of_the_steps_before_them():
    assert step_budgets(200, 3, 2) == [153, 38, 9]         # 200 / (1 + 1/4 + 1/16) = 152.4, 38.1, 9.5; the rest to the first
    assert step_budgets(150, 4, 2) == [64, 66, 16, 4]      # 2 scales at the working size, then 2 doublings: 150 / 2.3125
    assert step_budgets(9, 3, 0) == [3, 3, 3] and step_budgets(10, 3, 0) == [3, 3, 4]   # no doubling: even
    for steps in range(3, 40):                         # every scale runs, the total is the budget
        b = step_budgets(steps, 3, 2)
        assert sum(b) == steps and min(b) >= 1


def test_scales_too_small_for_the_layers_are_dropped(model):
    obj = gram_objective(model, noise(0), ["pool4"])     # needs 16 px
    res = optimize(model, obj, noise(1), steps=4, scales=3, progress=False)
    assert res.sizes == [(16, 16), (32, 32)] and "2 of 3 scales" in res.notes[0]


def test_non_finite_loss_stops_and_keeps_the_last_finite_image(model):
    calls = []

    def blows_up(f, x):
        calls.append(1)
        return f["conv1_1"].mean() * (float("nan") if len(calls) > 4 else 1.0)

    obj = Objective(lambda f, x: (x - 0.5).square().mean(), name="fine") + Objective(blows_up, ["conv1_1"], "boom")
    res = optimize(model, obj, noise(1), steps=50, window=3, progress=False)
    assert res.stopped_early and "'boom'" in res.stop_reason and "step 5" in res.stop_reason
    assert torch.isfinite(res.image).all() and res.loss == pytest.approx(min(res.history[:4]), rel=1e-6)


def test_a_scale_whose_first_evaluation_is_not_finite_keeps_a_finite_image(model):
    """The best image of a scale starts from its first evaluation: a NaN there must not stay the best for good
    (NaN compares lower than nothing), so the finite evaluations after it replace it."""
    calls = []

    def nan_first(f, x):
        calls.append(1)
        return f["conv1_1"].mean() + (float("nan") if len(calls) == 1 else 0.0)   # NaN loss, finite gradient

    res = optimize(model, Objective(nan_first, ["conv1_1"], "first"), noise(1), optimizer="adam", lr=0.01, steps=6,
                   window=50, progress=False)
    assert "step 1" in res.stop_reason
    assert torch.isfinite(torch.tensor(res.loss)) and res.loss == pytest.approx(min(res.history[1:]), rel=1e-6)


def test_every_synced_row_is_checked_for_non_finite_losses():
    """One L-BFGS call writes 20 or more rows between two syncs: a NaN anywhere among them is found, not only
    in the last `window` rows."""
    run = _Run(["a"], 30, 3, 0, None, False, [])
    run.begin_scale(0, (8, 8), 30)
    image = torch.zeros(1, 3, 8, 8)
    for k in range(25):
        value = torch.tensor(float("nan") if k == 1 else 1.0 - k / 100)
        run.record(image, value, {"a": value})
    assert run.sync() == "non-finite loss in term 'a' at step 2"
    run.bar.close()


def test_tolerance_stops_a_flat_loss(model):
    obj = Objective(lambda f, x: f["conv1_1"].mean() * 0 + 1.0, ["conv1_1"], name="flat")
    res = optimize(model, obj, noise(1), steps=100, tol=1e-3, window=5, progress=False)
    assert res.stopped_early and res.steps == 10


def test_sigint_interrupts_cleanly(model):
    obj = gram_objective(model, stripes())

    def send_sigint(step):
        if step.step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)   # Python's default, or SIG_IGN when started in the background
    res = optimize(model, obj, noise(1), steps=50, callback=send_sigint, progress=False)
    assert res.interrupted and res.stop_reason == "interrupted" and res.steps == 3
    assert res.image.shape == (1, 3, 32, 32)
    assert signal.getsignal(signal.SIGINT) is before   # handler restored


def test_chain_joins_runs_and_an_interrupted_chain_keeps_the_best_image(model):
    obj = gram_objective(model, stripes())
    first = optimize(model, obj, noise(1), steps=12, scales=2, progress=False, save_every=6)

    def send_sigint(step):
        if step.step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    second = optimize(model, obj, noise(2), steps=50, callback=send_sigint, progress=False)
    both = chain([first, second])
    assert both.steps == 14 and both.history == first.history + second.history
    assert both.scale_starts == [0, 6, 12] and both.sizes == first.sizes + second.sizes
    assert [s for s, _ in both.snapshots] == [6, 12]
    assert both.interrupted and second.loss > first.loss   # stopped after 2 steps from noise: worse than 12
    assert torch.equal(both.image, first.image) and both.loss == first.loss
    assert not chain([second, first]).interrupted and chain([second, first]).image is first.image


def test_callback_can_stop(model):
    obj = gram_objective(model, stripes())
    res = optimize(model, obj, noise(1), steps=50, callback=lambda s: s.step == 4, progress=False)
    assert res.steps == 4 and not res.interrupted and "callback" in res.stop_reason


def test_bad_arguments(model):
    obj = gram_objective(model, noise(0), ["pool3"])
    with pytest.raises(InvtoolError, match="use at least 8x8"):
        optimize(model, obj, noise(1, size=6), progress=False)
    with pytest.raises(InvtoolError, match="unknown optimizer 'rmsprop'; use one of adam, sgd, lbfgs"):
        optimize(model, obj, noise(1), optimizer="rmsprop", progress=False)


def test_memory_estimate(model, monkeypatch):
    est = estimate_memory(model, LAYERS, 64, 64)
    assert estimate_memory(model, LAYERS, 128, 128) == pytest.approx(4 * est, rel=1e-3)   # grows with pixels
    conv1_1 = 64 * 64 * 64 * 4                      # bytes of one 64-channel float map at 64x64
    assert 2 * conv1_1 < est < 20 * conv1_1         # conv1_1 and conv1_2 are saved, and their gradients
    monkeypatch.setattr("invtool.memory.available_memory", lambda device: 2**30)
    opaque = Objective(lambda f, x: f["pool1"].mean(), ["pool1"], name="opaque")   # a term that cannot be tiled
    with pytest.raises(InvtoolError, match=r"a 8000x6000 image through pool1 needs about \d+\.\d GB for one pass, "
                                           r"more than the memory budget of 1\.0 GB leaves, and term opaque cannot"):
        plan(model, opaque, 1, 6000, 8000)


def test_memory_estimate_runs_the_model_once_per_layers(model, monkeypatch):
    layers = ["conv1_1", "conv2_1"]
    first = estimate_memory(model, layers, 64, 64)   # measures (unless an earlier test did)
    calls = []
    features = model.features
    monkeypatch.setattr(model, "features", lambda x, names: calls.append(tuple(x.shape)) or features(x, names))
    assert estimate_memory(model, layers, 64, 64) == first and calls == []
    assert estimate_memory(model, layers, 128, 64, batch=2) == pytest.approx(4 * first, rel=1e-3) and calls == []
    obj = Objective(lambda f, x: f["conv2_1"].mean() + f["conv1_1"].mean(), layers, name="mean")
    optimize(model, obj, noise(1), steps=3, progress=False)
    assert calls == [(1, 3, 32, 32)] * 3   # the three steps, no measuring passes


def brightness(layer="conv1_1"):
    """Pushes every pixel up, without bound unless the parameterisation clamps (the layer term is 0)."""
    return Objective(lambda f, x: 0 * f[layer].mean() - x.mean(), [layer], name="bright")


def test_a_pyramid_stays_a_pyramid_at_the_next_scale_and_starts_from_the_best_image(model, monkeypatch):
    seen, optimised = [], []
    make = __import__("invtool.optimize", fromlist=["_make_optimizer"])._make_optimizer
    monkeypatch.setattr("invtool.optimize._make_optimizer",
                        lambda name, params, *rest: optimised.append([p.shape[-1] for p in params]) or make(name, params, *rest))
    res = optimize(model, brightness(), pyramid(noise(1), levels=4), steps=8, scales=2, lr=0.05, progress=False,
                   callback=lambda s: seen.append((s.scale, s.image.clone(), float(s.loss))))
    assert res.sizes == [(16, 16), (32, 32)]
    assert optimised == [[16, 8, 4, 2], [32, 16, 8, 4]]   # the pyramid's levels at both scales, not pixels
    coarse = [(loss, img) for scale, img, loss in seen if scale == 0]
    fine = [img for scale, img, _ in seen if scale == 1]
    best = min(coarse, key=lambda c: c[0])[1]
    assert torch.allclose(fine[0], resize_image(best, 32, 32), atol=1e-6)   # from the best image, upsampled
    assert fine[-1].max() > 1   # unclamped (a range prior would keep it in [0, 1]); pixels would stop at 1
    assert res.image.max() <= 1   # the result is clamped


def test_fourier_stays_fourier_at_the_next_scale(model, monkeypatch):
    optimised = []
    make = __import__("invtool.optimize", fromlist=["_make_optimizer"])._make_optimizer
    monkeypatch.setattr("invtool.optimize._make_optimizer",
                        lambda name, params, *rest: optimised.append([tuple(p.shape) for p in params]) or make(name, params, *rest))
    optimize(model, brightness(), fourier(noise(1)), steps=4, scales=2, progress=False)
    assert optimised == [[(1, 3, 16, 9, 2)], [(1, 3, 32, 17, 2)]]   # a spectrum at each scale


@pytest.mark.parametrize("optimizer, lr", [("adam", 0.05), ("lbfgs", 1.0)])
def test_best_image_and_history_are_written_in_place(model, monkeypatch, optimizer, lr):
    buffers = []
    record = _Run.record

    def spy(run, *args):
        record(run, *args)
        buffers.append((run.scale, run.best_img.data_ptr(), run.best_loss.data_ptr(), run.history.data_ptr()))

    monkeypatch.setattr(_Run, "record", spy)
    res = optimize(model, gram_objective(model, stripes()), noise(1), optimizer=optimizer, lr=lr, steps=12,
                   scales=2, progress=False)
    assert len(buffers) == 12 and len({b[3] for b in buffers}) == 1   # one history for the run
    for scale in (0, 1):   # one best image and loss per scale
        assert len({b[1:3] for b in buffers if b[0] == scale}) == 1
    assert res.loss == pytest.approx(min(res.history[6:]), rel=1e-6)   # still the best of the last scale


def test_held_transform_repeats_its_draw_until_redrawn():
    held = _HeldTransform(random_roll(), torch.Generator().manual_seed(0))
    x = torch.arange(64.0).reshape(1, 1, 8, 8).expand(1, 3, 8, 8)
    draws = []
    for _ in range(4):
        held.redraw()
        draws.append(held(x))
        assert torch.equal(held(x), draws[-1]) and torch.equal(held(x), draws[-1])   # a line search's evaluations
    assert len({tuple(d.flatten()[:2].tolist()) for d in draws}) > 1   # new draws at each call


def test_a_deterministic_transform_keeps_lbfgs_memory(model):
    """A fixed transform (texture's grey view) is applied as it is: L-BFGS keeps its curvature memory across
    calls, so its path is the one without the transform when the transform changes nothing. Restarting the
    memory every call, as a random draw needs, left grey textures' Gram loss 1.3-3.1x higher."""
    obj = gram_objective(model, stripes())
    identity = deterministic(lambda x, generator: x * 1.0)
    plain, fixed = (optimize(model, obj, noise(1), optimizer="lbfgs", lr=1.0, steps=45, transforms=t, progress=False)
                    for t in (None, identity))
    assert fixed.history == plain.history and torch.equal(fixed.image, plain.image)
    assert not is_random(compose(identity, identity)) and is_random(compose(identity, random_roll()))


def test_lbfgs_with_random_transforms_is_deterministic_under_seed(model):
    obj = gram_objective(model, stripes())
    runs = [optimize(model, obj, noise(1), optimizer="lbfgs", lr=1.0, steps=8, seed=s, transforms=random_roll(),
                     progress=False) for s in (3, 3)]
    assert torch.equal(runs[0].image, runs[1].image) and runs[0].history == runs[1].history


def fake_result(size, loss, steps=2, interrupted=False, note="n"):
    return Result(image=torch.full((1, 3, size, size), loss), loss=loss, history=[loss] * steps,
                  term_history={"t": [loss] * steps}, steps=steps, wall_time=1.0, steps_per_sec=steps,
                  sizes=[(size, size)], scale_starts=[0], interrupted=interrupted, notes=[note])


def test_chain_of_octaves_upsamples_the_last_image_and_never_takes_a_coarser_one():
    octaves = [fake_result(8, 0.1), fake_result(16, 0.5, interrupted=True)]   # the coarse loss is lower
    both = chain(octaves, (32, 32), ["skipped"])
    assert both.image.shape == (1, 3, 32, 32) and torch.allclose(both.image, torch.full((1, 3, 32, 32), 0.5))
    assert both.interrupted and both.loss == 0.5 and both.steps == 4 and both.scale_starts == [0, 2]
    assert both.notes[0] == "skipped" and "upsampled to 32x32" in both.notes[1] and both.notes[2:] == ["n"]


@pytest.mark.parametrize("size", [(40, 24), (33, 19), (8, 6), (7, 5)])
def test_periodic_resize_is_the_band_limited_one(size):
    """`resize_image(wrap=True)` is the exact resize of a periodic band-limited image: a sum of cosines
    sampled on 16 x 12 points comes out as the same cosines sampled on the new grid (a hand computation),
    growing and shrinking, odd and even sizes."""
    def cosines(h, w, freqs):
        y, x = torch.meshgrid(torch.arange(h) / h, torch.arange(w) / w, indexing="ij")
        img = sum(a * torch.cos(2 * torch.pi * (fy * y + fx * x) + p) for a, fy, fx, p in freqs)
        return (0.5 + img).expand(1, 3, h, w).double()
    h, w = size
    freqs = [(0.2, 1, 0, 0.3), (0.1, 0, 2, 1.0), (0.05, 1, 2, 2.0)]   # within every size's Nyquist
    out = resize_image(cosines(16, 12, freqs), h, w, wrap=True)
    assert torch.allclose(out, cosines(h, w, freqs), atol=1e-9)


def test_periodic_upsampling_leaves_no_lattice():
    """Doubling a periodic image commutes with shifting it by one pixel (two after): every output pixel is
    interpolated alike, so coarse-to-fine leaves no 2-pixel lattice for a tile's seam to fall on (bicubic,
    which it replaced, weighs pixels at and between the input's samples differently)."""
    x = torch.rand(1, 3, 16, 12, generator=torch.Generator().manual_seed(0))
    up = resize_image(x, 32, 24, clamp=False, wrap=True)
    assert torch.allclose(torch.roll(up, (2, 2), (-2, -1)), resize_image(torch.roll(x, (1, 1), (-2, -1)), 32, 24,
                                                                          clamp=False, wrap=True), atol=1e-6)
    assert torch.allclose(resize_image(up, 16, 12, clamp=False, wrap=True), x, atol=1e-6)   # and back exactly
    # the mean |difference| of neighbouring columns is the same at even and odd positions (bicubic: 0.59)
    noise = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    d = resize_image(noise, 512, 512, clamp=False, wrap=True).diff(dim=-1).abs().mean((0, 1, 2))
    assert 0.95 < float(d[0::2].mean() / d[1::2].mean()) < 1.05
