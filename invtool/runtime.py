"""ONNX Runtime, the oracle and fast forward path: one way to open a session, from either wheel.

ONNX Runtime ships as `onnxruntime` (CPU) and `onnxruntime-gpu` (CUDA); both install the same `onnxruntime`
module, so one environment must have exactly one of them. invtool's core needs neither (gradients come
from the rebuilt torch graph): `pip install 'invtool[cpu]'` or `'invtool[gpu]'` adds one.

Example:
    >>> session = ort_session(onnx.load("models/vgg16.onnx").SerializeToString())
    >>> session.get_providers()
    ['CPUExecutionProvider']
"""
from .errors import InvtoolError


def ort_session(model, providers=("CPUExecutionProvider",)):
    """An InferenceSession of `model` (a path or serialised bytes) on the first of `providers` it has."""
    try:
        import onnxruntime
    except ImportError:
        raise InvtoolError("ONNX Runtime is not installed; pip install 'invtool[cpu]', or 'invtool[gpu]' "
                           "for CUDA (one of the two, not both)") from None
    return onnxruntime.InferenceSession(model, providers=list(providers))

