"""invtool's Adam and SGD (invtool/optimizers.py) take torch.optim's steps, to rounding: torch.optim is the
oracle, on a problem where the gradients change every step (a quartic over two tensors of different shapes),
with the learning rate changed between steps as the engine's schedules do."""
import pytest
import torch

from invtool.optimizers import SGD, Adam


def trajectory(make, steps=60, schedule=lambda i: 1.0):
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(3, 5, generator=gen).requires_grad_(), torch.randn(7, generator=gen).requires_grad_()]
    targets = [torch.randn(3, 5, generator=gen), torch.randn(7, generator=gen)]
    opt = make(xs)
    base = opt.param_groups[0]["lr"] if hasattr(opt, "param_groups") else opt.lr
    path = []
    for i in range(steps):
        opt.zero_grad()
        loss = sum(((x - t) ** 4).sum() + 0.1 * (x * t).sum() for x, t in zip(xs, targets))
        loss.backward()
        if hasattr(opt, "param_groups"):
            opt.param_groups[0]["lr"] = base * schedule(i)
        else:
            opt.lr = base * schedule(i)
        opt.step()
        path.append(torch.cat([x.detach().reshape(-1) for x in xs]).clone())
    return torch.stack(path)


def cosine(i, steps=60):
    return 0.5 * (1 + torch.cos(torch.tensor(torch.pi * i / steps)).item())


@pytest.mark.parametrize("fused", [False, True])
def test_adam_takes_torchs_steps(fused):
    ours = trajectory(lambda p: Adam(p, lr=0.05), schedule=cosine)
    ref = trajectory(lambda p: torch.optim.Adam(p, lr=0.05, fused=fused), schedule=cosine)
    assert (ours[-1] - ours[0]).abs().max() > 0.5   # it moved
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


def test_sgd_with_momentum_takes_torchs_steps():
    ours = trajectory(lambda p: SGD(p, lr=0.002, momentum=0.9), schedule=cosine)
    ref = trajectory(lambda p: torch.optim.SGD(p, lr=0.002, momentum=0.9), schedule=cosine)
    assert (ours[-1] - ours[0]).abs().max() > 0.5
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


def test_a_parameter_without_gradient_is_left_alone():
    x, unused = torch.ones(4, requires_grad=True), torch.ones(2, requires_grad=True)
    opt = Adam([x, unused], lr=0.1)
    (x ** 2).sum().backward()
    opt.step()
    assert torch.equal(unused.detach(), torch.ones(2)) and (x < 1).all()


def test_only_torchs_lbfgs_builds_a_torch_optimiser(monkeypatch):
    """The engine's Adam, SGD and L-BFGS never construct a torch.optim optimiser (whose import of
    torch._dynamo costs seconds of start-up): torch.optim.Optimizer.__init__ raising would fail the run."""
    from invtool.optimize import _make_optimizer

    def refuse(*a, **k):
        raise AssertionError("torch.optim used")
    monkeypatch.setattr(torch.optim.Optimizer, "__init__", refuse)
    for name in ("adam", "sgd", "lbfgs"):
        _make_optimizer(name, [torch.zeros(3, requires_grad=True)], 0.1)
    with pytest.raises(AssertionError, match="torch.optim used"):
        _make_optimizer("lbfgs-torch", [torch.zeros(3, requires_grad=True)], 0.1)
