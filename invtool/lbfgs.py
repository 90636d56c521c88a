"""L-BFGS that never waits for the host: its history, two-loop product, step and line search stay on the device.

torch.optim.LBFGS reads the loss and the directional derivative on the host at every evaluation (`float(loss)`,
`gtd > -tolerance`, the strong-Wolfe bracketing), so on a GPU each step waits for the step before it to finish.
This one takes exactly one evaluation per `step(closure)` and decides everything with tensor operations:

- the line search is a backtracking one with a device-side Armijo test: the trial point x = x_k + t d is
  evaluated; if f(x) <= f_k + c1 t g_k.d (and f is finite) it is accepted: the pair (s, y) enters the history
  (when y.s > 1e-10 y.y and the step was not short, below), the new direction is d = -H g at x and the next
  trial is t = lr (Nocedal & Wright's unit step). A step is short when it ends still descending steeply (weak
  Wolfe's curvature test fails): its pair would describe a nearly linear stretch, and the quasi-Newton step
  built on it overshot by 1e4 on Gram losses. The first step of a fresh memory is lr min(1, 1/|g|_1), as
  torch's, and while no pair is kept a short step is followed by one 10x as long (torch's strong-Wolfe search
  extrapolates up to 10x there). A refused trial shrinks t to the minimiser of the quadratic through f_k, g_k.d
  and f(x), clamped to [0.1 t, 0.5 t]. Both outcomes are computed and one is kept with `torch.where`: no branch
  on a device value;
- H g is the compact form of the L-BFGS product (Byrd, Nocedal & Schnabel 1994): with the pairs as rows of S and
  Y, R = the upper triangle of S Y^T (oldest first), D its diagonal and gamma = s.y / y.y of the newest pair,
  H g = gamma g + S^T p + gamma Y^T q, with q = -R^-1 (S g) and p = R^-T ((D + gamma Y Y^T) R^-1 (S g) - gamma Y g).
  The m x m matrices S Y^T and Y Y^T are updated by one row and column per step, so a step reads the history
  about five times (matrix-vector products, a few kernels whatever m) instead of the two-loop's 4m dot
  products and axpys, and the small solves are `solve_triangular` (no error check, so no sync);
- the history is a ring of m + 1 rows with a device-side pointer and timestamps: the free row takes every
  step's (s, y) (zeros when not kept), and the pointer moves on only when the pair is kept;
- a direction that is not a descent direction, or a step that shrank a millionfold without being accepted
  (a kink, float precision), restarts the memory: d = -g from the last accepted point.

Memory: the history, 2 (m + 1) parameter-sized rows, and 3 more (x_k, g_k, d) between steps, 2 transient ones
in a step (s, y; then H g): at most 7 beyond the history's 2m, within `memory.LBFGS_BUFFERS` (8); several
parameter tensors (a pyramid) add one gathered copy of the gradient and of the parameters.

Example:
    >>> opt = LBFGS([x], lr=1.0, history_size=50)
    >>> for _ in range(100):
    ...     opt.step(closure)   # closure: zero the grads, evaluate, backward, return the loss
"""
import torch

from .optimizers import Optimizer

C1 = 1e-4          # Armijo's sufficient decrease
C2 = 0.9           # weak Wolfe's curvature: an accepted step whose slope is still below C2 times the first was short
GROW = 10.0        # without curvature pairs, a short step is followed by one GROW times as long (torch's cap)
SHRINK = (0.1, 0.5)   # a rejected step's new length, as fractions of the old: the quadratic minimiser within these
STALL = 1e-6       # a line search whose step shrank below this fraction of its first restarts the memory
CURVATURE = 1e-10  # pairs with y.s at or below this times y.y are not kept (gamma = s.y / y.y must be above it:
                   # relative, since a first step of 1/|g|_1 on a loss of 1e6 makes y.s tiny but informative)


class LBFGS(Optimizer):
    """L-BFGS with a device-side line search: one closure evaluation per `step`, no host synchronisation.

    Args:
        params: the tensors to optimise.
        lr: the unit step's length (1: Nocedal & Wright's, torch's default).
        history_size: curvature pairs kept.
    """

    def __init__(self, params, lr: float = 1.0, history_size: int = 50):
        if history_size < 1:
            raise ValueError(f"history_size must be at least 1, got {history_size}")
        super().__init__(params, lr)
        self.history_size = history_size
        self._buffers = None

    def reset(self) -> None:
        """Forget the curvature pairs and the line search: the next evaluation starts afresh (a new function,
        e.g. a new draw of a random transform)."""
        if self._buffers is not None:
            b = self._buffers
            b["fresh"].fill_(True)
            b["stamp"].fill_(-1.0)

    # --- flat views of the parameters and their gradients ---

    def _flat(self, grads: bool) -> torch.Tensor:
        ts = [(p.grad if p.grad is not None else torch.zeros_like(p)) if grads else p.detach() for p in self.params]
        return ts[0].reshape(-1) if len(ts) == 1 else torch.cat([t.reshape(-1) for t in ts])

    def _write(self, xk: torch.Tensor, d: torch.Tensor, t: torch.Tensor) -> None:
        """Parameters := xk + t d, in place (the graph of a CUDA capture keeps reading the same storage)."""
        at = 0
        for p in self.params:
            n = p.numel()
            torch.addcmul(xk[at:at + n].view_as(p), d[at:at + n].view_as(p), t, out=p.data)
            at += n

    def _init(self, x: torch.Tensor) -> dict:
        m, n = self.history_size + 1, x.numel()
        z = x.new_zeros
        return dict(S=z(m, n), Y=z(m, n), SY=z(m, m), YY=z(m, m), stamp=torch.full((m,), -1.0, device=x.device,
                    dtype=x.dtype), ptr=torch.zeros((), dtype=torch.long, device=x.device),
                    clock=z(()), xk=torch.zeros_like(x), gk=torch.zeros_like(x), d=torch.zeros_like(x),
                    fk=z(()), t=z(()), t0=z(()), gd=z(()), tsd=z(()),
                    fresh=torch.ones((), dtype=torch.bool, device=x.device))

    @torch.no_grad()
    def step(self, closure):
        """Evaluate `closure` (which must zero the gradients, back-propagate and return the loss) at the current
        trial point, take or refuse it, and move the parameters to the next trial point. Returns the loss."""
        with torch.enable_grad():
            loss = closure()
        self.update(loss)
        return loss

    @torch.no_grad()
    def update(self, loss: torch.Tensor) -> None:
        """The step after an evaluation whose loss is `loss` and whose gradients are in the parameters' .grad."""
        x, g = self._flat(False), self._flat(True)
        if self._buffers is None:
            self._buffers = self._init(x)
        b, lr = self._buffers, self.lr
        S, Y, stamp, ptr, fresh = b["S"], b["Y"], b["stamp"], b["ptr"], b["fresh"]
        f = loss.detach().reshape(()).to(x.dtype)

        # accept the trial point: Armijo's test, or the first evaluation of a fresh memory
        finite = torch.isfinite(f)
        accept = fresh | (finite & (f <= b["fk"] + C1 * b["t"] * b["gd"]))

        # the pair (s, y) goes into the free row; kept only when accepted, not short, with positive curvature
        # Armijo's test passed but the slope along d is still steep (weak Wolfe's curvature test fails): too short
        short = accept & ~fresh & (torch.dot(g, b["d"]) < C2 * b["gd"])
        s, y = x - b["xk"], g - b["gk"]
        ys = torch.dot(y, s)
        keep = accept & ~fresh & ~short & (ys > CURVATURE * torch.dot(y, y))   # NaN compares False
        row = ptr.reshape(1)
        S.index_copy_(0, row, torch.where(keep, s, 0.0)[None])
        Y.index_copy_(0, row, torch.where(keep, y, 0.0)[None])
        del s, y
        s_new, y_new = S.index_select(0, row)[0], Y.index_select(0, row)[0]
        col_sy, row_sy, col_yy = torch.mv(S, y_new), torch.mv(Y, s_new), torch.mv(Y, y_new)
        b["SY"].index_copy_(1, row, col_sy[:, None])
        b["SY"].index_copy_(0, row, row_sy[None])
        b["YY"].index_copy_(1, row, col_yy[:, None])
        b["YY"].index_copy_(0, row, col_yy[None])
        stamp.index_copy_(0, row, torch.where(keep, b["clock"], -1.0).reshape(1))
        b["clock"].add_(keep.to(x.dtype))
        nxt = torch.where(keep, (ptr + 1) % S.shape[0], ptr)
        stamp.index_fill_(0, nxt.reshape(1), -1.0)   # the next free row: the oldest pair, when the ring is full
        ptr.copy_(nxt)

        # the accepted point becomes the base of the next line search
        torch.where(accept, x, b["xk"], out=b["xk"])
        torch.where(accept, g, b["gk"], out=b["gk"])
        torch.where(accept, f, b["fk"], out=b["fk"])
        gk, d = b["gk"], b["d"]

        # a new direction at an accepted point; the old one while backtracking
        torch.where(accept, self._direction(gk).neg_(), d, out=d)
        gd = torch.dot(gk, d)
        # not a descent direction (or non-finite): forget the pairs and go down the gradient
        restart = ~(gd < 0)
        first = lr * torch.clamp(1.0 / gk.abs().sum(), max=1.0)   # torch's first step, for a fresh memory
        empty = (stamp < 0).all()

        # the next step length: the unit step after an acceptance, shrunk by interpolation after a refusal
        t = b["t"]
        # without pairs, the steepest-descent step: lr min(1, 1/|g|_1) at first, x GROW after a step too short
        tsd = torch.where(fresh, first, torch.where(short, GROW * t, torch.where(accept, t, b["tsd"])))
        t_ok = torch.where(empty | fresh, tsd, torch.full_like(t, lr))
        quad = -b["gd"] * t * t / (2 * (f - b["fk"] - b["gd"] * t))   # min of the quadratic through f_k, g_k.d, f
        quad = torch.where(torch.isfinite(quad), quad, SHRINK[0] * t)
        t_no = torch.minimum(torch.maximum(quad, SHRINK[0] * t), SHRINK[1] * t)
        t_new = torch.where(accept, t_ok, t_no)
        tsd = torch.where(~accept & empty, t_no, tsd)
        restart = restart | (~accept & (t_new < STALL * b["t0"]))
        stamp.masked_fill_(restart, -1.0)
        torch.where(restart, gk.neg(), d, out=d)
        t_new = torch.where(restart, first, t_new)
        torch.where(restart, first, tsd, out=b["tsd"])
        torch.where(accept | restart, t_new, b["t0"], out=b["t0"])
        b["gd"].copy_(torch.dot(gk, d))
        t.copy_(t_new)
        fresh.fill_(False)
        self._write(b["xk"], d, t)

    def _direction(self, g: torch.Tensor) -> torch.Tensor:
        """H g from the kept pairs (the compact form), gamma g... g itself when none is kept."""
        b = self._buffers
        S, Y, stamp = b["S"], b["Y"], b["stamp"]
        m = stamp.shape[0]
        order = torch.argsort(stamp)                       # unkept rows first, then oldest to newest
        valid = stamp[order] >= 0
        both = valid[:, None] & valid[None, :]
        sy = b["SY"][order][:, order]
        yy = b["YY"][order][:, order]
        upper = torch.ones(m, m, dtype=torch.bool, device=g.device).triu()
        R = torch.where(both & upper, sy, 0.0) + torch.where(valid, 0.0, 1.0).diag()   # unkept rows: identity
        D = torch.where(valid, sy.diagonal(), 0.0)
        newest = order[-1]
        last_sy, last_yy = b["SY"][newest, newest], b["YY"][newest, newest]
        gamma = torch.where(valid[-1] & (last_yy > 0), last_sy / last_yy, torch.ones_like(last_sy))
        a = torch.where(valid, torch.mv(S, g)[order], 0.0)
        c = torch.where(valid, torch.mv(Y, g)[order], 0.0)
        u = torch.linalg.solve_triangular(R, a[:, None], upper=True)            # R^-1 S g
        inner = (torch.diag(D) + gamma * torch.where(both, yy, 0.0)) @ u - gamma * c[:, None]
        p = torch.linalg.solve_triangular(R.T, inner, upper=False)[:, 0]
        q = -u[:, 0]
        p_rows = torch.zeros_like(p).index_copy_(0, order, torch.where(valid, p, 0.0))
        q_rows = torch.zeros_like(q).index_copy_(0, order, torch.where(valid, gamma * q, 0.0))
        hg = g * gamma
        hg.addmv_(S.T, p_rows).addmv_(Y.T, q_rows)
        return hg
