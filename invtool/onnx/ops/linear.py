"""Gemm and MatMul: the fully connected layers of classic CNNs."""
import torch
import torch.nn.functional as F

from ..registry import converter


@converter("Gemm", since=7)
def gemm(a, b, c=None, *, alpha=1.0, beta=1.0, transA=0, transB=0):
    """alpha * A' @ B' + beta * C, C optional and broadcast; torch's nn.Linear export takes F.linear."""
    if transA:
        a = a.t()
    if transB and alpha == 1.0 and beta == 1.0 and (c is None or c.dim() == 1):
        return F.linear(a, b, c)
    y = a @ (b.t() if transB else b)
    if alpha != 1.0:
        y = alpha * y
    if c is not None:
        y = y + (beta * c if beta != 1.0 else c)
    return y


@converter("Gemm")
def gemm_legacy(a, b, c, *, alpha=1.0, beta=1.0, broadcast=0, transA=0, transB=0):
    """Gemm before opset 7, whose `broadcast` told whether C broadcasts: numpy broadcasting covers both."""
    return gemm(a, b, c, alpha=alpha, beta=beta, transA=transA, transB=transB)


@converter("MatMul")
def matmul(a, b):
    return torch.matmul(a, b)
