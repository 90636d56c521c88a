"""One step's evaluation captured as a CUDA graph and replayed: the model's forward pass to the requested layers,
the objective and the backward pass launched as one graph instead of hundreds of small kernels (issue #32).

`Capture` holds the logic, independent of CUDA: for a key (the scale and the image size) it runs `WARMUP`
evaluations eagerly (real steps: their results are used), checks the first of them for random draws, captures
the evaluation once, and replays it for every later step with that key; a new key (the next scale, another size)
captures again. Its `backend` does the device's part: `CudaGraphs` on CUDA (`backend(device)`); tests give a fake
one that counts captures and replays by calling the function, so all of this is tested on the CPU.

What is captured must read and write the same memory at every step, and draw nothing on the host:
- the inputs are the parameters' own tensors, which every optimiser updates in place;
- the outputs (the image, the loss, the terms, the gradients) are the graph's buffers, refilled by each replay:
  `autograd.grad` inside the graph, and the engine hands the buffers to the parameters as their `.grad`;
- an evaluation that draws random numbers (sliced-Wasserstein's projections from their own generator) would
  replay one draw for ever: `random_ops` finds them in the first warm-up step and the run stays eager, with a
  note; so does a capture that fails (a host sync inside the objective), and the engine does not try where it
  cannot work: on the CPU, with tiles, with random transforms (a new shift or shape at each step).

Example:
    >>> cap = Capture(backend(device))
    >>> img, loss, terms, grads = cap((scale, (h, w)), evaluate)   # evaluate() -> the same four, fresh tensors
"""
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

WARMUP = 2   # eager evaluations before a capture (cuDNN/cuBLAS initialise and pick algorithms outside the graph)


class Capture:
    """Evaluations keyed by what fixes their shapes: eager for the first `warmup` of a key, then one capture and
    replays. `notes` says why capture stopped (after which every call is eager); `captures` counts them."""

    def __init__(self, backend, warmup: int = WARMUP):
        self.backend, self.warmup = backend, warmup
        self.key, self.graph, self.outputs, self.seen = None, None, None, 0
        self.captures, self.replays = 0, 0
        self.off: str = ""          # why the run evaluates eagerly from now on ("" while capturing works)
        self.notes: list[str] = []

    def __call__(self, key, fn: Callable[[], tuple]):
        """fn()'s outputs for this step: eager, captured then replayed, or replayed."""
        if self.off:
            return fn()
        if key != self.key:   # a new size: the old graph and its buffers go
            self.key, self.graph, self.outputs, self.seen = key, None, None, 0
        if self.graph is not None:
            self.backend.replay(self.graph)
            self.replays += 1
            return self.outputs
        if self.seen < self.warmup:
            self.seen += 1
            if self.seen == 1:
                drawn = []
                with random_ops(drawn):
                    out = self.backend.warm(fn)
                if drawn:
                    self.stop(f"the objective draws random numbers ({', '.join(sorted(set(drawn)))}) at each step")
                return out
            return self.backend.warm(fn)
        try:
            self.graph, self.outputs = self.backend.capture(fn)
        except Exception as e:   # a sync or a host read inside the evaluation: capture cannot hold it
            self.graph = self.outputs = None
            self.stop(f"capture failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
            return fn()
        self.captures += 1
        self.backend.replay(self.graph)   # capturing records the work without doing it
        self.replays += 1
        return self.outputs

    def stop(self, reason: str) -> None:
        self.off, self.graph, self.outputs = reason, None, None
        self.notes.append(f"CUDA graphs off: {reason}; evaluated eagerly")


class CudaGraphs:
    """torch.cuda's graphs, as the CUDA Graphs notes of torch's documentation use them: warm-up on a side stream,
    capture with `torch.cuda.graph` (which takes its own side stream and a private memory pool), replay."""

    def __init__(self):
        self.stream = torch.cuda.Stream()

    def warm(self, fn):
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            out = fn()
        torch.cuda.current_stream().wait_stream(self.stream)
        return out

    def capture(self, fn):
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = fn()
        return graph, out

    def replay(self, graph) -> None:
        graph.replay()


def backend(device) -> CudaGraphs | None:
    """The capture backend for `device`: CUDA graphs on CUDA, none elsewhere (tests replace this function)."""
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        return CudaGraphs()
    return None


class random_ops(TorchDispatchMode):
    """Collects into `found` the names of the operators that draw random numbers (torch tags them
    `nondeterministic_seeded`: randn, rand, normal_, dropout's bernoulli, randperm...) while active."""

    def __init__(self, found: list):
        super().__init__()
        self.found = found

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if torch.Tag.nondeterministic_seeded in func.tags:
            self.found.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))
