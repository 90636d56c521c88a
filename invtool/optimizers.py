"""The first-order optimisers the engine runs (Adam, SGD with momentum), and the base of its device-side L-BFGS.

Why not torch.optim: constructing any torch.optim optimiser imports torch._dynamo (its methods are wrapped by
`torch._disable_dynamo`, which imports the compiler stack on first call): 2.3-2.6 s of a command's start on 2 CPU
cores, more than the model's loading and first step together. These take the same steps as torch.optim.Adam and
torch.optim.SGD (weight decay 0, the tests compare them to rounding), keep their state on the parameters'
device and read nothing on the host; the learning rate is a plain attribute that a schedule may change between
steps. torch's L-BFGS (`lbfgs-torch`) is still torch.optim's, imported only when asked for.

Example:
    >>> opt = Adam([x], lr=0.02)
    >>> for _ in range(100):
    ...     opt.zero_grad(); loss_fn(x).backward(); opt.step()
"""
import torch


class Optimizer:
    """What the engine needs of an optimiser: its tensors, a learning rate, and gradients to clear."""

    def __init__(self, params, lr: float):
        self.params = [p for p in params]
        if not self.params:
            raise ValueError("the optimizer got no parameters")
        self.lr = lr

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) as torch.optim.Adam computes it: bias-corrected moments, eps added to the
    corrected root of the second moment."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, lr)
        self.betas, self.eps, self.t = betas, eps, 0
        self.moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in self.params]

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        self.t += 1
        step_size = self.lr / (1 - b1 ** self.t)
        root_correction = (1 - b2 ** self.t) ** 0.5
        for p, (m, v) in zip(self.params, self.moments):
            if p.grad is None:
                continue
            m.lerp_(p.grad, 1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            p.addcdiv_(m, v.sqrt().div_(root_correction).add_(self.eps), value=-step_size)


class SGD(Optimizer):
    """Gradient descent with heavy-ball momentum, as torch.optim.SGD (no dampening): the first step's buffer
    is the gradient itself."""

    def __init__(self, params, lr: float, momentum: float = 0.9):
        super().__init__(params, lr)
        self.momentum = momentum
        self.buffers: list[torch.Tensor | None] = [None] * len(self.params)

    @torch.no_grad()
    def step(self) -> None:
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            if self.buffers[i] is None:
                self.buffers[i] = p.grad.clone()
            else:
                self.buffers[i].mul_(self.momentum).add_(p.grad)
            p.add_(self.buffers[i], alpha=-self.lr)
