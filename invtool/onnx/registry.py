"""The converter table: ONNX op type -> torch function, by the opset version it holds since.

A converter is a plain function in the style of tinygrad's ONNX runner: the node's inputs are its
positional arguments (torch tensors, None for an omitted optional input) and the node's attributes are
keyword arguments carrying their ONNX names and defaults, so a node passes through with no per-op
parsing. It returns a tensor, or (registered with `multi_output=True`) a tuple of the node's outputs.

Example:
    @converter("Relu")
    def relu(x):
        return torch.relu(x)

    @converter("Softmax", since=13)          # the meaning changed at opset 13
    def softmax_13(x, *, axis=-1): ...
"""
from typing import Callable

from ..errors import InvtoolError

# op type -> {since version -> converter}
CONVERTERS: dict[str, dict[int, Callable]] = {}
MULTI_OUTPUT: set[Callable] = set()  # converters that return a tuple, one entry per node output


def converter(*op_types: str, since: int = 1, multi_output: bool = False):
    """Register a function for these op types from opset `since` on (until a newer one takes over).

    `multi_output=True`: the function always returns a tuple, one entry per node output.
    """
    def register(fn):
        if multi_output:
            MULTI_OUTPUT.add(fn)
        for op in op_types:
            CONVERTERS.setdefault(op, {})[since] = fn
        return fn
    return register


def find_converter(op_type: str, opset: int, node_name: str = "") -> Callable:
    """The converter of the highest version <= opset, so an op unchanged in a newer opset still loads."""
    _load_ops()
    versions = CONVERTERS.get(op_type)
    usable = [v for v in versions or () if v <= opset]
    if not usable:
        where = f" (node {node_name!r})" if node_name else ""
        why = f"at opset {opset}" if versions else "at all"
        raise InvtoolError(f"unsupported op {op_type}{where} {why}; supported: {', '.join(sorted(CONVERTERS))}")
    return versions[max(usable)]


def supported_ops() -> list[str]:
    _load_ops()
    return sorted(CONVERTERS)


def _load_ops():
    from . import ops  # noqa: F401  (importing the op modules fills CONVERTERS)
