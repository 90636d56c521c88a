"""Pointwise activations, Clip, and Softmax/LogSoftmax (whose axis meaning changed at opset 13)."""
import torch
import torch.nn.functional as F

from ..registry import converter
from .elementwise import unsigned_via_int64


@converter("Relu")
def relu(x):
    return torch.relu(x)


@converter("LeakyRelu")
def leaky_relu(x, *, alpha=0.01):
    return F.leaky_relu(x, alpha)


@converter("PRelu", since=7)
def prelu(x, slope):
    """Slope broadcasts numpy-style against x (ONNX unidirectional broadcasting), not per channel."""
    return torch.where(x >= 0, x, x * slope)


@converter("PRelu")
def prelu_legacy(x, slope):
    """Before opset 7 the slope is one value or one per channel: a slope of shape [C] applies along
    axis 1 (as Caffe2 and torch's PReLU export it), where numpy broadcasting would take the last axis."""
    if slope.dim() == 1 and slope.numel() > 1 and x.dim() > 2 and slope.shape[0] == x.shape[1]:
        slope = slope.reshape(-1, *[1] * (x.dim() - 2))
    return prelu(x, slope)


@converter("Elu")
def elu(x, *, alpha=1.0):
    return F.elu(x, alpha)


@converter("Selu")
def selu(x, *, alpha=1.67326319217681884765625, gamma=1.05070102214813232421875):
    return gamma * torch.where(x > 0, x, alpha * torch.expm1(x))


@converter("HardSigmoid")
def hard_sigmoid(x, *, alpha=0.2, beta=0.5):
    return torch.clamp(alpha * x + beta, 0.0, 1.0)


@converter("Gelu")
def gelu(x, *, approximate="none"):
    return F.gelu(x, approximate=approximate)


@converter("Clip")
@unsigned_via_int64(ordered=True)
def clip(x, min=None, max=None):
    """Bounds are attributes before opset 11 and optional inputs from 11 on; both arrive here as min/max."""
    if min is None and max is None:
        return x
    return torch.clamp(x, min, max)


def _flattened(fn, x, axis):
    """Before opset 13 Softmax flattens x to 2-D at `axis` and normalises over the whole trailing block."""
    return fn(x.flatten(axis if axis >= 0 else axis + x.dim()), dim=-1).reshape(x.shape)


@converter("Softmax")
def softmax(x, *, axis=1):
    return _flattened(torch.softmax, x, axis)


@converter("Softmax", since=13)
def softmax_13(x, *, axis=-1):
    return torch.softmax(x, dim=axis)


@converter("LogSoftmax")
def log_softmax(x, *, axis=1):
    return _flattened(torch.log_softmax, x, axis)


@converter("LogSoftmax", since=13)
def log_softmax_13(x, *, axis=-1):
    return torch.log_softmax(x, dim=axis)


# activations that are one torch function of x
converter("Sigmoid")(torch.sigmoid)
converter("Tanh")(torch.tanh)
converter("HardSwish")(F.hardswish)
converter("Softplus")(F.softplus)
converter("Softsign")(F.softsign)
