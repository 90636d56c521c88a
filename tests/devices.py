"""Run a rebuilt module with its weights and inputs on a device, as FeatureModel places them.

`run_on_fake_cuda` needs no GPU: under torch's FakeTensorMode tensors carry a device, shape and dtype
but no data, so any CPU/CUDA mix raises as it would on a GPU, and so does reading the values of a CUDA
tensor (`.tolist()`, `.item()`: DataDependentOutputException), which on a GPU would wait for it.
CPU tensors made from known values (initializers, attributes, `Shape` of a tensor) keep their data
as fake-tensor constants, so shape arithmetic on the host runs for real.

Example:
    >>> shapes = run_on_fake_cuda(model, {"image": x}, ["output0"])
"""
import contextlib
from unittest import mock

import numpy as np
import onnx
import pytest
import torch
from torch._subclasses import fake_tensor

from invtool.onnx.graph import build, initializers

# with an index: a bare "cuda" would ask the (absent) driver for the current device
FAKE_CUDA = torch.device("cuda", 0)
NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")   # for the real GPU's cases


@contextlib.contextmanager
def fake_cuda():
    """A FakeTensorMode where CPU tensors of up to 65536 known elements keep their values (torch keeps
    them for one element only by default; a shape has several), and fake CUDA tensors can be indexed."""
    with mock.patch.object(fake_tensor, "CONSTANT_NUMEL_LIMIT", 1 << 16), \
            fake_tensor.FakeTensorMode(allow_non_fake_inputs=True) as mode, _FakeCudaIndexing():
        yield mode


class _FakeCudaIndexing(torch.overrides.TorchFunctionMode):
    """`x[...]` of a fake CUDA tensor as the aten ops it means: torch's Python indexing takes a CUDA device
    guard before dispatching, which a build without CUDA does not have ("PyTorch is not linked with
    support for cuda devices"). Ints, slices with positive steps, None and Ellipsis."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") == "__getitem__" and args[0].device.type == "cuda":
            return _basic_index(*args)
        return func(*args, **(kwargs or {}))


def _basic_index(x: torch.Tensor, index) -> torch.Tensor:
    index = list(index) if isinstance(index, tuple) else [index]
    ellipsis = [k for k, i in enumerate(index) if i is Ellipsis]
    if ellipsis:
        fill = x.dim() - sum(i is not None for i in index) + 1
        index[ellipsis[0]:ellipsis[0] + 1] = [slice(None)] * fill
    dim = 0
    for i in index:
        if i is None:
            x, dim = x.unsqueeze(dim), dim + 1
        elif isinstance(i, int):
            x = x.select(dim, i)
        elif isinstance(i, slice) and (i.step or 1) > 0:
            x, dim = torch.ops.aten.slice(x, dim, *i.indices(x.shape[dim])), dim + 1
        else:
            raise TypeError(f"fake CUDA indexing takes ints, slices with positive steps, None and ...; got {i!r}")
    return x


def run_placed(model: onnx.ModelProto, inputs: dict[str, np.ndarray], outputs, device) -> list[torch.Tensor]:
    """Build with every initializer on `device` (as FeatureModel does), move the module there, and run it
    on the graph's other inputs, also on `device`."""
    weights = {name: t.to(device) for name, t in initializers(model).items()}
    module = build(model, list(outputs), weights=weights).to(device)
    args = [torch.from_numpy(inputs[i.name]).to(device) for i in model.graph.input if i.name not in weights]
    with torch.no_grad():
        got = list(module(*args))
    for name, t in zip(outputs, got):
        assert not t.is_floating_point() or t.device.type == torch.device(device).type, \
            f"{name}: a float output on {t.device}, not {device}"
    return got


def run_on_fake_cuda(model: onnx.ModelProto, inputs: dict[str, np.ndarray], outputs) -> list[tuple[int, ...]]:
    """The output shapes of the rebuilt model with weights and inputs on a fake CUDA device; raises on
    any mix of CPU and CUDA tensors, or any read of a CUDA tensor's values."""
    with fake_cuda():
        return [tuple(t.shape) for t in run_placed(model, inputs, outputs, FAKE_CUDA)]
