"""The converter table: (domain, op type) -> torch function, by the opset version it holds since.

A converter is a plain function in the style of tinygrad's ONNX runner: the node's inputs are its
positional arguments (torch tensors, None for an omitted optional input) and the node's attributes are
keyword arguments carrying their ONNX names and defaults, so a node passes through with no per-op
parsing. It returns a tensor, or (registered with `multi_output=True`) a tuple of the node's outputs.
The signature is the contract: the builder refuses, before anything runs, a node with an attribute
the function has no parameter for, or with more inputs than it takes.

`host_inputs` names the inputs whose values the converter reads into Python (shapes, axes, pads,
scales): the builder keeps them on the CPU, so reading them never waits for a GPU (see graph.py).
`const_inputs` names the inputs that must be build-time constants (a quantised op's scales and zero
points): the builder refuses, in one line, a node where one of them depends on the image.

Example:
    @converter("Relu")
    def relu(x):
        return torch.relu(x)

    @converter("Softmax", since=13)          # the meaning changed at opset 13
    def softmax_13(x, *, axis=-1): ...

    @converter("Reshape", host_inputs=("shape",))
    def reshape(x, shape, *, allowzero=0): ...
"""
import inspect
from typing import Callable

import onnx

from ..errors import InvtoolError

DEFAULT_DOMAIN = ""

# (domain, op type) -> {since version -> converter}
CONVERTERS: dict[tuple[str, str], dict[int, Callable]] = {}
MULTI_OUTPUT: set[Callable] = set()  # converters that return a tuple, one entry per node output
HOST_INPUTS: dict[Callable, frozenset[int]] = {}  # converter -> positions of the inputs it reads as values
CONST_INPUTS: dict[Callable, dict[int, str]] = {}  # converter -> {position: name} of inputs that must be constants


def domain_key(domain: str) -> str:
    """"" and "ai.onnx" both name the default ONNX domain."""
    return DEFAULT_DOMAIN if domain in ("", "ai.onnx") else domain


def op_name(op_type: str, domain: str = DEFAULT_DOMAIN) -> str:
    """How messages name an op: `Relu`, or `com.example.Relu` outside the default domain."""
    domain = domain_key(domain)
    return f"{domain}.{op_type}" if domain else op_type


def converter(*op_types: str, since: int = 1, multi_output: bool = False, domain: str = DEFAULT_DOMAIN,
              host_inputs=(), const_inputs=()):
    """Register a function for these op types from opset `since` on (until a newer one takes over).

    `multi_output=True`: the function always returns a tuple, one entry per node output.
    `domain`: the ONNX domain of the op types ("" or "ai.onnx" is the standard one).
    `host_inputs`: names of positional parameters whose values the function reads on the host.
    `const_inputs`: names of positional parameters that must be build-time constants.
    """
    def register(fn):
        inputs = _signature(fn)[0]  # refuses a **kwargs catch-all now, not at the first model
        if multi_output:
            MULTI_OUTPUT.add(fn)
        if host_inputs:
            missing = [n for n in host_inputs if n not in (inputs or ())]
            if missing:
                raise ValueError(f"{fn.__name__} has no positional parameter {missing[0]!r}")
            HOST_INPUTS[fn] = HOST_INPUTS.get(fn, frozenset()) | {inputs.index(n) for n in host_inputs}
        missing = [n for n in const_inputs if n not in (inputs or ())]
        if missing:
            raise ValueError(f"{fn.__name__} has no positional parameter {missing[0]!r}")
        if const_inputs:
            CONST_INPUTS[fn] = {inputs.index(n): n for n in const_inputs}
        for op in op_types:
            CONVERTERS.setdefault((domain_key(domain), op), {})[since] = fn
        return fn
    return register


def find_converter(op_type: str, opset: int, node_name: str = "", domain: str = DEFAULT_DOMAIN) -> Callable:
    """The converter of the highest version <= opset, so an op unchanged in a newer opset still loads.

    An op of another domain is found only under that domain: a custom `Relu` is never taken for ONNX's.
    """
    _load_ops()
    versions = CONVERTERS.get((domain_key(domain), op_type))
    usable = [v for v in versions or () if v <= opset]
    if not usable:
        where = f" (node {node_name!r})" if node_name else ""
        why = f"at opset {opset}" if versions else "at all"
        domains = {d for d, _ in CONVERTERS}
        if domain_key(domain) not in domains:  # a custom domain: say what to do, then what is known
            why += (f": invtool has no converters for domain {domain!r} (it knows "
                    f"{', '.join(repr(d or 'ai.onnx') for d in sorted(domains))}); export the model without custom ops")
        raise InvtoolError(f"unsupported op {op_name(op_type, domain)}{where} {why}; "
                           f"supported: {', '.join(supported_ops())}")
    return versions[max(usable)]


def check_node(fn: Callable, op_type: str, node_name: str, opset: int, n_inputs: int, attributes,
               domain: str = DEFAULT_DOMAIN):
    """Raise InvtoolError unless `fn` takes `n_inputs` inputs and every one of these attribute names.

    An attribute may name a keyword-only parameter, or a positional one that no input fills (an input
    that was an attribute in older opsets, such as Squeeze's axes).
    """
    inputs, keywords, variadic = _signature(fn)
    where = f"{op_name(op_type, domain)} node {node_name!r} (opset {opset})"
    if inputs is None:  # a builtin with no readable signature: no attributes, inputs as the spec allows
        limit = _spec_max_inputs(op_type, opset) if domain_key(domain) == DEFAULT_DOMAIN else None
        if limit is not None and n_inputs > limit:
            raise InvtoolError(f"{where} has {n_inputs} inputs; the op takes at most {limit}")
        unknown = sorted(attributes)
    else:
        if n_inputs > len(inputs) and not variadic:
            raise InvtoolError(f"{where} has {n_inputs} inputs; its converter {fn.__name__} takes at most "
                               f"{len(inputs)} ({', '.join(inputs)})")
        accepted = set(keywords) | set(inputs[n_inputs:])
        unknown = sorted(a for a in attributes if a not in accepted)
    if unknown:
        known = sorted(set(keywords) | set((inputs or [])[n_inputs:]))
        raise InvtoolError(f"{where} has attribute {unknown[0]!r}, which its converter does not support; "
                           f"supported attributes: {', '.join(known) or 'none'}")


def _spec_max_inputs(op_type: str, opset: int) -> int | None:
    try:
        return onnx.defs.get_schema(op_type, opset, "").max_input
    except onnx.defs.SchemaError:
        return None


def _signature(fn: Callable):
    """(positional parameter names or None when unreadable, keyword-only names, takes *args)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # C builtins such as torch.add
        return None, [], True
    kinds = inspect.Parameter
    inputs = [p.name for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
    keywords = [p.name for p in params if p.kind == kinds.KEYWORD_ONLY]
    if any(p.kind == kinds.VAR_KEYWORD for p in params):
        raise ValueError(f"converter {fn.__name__} takes **kwargs: name its attributes instead")
    return inputs, keywords, any(p.kind == kinds.VAR_POSITIONAL for p in params)


def supported_ops() -> list[str]:
    _load_ops()
    return sorted(op_name(op, domain) for domain, op in CONVERTERS)


def _load_ops():
    from . import ops  # noqa: F401  (importing the op modules fills CONVERTERS)
