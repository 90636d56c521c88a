"""CUDA graphs (invtool/capture.py) in the engine, tested on the CPU with a fake backend: captured once per scale
after the warm-up, captured again on a change of size, the same losses as eager, and eager with a note where a
graph cannot be used (random transforms, tiles, random draws in the objective, a capture that fails). The real
CUDA path at the end runs only where CUDA is (NEEDS_CUDA)."""
import pytest
import torch

import conftest

from devices import NEEDS_CUDA
from invtool import capture as capture_module, losses
from invtool.capture import Capture, random_ops
from invtool.objectives import Objective
from invtool.optimize import optimize
from invtool.texture import texture_objective
from invtool.transforms import deterministic, random_roll

LAYERS = ["conv1_1", "pool1"]


def gram_objective(model, source, layers=LAYERS):
    return conftest.gram_objective(model, source, layers)


class Recorder:
    """A fake CUDA graph backend: `capture` runs the function once to make the static outputs (a real capture
    records without running; the engine replays right after either way) and counts; `replay` runs it again and
    copies the fresh results into those outputs, in place, as a replay refills a graph's buffers."""

    def __init__(self):
        self.captures, self.replays, self.warms = 0, 0, 0

    def warm(self, fn):
        self.warms += 1
        return fn()

    def capture(self, fn):
        self.captures += 1
        return fn, fn()

    def replay(self, graph):   # the "graph" is the function itself
        self.replays += 1
        _copy_into(self.owner.outputs, graph())

    def bind(self, capture: Capture):
        """Replays refill the outputs of `capture` (the static buffers the engine holds)."""
        self.owner = capture
        return self


def _copy_into(static, fresh):
    if isinstance(static, torch.Tensor):
        static.copy_(fresh)
    elif isinstance(static, dict):
        for k in static:
            _copy_into(static[k], fresh[k])
    elif isinstance(static, (tuple, list)):
        for s, f in zip(static, fresh):
            if s is not None:
                _copy_into(s, f)


@pytest.fixture()
def recorder(monkeypatch):
    """The engine's backend on the CPU: a Recorder bound to the run's Capture."""
    made = []
    real = capture_module.Capture

    class Bound(real):
        def __init__(self, backend, warmup=capture_module.WARMUP):
            super().__init__(backend, warmup)
            backend.bind(self)
            made.append(self)

    monkeypatch.setattr("invtool.optimize.Capture", Bound)
    monkeypatch.setattr("invtool.optimize.capture_backend", lambda device: Recorder())
    return made


@pytest.fixture(scope="module")
def model(vgg16_model):
    return vgg16_model


def image(seed, size=32):
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("optimizer, lr", [("adam", 0.05), ("lbfgs", 1.0), ("lbfgs-torch", 1.0)])
def test_captured_once_per_scale_with_the_eager_losses(model, recorder, optimizer, lr):
    obj = gram_objective(model, image(0))
    eager = optimize(model, obj, image(1), optimizer=optimizer, lr=lr, steps=12, scales=2, progress=False,
                     graphs=False)
    graphed = optimize(model, obj, image(1), optimizer=optimizer, lr=lr, steps=12, scales=2, progress=False)
    cap = recorder[-1]
    assert cap.captures == 2 and cap.backend.captures == 2   # one per scale: 16 and 32 px
    assert cap.backend.warms == 2 * 2 and cap.replays == 12 - 2 * 2   # the rest of each scale's 6 steps replayed
    assert [m["graphs"] for m in graphed.memory] == ["captured", "captured"]
    assert eager.memory[0]["graphs"].startswith("off")
    assert graphed.history == pytest.approx(eager.history, rel=1e-5)
    assert torch.allclose(graphed.image, eager.image, atol=1e-5)


def test_a_new_size_captures_again_and_the_same_key_replays():
    cap = Capture(Recorder(), warmup=1)
    cap.backend.bind(cap)
    x = torch.ones(2)
    fn = lambda: (x * 2,)   # noqa: E731
    for key in ["a", "a", "a", "b", "b", "a"]:
        out = cap(key, fn)
        assert torch.equal(out[0], x * 2)
    # a: warm-up, capture, replay; b: warm-up, capture; a again: a new key drops b's graph and warms up
    assert cap.captures == 2 and cap.replays == 3
    x += 1
    assert torch.equal(cap("a", fn)[0], x * 2) and cap.captures == 3
    x += 1
    assert torch.equal(cap("a", fn)[0], x * 2) and cap.captures == 3   # a replay sees the inputs' new values


def test_random_transforms_and_tiles_stay_eager_with_a_note(model, recorder):
    obj = gram_objective(model, image(0))
    rolled = optimize(model, obj, image(1), steps=6, transforms=random_roll(), progress=False)
    assert recorder == [] and "random transforms" in rolled.memory[0]["graphs"]
    fixed = optimize(model, obj, image(1), steps=6, transforms=deterministic(lambda x, g: x * 1.0), progress=False)
    assert fixed.memory[0]["graphs"] == "captured"   # a deterministic transform is captured with the rest
    tileable = texture_objective(model, image(0, 64), LAYERS, [0.5, 0.5])   # Gram sums: evaluated exactly in tiles
    budget = _tiling_budget(model, tileable, 64)
    tiled = optimize(model, tileable, image(1, 64), optimizer="adam", lr=0.02, steps=4, memory=budget,
                     progress=False)
    assert tiled.memory[0]["tiled"] and tiled.memory[0]["graphs"] == "eager: evaluated in tiles"
    assert any("CUDA graphs off: tiles" in n for n in tiled.notes)


def _tiling_budget(model, obj, side):
    """A budget that leaves Adam its state but not one pass over the image: the run must tile."""
    from invtool.memory import IMAGE_BUFFERS, STATE, estimate_memory, plan
    image = 4 * 3 * side * side
    whole = estimate_memory(model, list(obj.layers), side, side)
    for share in (0.9, 0.7, 0.5, 0.3):
        budget = int((IMAGE_BUFFERS + STATE["adam"]) * image + share * whole)
        if plan(model, obj, 1, side, side, optimizer="adam", memory=budget).tiling is not None:
            return budget
    pytest.fail("no budget tiles this size")


def test_random_draws_in_the_objective_stay_eager_with_a_note(model, recorder):
    source = image(0)
    with torch.no_grad():
        target = model.features(source, ["conv1_1"])["conv1_1"]
    generator = torch.Generator().manual_seed(1)
    swd = Objective(lambda f, x: losses.sliced_wasserstein_loss(f["conv1_1"], target, generator=generator),
                    ["conv1_1"], name="swd")
    res = optimize(model, swd, image(1), steps=5, progress=False)
    assert recorder[-1].captures == 0 and "randn" in res.memory[0]["graphs"]
    assert any("draws random numbers" in n for n in res.notes)


def test_a_failed_capture_falls_back_to_eager(model, recorder, monkeypatch):
    def refuse(self, fn):
        raise RuntimeError("operation not permitted when stream is capturing")
    monkeypatch.setattr(Recorder, "capture", refuse)
    obj = gram_objective(model, image(0))
    res = optimize(model, obj, image(1), steps=6, progress=False)
    eager = optimize(model, obj, image(1), steps=6, progress=False, graphs=False)
    assert res.history == pytest.approx(eager.history, rel=1e-6) and res.steps == 6
    assert "capture failed (RuntimeError" in res.memory[0]["graphs"]


def test_random_ops_finds_draws():
    found = []
    with random_ops(found):
        torch.rand(3) + torch.ones(3)
        torch.nn.functional.dropout(torch.ones(4), 0.5, training=True)
    assert "rand" in found and len(found) >= 2
    found.clear()
    with random_ops(found):
        torch.ones(3).sum()
    assert found == []


@NEEDS_CUDA
@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_cuda_graphs_give_the_eager_losses(optimizer):
    from conftest import VGG16_ONNX
    from invtool import load_model
    model = load_model(VGG16_ONNX, device="cuda")
    obj = gram_objective(model, image(0, 64).cuda(), ["conv1_1", "pool2", "pool4"])
    runs = [optimize(model, obj, image(1, 128), optimizer=optimizer, lr=1.0 if optimizer == "lbfgs" else 0.02,
                     steps=30, scales=2, progress=False, graphs=g) for g in (False, True)]
    assert [m["graphs"] for m in runs[1].memory] == ["captured", "captured"]
    assert runs[1].history == pytest.approx(runs[0].history, rel=1e-3)
