"""Host syncs of the optimisation loop, counted on the CPU (issue #32): Adam and invtool's L-BFGS touch the host a
few times per `window` steps; torch's L-BFGS reads the loss at every evaluation (printed for contrast).

The count: calls of Tensor.item, Tensor.__float__, Tensor.__bool__, Tensor.tolist and Tensor.cpu made from Python
during an `optimize` run (each replaced by a counting wrapper), on floating-point or boolean tensors. On a GPU each
of these waits for the device to finish; on the CPU nothing waits, but the same calls run, so counting them here
counts what would be syncs there. Integer tensors are left out: the rebuilt ONNX modules do shape arithmetic on
int64 tensors that live on the host whatever the device (`Shape`, `Gather` of a shape), and reading those is no
device sync. A bool tensor is counted: `if loss < best:` is exactly the kind of sync this is about. What runs
once per run (the final image's `.cpu()`, the best loss's `float`) is in the count too; the bound allows for it.
"""
import pytest
import torch

from invtool import losses
from invtool.objectives import Objective
from invtool.optimize import optimize

METHODS = ("item", "__float__", "__bool__", "tolist", "cpu")
STEPS, WINDOW = 40, 10
ONCE = 4          # syncs a run makes once: the last history rows, the final image, the best loss
PER_WINDOW = 2    # at most this many per window (the history's copy to the host is one)


@pytest.fixture(scope="module")
def model(vgg16_model):
    return vgg16_model


def gram_objective(model, source, layers=("conv1_1", "pool1", "pool2")):
    with torch.no_grad():
        feats = model.features(source, list(layers))
    targets = {n: losses.gram_matrix(feats[n]) for n in layers}
    return sum(Objective(lambda f, x, n=n: losses.gram_loss(losses.gram_matrix(f[n]), targets[n]), [n], name=n)
               for n in layers)


def count_syncs(monkeypatch, run) -> tuple[dict[str, int], object]:
    """{method: calls on floating-point or bool tensors} while `run()` runs, and its result."""
    counts = dict.fromkeys(METHODS, 0)
    for name in METHODS:
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, _name=name, _original=original, **kwargs):
            if self.is_floating_point() or self.dtype == torch.bool:
                counts[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    result = run()
    monkeypatch.undo()
    return counts, result


def run_with(model, optimizer):
    source = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    start = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    obj = gram_objective(model, source)
    lr = 0.02 if optimizer == "adam" else 1.0
    return lambda: optimize(model, obj, start, optimizer=optimizer, lr=lr, steps=STEPS, window=WINDOW, scales=2,
                            progress=False)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_a_few_host_syncs_per_window(model, monkeypatch, optimizer):
    counts, result = count_syncs(monkeypatch, run_with(model, optimizer))
    total = sum(counts.values())
    windows = STEPS // WINDOW
    print(f"\n{optimizer}: {total} host syncs in {STEPS} steps ({total / windows:.1f} per {WINDOW}-step window): "
          f"{counts}")
    assert result.steps == STEPS and result.loss < result.history[0]
    assert total <= PER_WINDOW * windows + ONCE, counts


def test_torch_lbfgs_reads_the_host_at_every_evaluation(model, monkeypatch):
    """For contrast: torch.optim.LBFGS (the engine's "lbfgs-torch") syncs several times per evaluation."""
    counts, result = count_syncs(monkeypatch, run_with(model, "lbfgs-torch"))
    total = sum(counts.values())
    print(f"\nlbfgs (torch's): {total} host syncs in {result.steps} steps "
          f"({total / (STEPS // WINDOW):.1f} per {WINDOW}-step window): {counts}")
    assert total > STEPS


def test_the_counter_sees_syncs(monkeypatch):
    """The counting wrappers catch each kind, and leave integer tensors (shape arithmetic) out."""
    def sync_everything():
        x = torch.ones(3)
        float(x.sum()), x.sum().item(), x.tolist(), x.cpu(), bool(x.sum() > 0)
        torch.tensor([2, 3]).tolist(), int(torch.tensor(4))
    counts, _ = count_syncs(monkeypatch, sync_everything)
    assert counts == {"item": 1, "__float__": 1, "__bool__": 1, "tolist": 1, "cpu": 1}


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_cuda_sync_debug_mode_counts_as_few(optimizer):
    """On CUDA, torch's own sync detector (`set_sync_debug_mode("warn")` warns at each synchronising call) over
    the same run: at most a few syncs per window there too."""
    from devices import NEEDS_CUDA  # noqa: F401 (the mark's condition, inline: this test needs the device)
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    import warnings
    from conftest import VGG16_ONNX
    from invtool import load_model
    model = load_model(VGG16_ONNX, device="cuda")
    source, start = torch.rand(1, 3, 32, 32, device="cuda"), torch.rand(1, 3, 32, 32, device="cuda")
    obj = gram_objective(model, source)
    optimize(model, obj, start, optimizer=optimizer, steps=6, progress=False)   # warm: lazy initialisation
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            optimize(model, obj, start, optimizer=optimizer, lr=0.02 if optimizer == "adam" else 1.0, steps=STEPS,
                     window=WINDOW, scales=2, progress=False)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    print(f"\n{optimizer} on CUDA: {len(syncs)} synchronising calls in {STEPS} steps")
    assert len(syncs) <= PER_WINDOW * (STEPS // WINDOW) + ONCE + 4   # + the scale's peak-memory reads
