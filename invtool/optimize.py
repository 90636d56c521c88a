"""The one optimisation loop every command uses: an image moved by Adam, SGD or L-BFGS to minimise an Objective.

No file I/O here: `optimize` returns a `Result` (best image, histories, timings, snapshots) and the
command writes it. The unit of work is one *step* = one forward and backward pass through the model, for
both optimisers (an L-BFGS iteration takes one or more, as its line search needs), so step budgets,
steps/s and histories compare across optimisers.

What the loop does for every command:
- the model is asked once per step for the union of the objective's layers;
- coarse to fine (`scales=K`): the step budget is split over K sizes, from 1/2^(K-1) of the final size
  up, each stage starting from the previous one's best image upsampled, as the same kind of Param
  (`Param.resize`: a pyramid stays a pyramid, Fourier stays Fourier); scales too small for the layers
  are dropped;
- the best image and the loss history are device buffers updated in place, without a host sync
  (`_Run`); the history is copied to the host every `window` steps, which is also when the progress
  bar, the early stop (relative improvement of the best loss over `window` steps below `tol`) and the
  non-finite check run (measured at 64 px on CPU, progress bar on: 0.92-1.07x the steps/s of a bare
  Adam loop);
- in a memory budget (`memory`), each scale evaluates the objective in one pass or, when that would not fit,
  exactly over tiles (invtool/tiled.py), and L-BFGS keeps fewer curvature pairs or gives way to Adam, as the
  memory plan says (invtool/memory.py); the Result's `memory` says what each scale did (on CUDA with its
  measured `peak`: the most bytes allocated);
- Ctrl-C or SIGTERM ends the run at the next step (or tile) with `interrupted=True` and the best image so far;
- a non-finite loss stops the run, keeps the last finite image and names the term that blew up;
- deterministic under `seed` (the transforms draw from a generator seeded with it); with L-BFGS a
  random transform is drawn once per 20 iterations and held (`_HeldTransform`), since a line search
  needs one function;
- no host sync between two of the `window` syncs with Adam, SGD and "lbfgs", invtool's device-side L-BFGS
  (invtool/lbfgs.py: one evaluation per step, its line search decided on the device); "lbfgs-torch" is torch's
  (strong Wolfe; it reads the loss on the host at every evaluation). At equal steps on held-out inputs the
  device one ended at 0.54-1.03x torch's losses, but 1.16x on one invert (tests/bench/bench_gpu.py, lbfgs;
  docs/benchmarks.md);
- on CUDA, each scale's evaluation (forward, objective, backward) is captured as a CUDA graph after two eager
  steps and replayed (invtool/capture.py); not with tiles, random transforms or random draws in the objective,
  which stay eager with a note; `graphs=False` (or `--no-graphs`, which sets `GRAPHS`) turns it off. Each scale's
  `memory` entry says which (`graphs`);
- `chain` joins consecutive runs (restarts, DeepDream's octaves) into one Result.

Example:
    >>> obj = Objective(lambda f, x: -f["conv4_1"][:, 12].mean(), layers=["conv4_1"], name="channel")
    >>> res = optimize(model, obj, torch.rand(1, 3, 128, 128), optimizer="adam", lr=0.05, steps=200)
    >>> res.image.shape, res.steps_per_sec
"""
import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Callable

import torch
from tqdm.auto import tqdm

from . import tiled
from .capture import Capture, backend as capture_backend
from .defaults import LR_SCHEDULES, OPTIMIZERS, WORK_SIZE  # noqa: F401  (one source for CLI and API; WORK_SIZE re-exported)
from .errors import InvtoolError
from .geometry import size_step
from .lbfgs import LBFGS
from .memory import LBFGS_HISTORY, LBFGS_KINDS, PIXEL_LR, Plan, plan as memory_plan  # noqa: F401 (PIXEL_LR: where it was)
from .objectives import Objective
from .optimizers import SGD, Adam
from .param import Param, pixel, resize_image
from .transforms import Transform, is_random

LBFGS_ITERS = 20    # L-BFGS steps per draw of a random transform (torch's: iterations per call)
GRAPHS = True       # CUDA graphs where they work; the CLI's --no-graphs turns them off for the process
MOMENTUM = 0.9      # SGD's, as Mahendran & Vedaldi use it


@dataclass
class Step:
    """What a callback sees after each step (tensors stay on the device: no sync unless you read them)."""
    step: int                       # 1-based, over all scales
    scale: int                      # 0 = coarsest
    image: torch.Tensor             # the image just evaluated, detached, [N, 3, h, w]
    loss: torch.Tensor              # its loss (0-d)
    terms: dict[str, torch.Tensor]  # each term's weighted contribution


@dataclass
class Result:
    """The outcome of `optimize`. Histories hold one value per step, over all scales."""
    image: torch.Tensor                 # best image of the final scale, CPU, [N, 3, H, W] in [0, 1]
    loss: float                         # its loss
    history: list[float]
    term_history: dict[str, list[float]]
    steps: int
    wall_time: float                    # seconds, the whole loop
    steps_per_sec: float
    sizes: list[tuple[int, int]]        # (h, w) of each scale, coarse to fine
    scale_starts: list[int]             # the step at which each scale began (0-based)
    snapshots: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # (step, CPU image)
    interrupted: bool = False
    stopped_early: bool = False
    stop_reason: str = ""               # why the run ended before its budget, in words
    notes: list[str] = field(default_factory=list)
    device: str = "cpu"
    memory: list[dict] = field(default_factory=list)   # per scale: budget, optimiser, tiling (memory.Plan.info)


class _Stop(Exception):
    """Raised inside the closure to leave an optimiser step (L-BFGS has no other exit)."""


def optimize(model, objective: Objective, init: Param | torch.Tensor, *, optimizer: str = "adam",
             lr: float = 0.05, steps: int = 200, lr_schedule: str | Callable[[float], float] = "constant",
             tol: float = 0.0, window: int = 20, scales: int = 1, transforms: Transform | None = None,
             callback: Callable[[Step], bool | None] | None = None, save_every: int = 0, seed: int = 0,
             progress: bool = True, wrap: bool = False, memory=None, work_size: int | None = None,
             graphs: bool = True) -> Result:
    """Minimise `objective` over an image; returns the best image found and the run's histories.

    Args:
        model: a FeatureModel (`features`, `min_size`, `device`).
        objective: what to minimise (negate it to maximise).
        init: a starting image `[N, 3, H, W]` in [0, 1] (optimised as pixels) or a Param; its size is
            the output size.
        optimizer: "adam", "sgd" (with momentum 0.9, Mahendran & Vedaldi's), "lbfgs" (invtool's, for smooth
            deterministic losses: a backtracking line search decided on the device, one evaluation per step, no
            host sync) or "lbfgs-torch" (torch.optim.LBFGS, strong Wolfe line search; reads the loss on the host
            at each evaluation).
        lr: Adam's or SGD's learning rate, or L-BFGS's initial step length (1 is its usual value).
        steps: the budget of forward+backward passes over all scales: split evenly, except that each doubling
            past `work_size` gets a quarter of the steps of the size before it (`step_budgets`).
        lr_schedule: "constant", "step" (x0.1 at 50% and 75% of each scale), "cosine", or a function of
            the fraction of the scale done returning the lr factor.
        tol: stop a scale when the best loss improved by less than this fraction over `window` steps.
        window: steps between host syncs (progress bar, early stop, non-finite check).
        scales: coarse-to-fine stages (needs a resizable Param: pixel, pyramid and fourier are; each scale
            starts from the previous one's best image as the same kind of Param).
        transforms: a random transform of the image before the model (jitter, roll), see transforms.py.
        callback: called after every step with a `Step`; returning True stops the run.
        save_every: keep a CPU snapshot of the image every N steps (0: none).
        seed: seeds the transforms' generator, so a run repeats exactly.
        progress: show a tqdm bar with the loss and steps/s.
        wrap: the image is periodic (a tileable texture): resize it periodically between scales, and let tiles'
            halos wrap around.
        memory: the budget in bytes (or "2G"; None: what the device has free) for the image, the optimiser's
            state and the evaluation: past it each scale is evaluated in tiles, exactly, and L-BFGS keeps fewer
            pairs or gives way to Adam (`memory.plan`; said in the notes and `Result.memory`).
        work_size: when the image's longer side is larger, the run starts at this size (with its `scales`
            below it) and is upsampled and refined at each doubling up to the output size: one more scale
            per doubling (0 or None: never). The deepest layers' receptive fields (VGG16's conv5_1: 212 px)
            cover little of a 2048 px image, so a run there from noise lays out no large-scale structure:
            the working-size run does, and each doubling adds the detail of its size.
        graphs: on CUDA, capture each scale's evaluation as a CUDA graph and replay it (the same losses, without
            the launch overhead); where it cannot be used (tiles, random transforms, random draws in the
            objective) the run is eager and the notes say why. Needs `GRAPHS` too (--no-graphs clears it).
    """
    _check_options(optimizer, lr_schedule, steps, scales, window)
    device = torch.device(model.device)
    param = _on_device(init, device) if isinstance(init, Param) else pixel(init.to(device))
    with torch.no_grad():
        n, _, h, w = param.image_fn().shape
    refine = _doublings(max(h, w), work_size)
    scales += refine
    if scales > 1 and param.remake is None:
        raise InvtoolError("coarse-to-fine scales need a resizable parameterisation such as pixel; use --scales 1")
    layers = list(objective.layers)
    require_size(model, layers, h, w, "the output")
    sizes, notes = scale_sizes(h, w, scales, model.min_size(layers) if layers else 1,
                               step=size_step(model, layers) if layers else 1)
    if refine:
        notes.append(f"the {w}x{h} output is larger than the working size {work_size}: {refine} refining "
                     f"scale{'s' * (refine > 1)} after it, one per doubling")
    if steps < len(sizes):   # every scale needs a step to hand an image on: keep the finest
        notes.append(f"{steps} steps for {len(sizes)} scales: only the {steps} finest are run")
        sizes = sizes[-steps:]
    kind = "lbfgs" if optimizer in LBFGS_KINDS else optimizer   # both L-BFGS keep the same state (memory.LBFGS_BUFFERS)
    plans = [memory_plan(model, objective, n, *size, optimizer=kind, memory=memory, wrap=wrap) for size in sizes]
    for p in plans:   # the plan keeps L-BFGS or gives way to Adam; which L-BFGS is the caller's
        if p.optimizer == "lbfgs":
            p.optimizer = p.info["optimizer"] = optimizer
    notes += [note for p in plans for note in p.notes]
    budgets = step_budgets(steps, len(sizes), min(refine, len(sizes) - 1))

    view = _model_view(transforms, optimizer, seed)
    run = _Run(objective.names, steps, window, save_every, callback, progress, notes)
    capture, why_not = _capture(device, graphs and GRAPHS, transforms)
    with _stop_on_signals(run.stop):
        for scale, (size, budget, plan) in enumerate(zip(sizes, budgets, plans)):
            if scale > 0 or size != (h, w):   # the previous scale's best image, as the same kind of Param
                param = param.resize(*size, wrap, image=run.best_img)
            run.begin_scale(scale, size, budget)
            if device.type == "cuda":   # the scale's measured peak goes into the record beside its plan
                torch.cuda.reset_peak_memory_stats(device)
            scale_capture = capture if plan.tiling is None else None
            if capture is not None and plan.tiling is not None:
                notes.append(f"{size[1]}x{size[0]}: CUDA graphs off: tiles are evaluated eagerly")
            captures = capture.captures if capture is not None else 0
            _run_scale(run, model, objective, layers, param, view, plan, lr, lr_schedule, tol, wrap, scale_capture)
            if device.type == "cuda":
                plan.info["peak"] = torch.cuda.max_memory_allocated(device)
            plan.info["graphs"] = _graphs_state(capture, why_not, plan, captures)
            if run.end_scale(tol):
                break
    if capture is not None:
        notes += [n for n in capture.notes if n not in notes]
    result = run.result(param, (h, w), sizes, device)
    result.memory = [p.info for p in plans]
    return result


def _on_device(param: Param, device: torch.device) -> Param:
    """`param` with its tensors on `device`: one built elsewhere is rebuilt there from its image (the same kind
    of Param showing the same image), so the image, its prior terms and the optimiser's state all live with
    the model."""
    if all(p.device == device for p in param.params):
        return param
    if param.remake is None:
        raise InvtoolError(f"the parameterisation's tensors are on {param.params[0].device} and the model on "
                           f"{device}; build it from an image on {device}")
    with torch.no_grad():
        return param.remake(param.image_fn().detach().to(device))


def _capture(device: torch.device, graphs: bool, transforms) -> tuple[Capture | None, str]:
    """The run's Capture, or None and why not (the reason goes into each scale's record)."""
    if not graphs:
        return None, "off (graphs=False or --no-graphs)"
    found = capture_backend(device)
    if found is None:
        return None, f"off: no CUDA graphs on {device.type}"
    if transforms is not None and is_random(transforms):
        return None, "off: random transforms draw a new shift or shape at each step"
    return Capture(found), ""


def _graphs_state(capture: Capture | None, why_not: str, plan: Plan, before: int) -> str:
    """What a scale did about CUDA graphs, for its record: captured, or why it ran eagerly."""
    if capture is None:
        return why_not
    if plan.tiling is not None:
        return "eager: evaluated in tiles"
    if capture.captures > before:
        return "captured"
    return f"eager: {capture.off}" if capture.off else "eager: fewer steps than the warm-up"


def _run_scale(run: "_Run", model, objective: Objective, layers: list[str], param: Param, view, plan: Plan,
               lr: float, lr_schedule, tol: float, wrap: bool, capture: Capture | None = None) -> None:
    """One scale: up to `run.budget` steps of the plan's optimiser on `param`, every evaluation recorded in `run`;
    the objective evaluated in one pass or over the plan's tiles; with `capture`, as a CUDA graph."""
    optimizer = plan.optimizer
    base_lr = plan.lr or lr
    opt = _make_optimizer(optimizer, param.params, base_lr, plan.history)
    key = (run.scale, run.size)

    def between_tiles():   # a long tiled step stops at the next tile; the last complete step's image is kept
        if run.stop.is_set():
            raise _Stop

    def evaluate():   # what a graph holds: the eager step below, its gradients as outputs (the graph's buffers)
        if param.project:
            param.project()
        img = param.image_fn()
        loss, terms = objective.evaluate(model.features(view(img), layers), img)
        grads = torch.autograd.grad(loss, param.params, allow_unused=True)
        return img.detach(), loss.detach(), {k: t.detach() for k, t in terms.items()}, grads

    def closure():
        if run.must_stop():
            raise _Stop
        if capture is not None:
            img, loss, terms, grads = capture(key, evaluate)
            for p, g in zip(param.params, grads):
                p.grad = g   # the graph's buffer: the optimiser reads it, the next replay refills it
            if run.callback:   # a callback may keep them: the next replay overwrites the graph's buffers
                loss, terms = loss.clone(), {k: t.clone() for k, t in terms.items()}
            run.record(img, loss, terms)
            return loss
        opt.zero_grad()
        if param.project:   # here, not after a step: L-BFGS's line search evaluates inside its step
            param.project()
        img = param.image_fn()
        if plan.tiling is None:
            loss, terms = objective.evaluate(model.features(view(img), layers), img)
        else:
            loss, terms = tiled.evaluate(model, objective, view(img), img, plan.tiling, wrap=wrap,
                                         between=between_tiles)
        loss.backward()
        run.record(img.detach(), loss.detach(), terms)
        return loss

    try:
        while run.done < run.budget:
            if optimizer == "lbfgs":   # invtool's: one evaluation per step, nothing read on the host
                if isinstance(view, _HeldTransform) and run.done % LBFGS_ITERS == 0:
                    view.redraw()   # a new function: its line search and curvature memory start afresh
                    opt.reset()
                opt.step(closure)
            elif optimizer != "lbfgs-torch":
                opt.lr = base_lr * _lr_factor(lr_schedule, run.done / run.budget)
                closure()
                opt.step()
            else:   # several iterations per call, so L-BFGS keeps its last line-search point
                if isinstance(view, _HeldTransform):   # one draw per call: a line search needs one function
                    view.redraw()
                    opt.state.clear()   # a new function: start the curvature memory afresh
                before = None if run.best_loss is None else run.best_loss.clone()
                opt.step(closure)
                if before is not None and not bool(run.best_loss < before):
                    opt.state.clear()   # stalled (a failed line search at a kink): restart the memory
            if run.sync_due() and (run.sync() or (tol > 0 and run.converged(tol))):
                break
    except _Stop:
        pass


class _Run:
    """The state of one `optimize` call across its scales: step counters, the loss history, the best image
    and loss of the current scale, snapshots, and why (if at all) the run ended early.

    The history (one row per step: total, then each term) and the best image are device buffers written
    in place, so a step costs no host sync and no new buffers; rows are copied to the host every `window`
    steps (`sync`), which is when the progress bar, the early stop and the non-finite check look at them.
    """

    def __init__(self, names: list[str], steps: int, window: int, save_every: int, callback, progress: bool,
                 notes: list[str]):
        self.names, self.total, self.window, self.save_every, self.callback = names, steps, window, save_every, callback
        self.notes = notes
        self.history: torch.Tensor | None = None   # [steps, 1 + terms], allocated at the first step
        self.host: list[list[float]] = []          # the rows of `history` synced so far
        self.steps = 0                             # steps done, over all scales
        self.scale, self.size, self.budget, self.done = 0, (0, 0), 0, 0   # the current scale and its steps done
        self.scale_starts: list[int] = []
        self.best_img: torch.Tensor | None = None  # of the current scale, on the device
        self.best_loss: torch.Tensor | None = None
        self.snapshots: list[tuple[int, torch.Tensor]] = []
        self.stop = threading.Event()              # set by SIGINT/SIGTERM
        self.asked_at: int | None = None           # the step at which the callback asked to stop
        self.reason, self.interrupted, self.stopped_early = "", False, False
        self.bar = tqdm(total=steps, disable=not progress, unit="step", dynamic_ncols=True, leave=False)
        self.start = time.perf_counter()

    def begin_scale(self, scale: int, size: tuple[int, int], budget: int) -> None:
        self.scale, self.size, self.budget, self.done = scale, size, budget, 0
        self.scale_starts.append(self.steps)
        self.best_img = self.best_loss = None   # a new size: the next step allocates them

    def must_stop(self) -> bool:
        """A signal came, the callback asked, or this scale's budget is spent."""
        return self.stop.is_set() or self.asked_at is not None or self.done >= self.budget

    def record(self, img: torch.Tensor, loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> None:
        """Log one evaluated step: history row, best image (in place), progress, snapshot, callback."""
        if self.history is None:
            self.history = loss.new_empty(self.total, 1 + len(terms))
        torch.stack([loss, *(t.detach().reshape(()) for t in terms.values())], out=self.history[self.steps])
        self.steps += 1
        self.done += 1
        if self.best_img is None:
            self.best_img, self.best_loss = img.clone(), loss.clone()
        else:   # NaN never compares lower; a finite loss replaces a non-finite best (a scale's first evaluation)
            better = (loss < self.best_loss) | (torch.isfinite(loss) & ~torch.isfinite(self.best_loss))
            torch.where(better, img, self.best_img, out=self.best_img)
            torch.where(better, loss, self.best_loss, out=self.best_loss)
        self.bar.update(1)
        if self.save_every and self.steps % self.save_every == 0:
            self.snapshots.append((self.steps, img.to("cpu", copy=True)))   # a copy: on the CPU, .cpu() would alias the live pixels
        if self.callback and self.callback(Step(self.steps, self.scale, img, loss, terms)) and self.asked_at is None:
            self.asked_at = self.steps

    def sync_due(self) -> bool:
        return self.steps - len(self.host) >= self.window or self.done >= self.budget

    def sync(self) -> str:
        """Copy new history rows to the host; return (and keep) a reason to stop: a non-finite loss, or ''."""
        first = len(self.host)
        if first < self.steps:   # every new row is checked: one L-BFGS call adds more than `window` of them
            new = self.history[first:self.steps].tolist()
            self.host.extend(new)
            self.bar.set_postfix(loss=f"{new[-1][0]:.4g}", refresh=False)
            bad = next((k for k, row in enumerate(new) if not math.isfinite(row[0])), None)
            if bad is not None and not self.reason:
                term = next((name for name, v in zip(self.names, new[bad][1:]) if not math.isfinite(v)), "the total")
                self.reason = f"non-finite loss in term {term!r} at step {first + bad + 1}"
        return self.reason

    def converged(self, tol: float) -> bool:
        """The best loss of this scale improved by less than `tol` (relative) over the last `window` steps."""
        losses = [row[0] for row in self.host[self.scale_starts[-1]:]]
        if len(losses) <= self.window:
            return False
        before, now = min(losses[:-self.window]), min(losses)
        return before - now < tol * abs(before)

    def end_scale(self, tol: float) -> bool:
        """After a scale: True (with `reason` set) when the whole run ends here; a note when only the scale
        stopped early (converged)."""
        self.reason = self.reason or self.sync()
        if self.stop.is_set():
            self.interrupted, self.reason = True, "interrupted"
        elif self.asked_at is not None:
            self.reason = f"the callback asked to stop at step {self.asked_at}"
        if self.reason:
            self.stopped_early = not self.interrupted
            return True
        if self.done < self.budget:
            self.stopped_early = True
            (sh, sw) = self.size
            self.notes.append(f"scale {self.scale + 1} ({sw}x{sh}) stopped early at step {self.done} of "
                              f"{self.budget}: the loss improved by less than {tol:g} over {self.window} steps")
        return False

    def result(self, param: Param, size: tuple[int, int], sizes, device) -> Result:
        """The Result: the last scale's best image, clamped (an unclamped parameterisation such as
        param.pyramid may end slightly outside [0, 1]), at the requested size."""
        self.bar.close()
        wall = time.perf_counter() - self.start
        image = (self.best_img if self.best_img is not None else param.image_fn().detach()).clamp(0, 1).cpu()
        if image.shape[-2:] != size:   # ended in a coarse scale: still return the requested size
            image = resize_image(image, *size)
            self.notes.append(f"ended at scale {len(self.scale_starts)} of {len(sizes)}; the image was upsampled")
        host = self.host
        return Result(image=image, loss=float(self.best_loss) if self.best_loss is not None else math.nan,
                      history=[row[0] for row in host],
                      term_history={name: [row[i + 1] for row in host] for i, name in enumerate(self.names)},
                      steps=len(host), wall_time=wall, steps_per_sec=len(host) / wall if wall > 0 else 0.0,
                      sizes=sizes, scale_starts=self.scale_starts, snapshots=self.snapshots,
                      interrupted=self.interrupted, stopped_early=self.stopped_early, stop_reason=self.reason,
                      notes=self.notes, device=str(device))


def _model_view(transforms: Transform | None, optimizer: str, seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """What the model sees of an image: itself, or `transforms` of it drawing from a generator seeded with
    `seed` (new draws at each step; held between L-BFGS calls, see `_HeldTransform`). A deterministic
    transform is applied as it is: nothing to hold, and L-BFGS keeps its memory across calls."""
    if transforms is None:
        return lambda img: img
    if not is_random(transforms):
        return lambda img: transforms(img, None)
    generator = torch.Generator().manual_seed(seed)
    if optimizer in LBFGS_KINDS:
        return _HeldTransform(transforms, generator)
    return lambda img: transforms(img, generator)


class _HeldTransform:
    """A random transform that keeps one draw until `redraw()`, for L-BFGS: all evaluations of one call
    (its line searches) must see one deterministic function, so each call redraws once and each
    evaluation rewinds a private generator to the state that redraw left."""

    def __init__(self, transform: Transform, source: torch.Generator):
        self.transform, self.source, self.draws = transform, source, torch.Generator()
        self.state = self.draws.get_state()

    def redraw(self) -> None:
        """A new transform: the private generator re-seeded from the run's."""
        self.draws.manual_seed(int(torch.randint(2**62, (1,), generator=self.source)))
        self.state = self.draws.get_state()

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        self.draws.set_state(self.state)
        return self.transform(img, self.draws)


def chain(results: list[Result], size: tuple[int, int] | None = None, notes=()) -> Result:
    """One Result for consecutive runs: restarts then a run from their average (inversion), or the octaves
    of DeepDream, each a run at a larger size.

    The last run's image, loss and ending, except that an interrupted chain keeps the best image of the
    runs at the last run's size (a run cut short after a few steps is worse than a finished one; a coarser
    run's loss is not comparable). Histories, snapshots and times end to end, each run's stages marked as
    scales. `size`: the final (h, w), to which an image of a chain that ended early is upsampled;
    `notes`: the caller's, put first.
    """
    last, offsets = results[-1], [0]
    if last.interrupted:
        same = [r for r in results if math.isfinite(r.loss) and r.image.shape == last.image.shape]
        best = min(same, key=lambda r: r.loss, default=last)
        last = replace(last, image=best.image, loss=best.loss)
    notes = list(notes)
    if size is not None and last.image.shape[-2:] != tuple(size):
        (h, w), (lh, lw) = size, last.image.shape[-2:]
        last = replace(last, image=resize_image(last.image, h, w))
        notes.append(f"ended at {lw}x{lh} (run {len(results)} of the chain); the image was upsampled to {w}x{h}")
    for r in results[:-1]:
        offsets.append(offsets[-1] + r.steps)
    steps, wall = offsets[-1] + last.steps, sum(r.wall_time for r in results)
    return replace(
        last, steps=steps, wall_time=wall, steps_per_sec=steps / wall if wall > 0 else 0.0,
        history=[v for r in results for v in r.history],
        term_history={k: [v for r in results for v in r.term_history[k]] for k in last.term_history},
        sizes=[s for r in results for s in r.sizes],
        scale_starts=[o + s for o, r in zip(offsets, results) for s in r.scale_starts],
        snapshots=[(o + step, img) for o, r in zip(offsets, results) for step, img in r.snapshots],
        stopped_early=any(r.stopped_early for r in results),
        notes=list(dict.fromkeys([*notes, *(n for r in results for n in r.notes)])))


def require_size(model, layers, h: int, w: int, what: str = "the image") -> None:
    """InvtoolError when an h x w input is too small for the deepest of `layers`."""
    if not layers:
        return
    need = model.min_size(layers)
    if min(h, w) < need:
        raise InvtoolError(f"{what} is {w}x{h}, smaller than layers {', '.join(layers)} can take; "
                           f"use at least {need}x{need}")


def step_budgets(steps: int, scales: int, refine: int) -> list[int]:
    """Steps per scale: even over the scales up to the working size; each of the last `refine` scales (the doublings
    past it) gets a quarter of the one before, since a step there costs four times as much, so that every doubling
    takes about as long as the working-size run. Each scale gets at least one step (steps >= scales)."""
    weights = [1.0] * (scales - refine) + [0.25 ** k for k in range(1, refine + 1)]
    budgets = [max(1, int(steps * wt / sum(weights))) for wt in weights]
    budgets[scales - refine - 1] += steps - sum(budgets)   # the rest to the last scale at the working size
    return budgets


def _doublings(side: int, work_size: int | None) -> int:
    """How many times a run at `work_size` must double to reach `side` (0 when it is not larger)."""
    return 0 if not work_size or side <= work_size else math.ceil(math.log2(side / work_size))


def scale_sizes(h: int, w: int, scales: int, min_side: int, factor: float = 2.0, step: int = 1,
                what: str = "scales") -> tuple[list[tuple[int, int]], list[str]]:
    """Coarse-to-fine sizes, coarsest first, ending at (h, w): each `factor` times smaller than the next (2 for
    the engine's scales, DeepDream's octave scale for `visualize`), rounded to a multiple of `step` (the model's
    alignment, `geometry.size_step`, so that a network that concatenates maps of several strides takes them);
    those under `min_side` are left out, with a note."""
    def coarse(n, k):
        return max(1, round(n / factor ** k)) if step == 1 else max(step, step * round(n / factor ** k / step))
    sizes = [(coarse(h, k), coarse(w, k)) for k in range(scales - 1, 0, -1)] + [(h, w)]
    usable = [s for i, s in enumerate(sizes) if min(s) >= min_side and s not in sizes[i + 1:]] or sizes[-1:]
    notes = [] if len(usable) == len(sizes) else [
        f"used {len(usable)} of {scales} {what}: smaller ones are under the layers' minimum of {min_side} px"
        + (f" or the same size once rounded to a multiple of {step} px" if step > 1 else "")]
    return usable, notes


def _check_options(optimizer: str, lr_schedule, steps: int, scales: int, window: int) -> None:
    if optimizer not in OPTIMIZERS:
        raise InvtoolError(f"unknown optimizer {optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
    if not callable(lr_schedule) and lr_schedule not in LR_SCHEDULES:
        raise InvtoolError(f"unknown lr schedule {lr_schedule!r}; use one of {', '.join(LR_SCHEDULES)}")
    if steps < 1 or scales < 1 or window < 1:
        raise InvtoolError(f"steps, scales and window must be at least 1 (got {steps}, {scales}, {window})")


def _make_optimizer(name: str, params, lr: float, history: int = LBFGS_HISTORY):
    """The optimiser `name`; invtool's own (invtool.optimizers, invtool.lbfgs) but for torch's L-BFGS, whose
    torch.optim import costs seconds of start-up (see invtool.optimizers)."""
    if name == "adam":
        return Adam(params, lr=lr)
    if name == "sgd":
        return SGD(params, lr=lr, momentum=MOMENTUM)
    if name == "lbfgs":
        return LBFGS(params, lr=lr, history_size=history)
    # 20 iterations per call; the closure ends the call when the budget is spent. Tolerances off: the
    # engine's own early stop decides, whatever the loss scale.
    return torch.optim.LBFGS(params, lr=lr, max_iter=20, max_eval=1_000_000, history_size=history,
                             tolerance_grad=0.0, tolerance_change=0.0, line_search_fn="strong_wolfe")


def _lr_factor(schedule, fraction: float) -> float:
    if callable(schedule):
        return schedule(fraction)
    if schedule == "step":
        return 1.0 if fraction < 0.5 else 0.1 if fraction < 0.75 else 0.01
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * fraction))
    return 1.0


@contextmanager
def _stop_on_signals(stop: threading.Event):
    """SIGINT/SIGTERM set `stop` (the run ends cleanly at the next step); a second Ctrl-C aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
