"""Rebuild the part of an ONNX graph that some tensors need, as a torch.fx GraphModule.

Walks back from the requested tensors to keep only the nodes they depend on, folds every node whose
inputs are all known at build time (initializers, `Constant` nodes, shape arithmetic on them) into a
constant, and emits one `call_function` per remaining node. Weights, whether initializers or `Constant`
nodes, become buffers of the module: never parameters, so only the image is ever optimised. Tensor
attributes (ConstantOfShape's `value`) become constants too, never literals in the generated code.

Devices. A module runs on the device of its weights, and a value is on the device only when it depends
on the image; shape arithmetic stays on the CPU, so reading a shape never waits for the GPU:
- Build-time folding computes on the CPU, from the file's own values (initializers read from the
  proto, attributes), whatever device `weights` are on; the results are placed when the module uses them.
- At run time a tensor is a *host* value when it comes from `Shape`/`Size`, or from a node whose
  run-time inputs are all host values; every other tensor is a *device* value.
- A constant used by a node is put on the host when that node is a host node, or when the input is one
  its converter reads into Python (`host_inputs` in the registry: Reshape's shape, Resize's scales, ...);
  else it is a buffer on the weights' device (the `weights` tensor itself for an initializer, so modules
  share it). Host constants are plain attributes, not buffers, so `Module.to(device)` leaves them on
  the CPU.
- A host value meeting device values at an input its converter does not read on the host is moved to
  the device by an explicit node (a small host-to-device copy, never a sync).
- Converters create the tensors they make on their input's device.
Keep a module as built: a deep copy or re-codegen turns host constants into ordinary buffers, which
still computes the same but may read shapes back from the device.

Example:
    >>> gm = build(onnx.load("models/vgg16.onnx"), ["conv1_1", "pool2"])
    >>> conv1_1, pool2 = gm(torch.rand(1, 3, 64, 64))
"""
import re

import numpy as np
import onnx
import torch
import torch.fx as fx
from onnx import numpy_helper
from torch import nn

from ..errors import InvtoolError
from .circular import PADDED_OPS, circular
from .registry import CONST_INPUTS, HOST_INPUTS, MULTI_OUTPUT, check_node, domain_key, find_converter, op_name

SHAPE_OPS = {"Shape", "Size"}  # default-domain ops whose output is read from the input's shape alone


def opsets_of(model: onnx.ModelProto) -> dict[str, int]:
    """Domain ("" for the default one, also when written "ai.onnx") -> the opset version imported."""
    return {domain_key(imp.domain): imp.version for imp in model.opset_import}


def to_torch(array: np.ndarray) -> torch.Tensor:
    """A numpy value as a torch tensor; 16-bit floats become float32 (CPU kernels want it)."""
    if array.dtype.name in ("int4", "uint4"):  # quantised 4-bit values (ml_dtypes), which torch cannot hold
        array = array.astype(np.int8 if array.dtype.name == "int4" else np.uint8)
    t = torch.from_numpy(np.array(array, copy=True))
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def node_attributes(node: onnx.NodeProto) -> dict:
    """The node's attributes as Python values under their ONNX names (strings decoded, tensors torch,
    on the CPU)."""
    attrs = {}
    for a in node.attribute:
        if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            raise InvtoolError(f"node {node.name or node.op_type!r} ({node.op_type}) has a subgraph; "
                               "control flow is not supported, export the model without it")
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, onnx.TensorProto):
            v = to_torch(numpy_helper.to_array(v))
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [s.decode() for s in v]
        attrs[a.name] = v
    return attrs


# value types torch cannot compute in, refused by name at build time: {ONNX type: (reason, what to do)}
REFUSED_TYPES = {
    onnx.TensorProto.STRING: ("torch has no string tensors", "keep string processing outside the model"),
    **{getattr(onnx.TensorProto, t): ("torch has no arithmetic for floats narrower than 16 bits",
                                      "convert the model to float16 or float32")
       for t in onnx.TensorProto.DataType.keys() if t.startswith(("FLOAT8", "FLOAT6", "FLOAT4"))},
}


def check_value_types(graph: onnx.GraphProto, nodes, outputs):
    """Refuse a needed value whose type REFUSED_TYPES lists: graph inputs, outputs and annotated values,
    initializers, the types that attributes name (Cast's `to`, QuantizeLinear's `output_dtype`) and
    tensor attributes."""
    used = {n for node in nodes for n in (*node.input, *node.output)} | set(outputs)
    found = [(f"tensor {v.name!r}", v.type.tensor_type.elem_type)
             for v in (*graph.input, *graph.output, *graph.value_info) if v.name in used]
    found += [(f"tensor {t.name!r}", t.data_type) for t in graph.initializer if t.name in used]
    found += [(f"{node.op_type} node {node.name!r} attribute {a.name!r}",
               a.i if a.name in ("to", "output_dtype", "dtype") and a.type == onnx.AttributeProto.INT
               else a.t.data_type if a.type == onnx.AttributeProto.TENSOR else None)
              for node in nodes for a in node.attribute]
    for what, t in found:
        if t in REFUSED_TYPES:
            reason, fix = REFUSED_TYPES[t]
            raise InvtoolError(f"{onnx.TensorProto.DataType.Name(t)} {what} is not supported: {reason}; {fix}")


def initializers(model: onnx.ModelProto) -> dict[str, torch.Tensor]:
    return {t.name: to_torch(numpy_helper.to_array(t)) for t in model.graph.initializer}


def needed_nodes(graph: onnx.GraphProto, outputs) -> list[onnx.NodeProto]:
    """The nodes the given tensors depend on, in graph (topological) order."""
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
    keep, stack = set(), [producer[o] for o in outputs if o in producer]
    while stack:
        i = stack.pop()
        if i not in keep:
            keep.add(i)
            stack.extend(producer[t] for t in graph.node[i].input if t in producer)
    return [graph.node[i] for i in sorted(keep)]


def _output(result, k: int):
    """Output k of a multi-output converter's result."""
    return result[k]


def _spread(y: torch.Tensor, index: torch.Tensor, total: int) -> torch.Tensor:
    """`y`'s channels placed at `index` of `total` channels, zeros elsewhere (a narrowed Conv's output)."""
    return y.new_zeros((y.shape[0], total, *y.shape[2:])).index_copy(1, index, y)


def _to_device_of(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A host value moved to the device of the device value it meets."""
    return t.to(like.device)


def build(model: onnx.ModelProto, outputs, *, pool: str = "max", padding: str = "zeros",
          weights: dict[str, torch.Tensor] | None = None, dtype: torch.dtype = torch.float32,
          channels: dict[str, tuple[int, ...]] | None = None) -> fx.GraphModule:
    """A module computing `outputs` (tensor names) from the graph's non-initializer inputs.

    Args:
        model: the ONNX model.
        outputs: tensor names; the module returns them as a tuple in this order.
        pool: "avg" swaps every MaxPool for an AveragePool of the same geometry (Gatys et al.).
        padding: "circular" makes every padded Conv and pool wrap around (see circular.py), for images
            that tile; "zeros" (the default) keeps the model's own padding.
        weights: the model's initializers as torch tensors, already on the device the module will run
            on, to share them between several modules; values read at build time come from the file.
        dtype: the compute dtype of floats (float32, or float16/bfloat16 for half compute): weights and
            constants are stored in it and every Cast to a 32- or 16-bit float casts to it, so a float16
            model computes in float32 with its weights upcast, consistently (float64 stays float64).
        channels: {output: channel indices} of outputs whose other channels nobody reads. Where such an output
            comes from a Conv (group 1, constant weights) that no other needed node reads, only those channels
            are computed and the others are zeros: an objective on a few channels of the deepest layer skips the
            rest of its convolution (1/9 of VGG16's work to conv4_1). Elsewhere every channel is computed.

    Raises InvtoolError, before anything is built, when a node needs an unsupported op, has an
    attribute its converter does not know, or has more inputs than it takes.
    """
    stored = {t.name: t for t in model.graph.initializer}
    nodes = needed_nodes(model.graph, outputs)
    converters = _checked_converters(model, nodes, outputs, stored, pool, padding, dtype)
    builder = _Builder(model.graph, stored, weights or {}, dtype)
    read = {i for node in nodes for i in node.input}
    for node, (fn, attrs) in zip(nodes, converters):
        index = (channels or {}).get(node.output[0]) if node.output and node.output[0] not in read else None
        if index is not None and builder.narrowable(node, attrs, index):
            builder.add_narrowed(node, fn, attrs, index)
        else:
            builder.add(node, fn, attrs)
    return builder.module(outputs)


def _checked_converters(model: onnx.ModelProto, nodes, outputs, stored: dict, pool: str, padding: str,
                        dtype: torch.dtype) -> list[tuple]:
    """(converter, attributes) of each node, every node checked before anything is built: value types, ops,
    attributes, inputs, and outputs that only a multi-output converter computes."""
    check_value_types(model.graph, nodes, outputs)  # strings, float8: refused by name before anything is built
    opsets = opsets_of(model)
    converters = [_converter_for(n, opsets, pool, padding, dtype) for n in nodes]  # fail early: nothing half-built
    used = {i for n in nodes for i in n.input} | set(outputs)
    for node, (fn, attrs) in zip(nodes, converters):
        extra = [o for o in node.output[1:] if o in used]
        zp = stored.get(node.input[2]) if node.op_type == "QuantizeLinear" and len(node.input) > 2 else None
        if zp is not None and zp.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
            attrs.setdefault("output_dtype", zp.data_type)  # held as 8 bits (to_torch): the range comes from here
        if extra and fn not in MULTI_OUTPUT:
            raise InvtoolError(f"output {extra[0]!r} of {node.op_type} node {node.name!r} is not supported: "
                               "only its first output is computed")
    return converters


class _Builder:
    """One `build`: the values known at build time (`consts`, on the CPU), the fx graph with the module holding its
    buffers, which run-time tensors are host values, and each constant placed on the host or the device (see the
    module's docstring for which goes where)."""

    def __init__(self, g: onnx.GraphProto, stored: dict, weights: dict[str, torch.Tensor], dtype: torch.dtype):
        self.stored, self.weights, self.dtype = stored, weights, dtype
        self.device = next((w.device for w in weights.values() if w.is_floating_point()), torch.device("cpu"))
        self.consts: dict[str, torch.Tensor] = {}  # build-time values, on the CPU
        self.root, self.graph = nn.Module(), fx.Graph()
        self.env: dict[str, fx.Node] = {i.name: self.graph.placeholder(_py_name(i.name, "input"))
                                        for i in g.input if not self.known(i.name)}
        self.host: set[str] = set()  # run-time tensors that are host values
        self.placed: dict[tuple[str, bool], fx.Node] = {}
        self.host_attrs: list[str] = []

    def known(self, name: str) -> bool:
        """Whether the tensor's value is known at build time."""
        return name in self.consts or name in self.stored or name in self.weights

    def const(self, name: str) -> torch.Tensor:
        """A build-time value, on the CPU: folded, or read from the file (or the weights when it is not there)."""
        if name not in self.consts:
            self.consts[name] = (to_torch(numpy_helper.to_array(self.stored[name])) if name in self.stored
                                 else self.weights[name].cpu())
        return self.consts[name]

    def register(self, name: str, t: torch.Tensor, on_host: bool) -> fx.Node:
        """A constant as a buffer of the module, in the compute dtype, on the host or the device."""
        attr = _py_name(name, "h" if on_host else "w", taken=self.root._buffers)
        if t.is_floating_point() and t.dtype != torch.float64:   # the compute dtype (folded values were fp32)
            t = t.to(self.dtype)
        self.root.register_buffer(attr, t.cpu() if on_host else t.to(self.device))
        if on_host:
            self.host_attrs.append(attr)
        return self.graph.get_attr(attr)

    def value(self, name: str, on_host: bool):
        """The graph node giving tensor `name` (None for a missing optional input): a run-time value, or a constant
        placed once per place (an initializer on the device is the `weights` tensor itself, shared)."""
        if name == "":
            return None
        if name in self.env:
            return self.env[name]
        if not self.known(name):
            raise InvtoolError(f"tensor {name!r} is used but nothing produces it; the ONNX file is broken")
        if (name, on_host) not in self.placed:
            shared = not on_host and name in self.weights and name not in self.consts
            t = self.weights[name] if shared else self.const(name)
            self.placed[name, on_host] = self.register(name, t, on_host)
        return self.placed[name, on_host]

    def add(self, node: onnx.NodeProto, fn, attrs: dict) -> None:
        """One node: folded into constants when all its inputs are known now, else a call in the graph."""
        names = list(node.input)
        while names and names[-1] == "":
            names.pop()
        if all(n == "" or self.known(n) for n in names):  # fold: computed once, now
            with torch.no_grad():
                result = fn(*[self.const(n) if n else None for n in names], **attrs)
            outs = result if fn in MULTI_OUTPUT else (result,)
            self.consts.update((out, v) for out, v in zip(node.output, outs) if out)
        else:
            self._emit(node, names, fn, attrs)

    def _emit(self, node: onnx.NodeProto, names: list[str], fn, attrs: dict) -> None:
        """A call of `fn` in the graph: a host node when all its run-time inputs are host values; a host input that
        meets device values at an input its converter does not read on the host is moved to their device."""
        late = [(k, n) for k, n in enumerate(names) if k in CONST_INPUTS.get(fn, {}) and n in self.env]
        if late:  # a quantised op whose scale or zero point depends on the image (see registry.const_inputs)
            raise InvtoolError(f"{op_name(node.op_type, node.domain)} node {node.name!r}: its "
                               f"{CONST_INPUTS[fn][late[0][0]]} {late[0][1]!r} depends on the image, not a constant; "
                               "invtool simulates quantisation with constant scales and zero points only: "
                               "re-quantize the model with constant (static) scales")
        runtime = [n for n in names if n in self.env]
        on_host = all(n in self.host for n in runtime)
        meets = next((self.env[n] for n in runtime if n not in self.host), None)  # a device input, if any
        args = []
        for k, n in enumerate(names):
            keep = on_host or k in HOST_INPUTS.get(fn, ())
            arg = self.value(n, keep)
            if n in self.host and not keep:
                arg = self.graph.call_function(_to_device_of, (arg, meets))
            args.append(arg)
        kwargs = {a: self.register(f"{node.name or node.op_type}_{a}", v, on_host) if isinstance(v, torch.Tensor)
                  else v for a, v in attrs.items()}
        call = self.graph.call_function(fn, tuple(args), kwargs)
        outs = [o for o in node.output if o]
        if fn in MULTI_OUTPUT:
            self.env.update((out, self.graph.call_function(_output, (call, k)))
                            for k, out in enumerate(node.output) if out)
        else:
            self.env[node.output[0]], outs = call, outs[:1]
        if on_host or (domain_key(node.domain), node.op_type) in {("", op) for op in SHAPE_OPS}:
            self.host.update(outs)

    def narrowable(self, node: onnx.NodeProto, attrs: dict, index) -> bool:
        """Whether `node` is a Conv that `add_narrowed` can compute for output channels `index` alone: group 1,
        constant weights (and bias), the indices within its output channels."""
        if (domain_key(node.domain), node.op_type) != ("", "Conv") or attrs.get("group", 1) != 1 \
                or node.input[0] not in self.env:
            return False
        if not all(n == "" or self.known(n) for n in node.input[1:]):
            return False
        return all(0 <= c < self.const(node.input[1]).shape[0] for c in index)

    def add_narrowed(self, node: onnx.NodeProto, fn, attrs: dict, index) -> None:
        """A Conv computing output channels `index` only (its weights' and bias's rows), spread back to its
        full channel count with zeros elsewhere."""
        names = list(node.input)
        total = self.const(names[1]).shape[0]
        rows = torch.tensor(index, dtype=torch.long)
        for k in range(1, len(names)):
            if names[k]:
                narrowed = f"{names[k]}[{len(index)} of {total}]"
                self.consts[narrowed] = self.const(names[k]).index_select(0, rows)
                names[k] = narrowed
        self._emit(node, names, fn, attrs)
        out = node.output[0]
        where = self.register(f"{out}_channels", rows, on_host=False)
        self.env[out] = self.graph.call_function(_spread, (self.env[out], where, total))

    def module(self, outputs) -> fx.GraphModule:
        """The GraphModule returning `outputs`; its host constants become plain attributes, which
        `Module.to()` does not move."""
        self.graph.output(tuple(self.value(o, o not in self.env and o not in self.weights
                                           and not self.const(o).is_floating_point()) for o in outputs))
        self.graph.eliminate_dead_code()
        module = fx.GraphModule(self.root, self.graph, class_name="RebuiltOnnx")
        for attr in self.host_attrs:
            if attr in module._buffers:
                setattr(module, attr, module._buffers.pop(attr))
        return module


def _converter_for(node: onnx.NodeProto, opsets: dict[str, int], pool: str, padding: str = "zeros",
                   dtype: torch.dtype = torch.float32):
    """(converter, attributes) of a node, checked against the converter's signature."""
    attrs = node_attributes(node)
    op, domain = node.op_type, domain_key(node.domain)
    opset = opsets.get(domain, 1)
    if domain == "" and "consumed_inputs" in attrs and "consumed_inputs" in _spec_attributes(op, opset):
        del attrs["consumed_inputs"]  # opsets 1-5: an in-place hint with no meaning for inference
    if domain == "" and op == "Split":  # before opset 18 an even split is told only by the number of outputs
        attrs.setdefault("num_outputs", len(node.output))
    if domain == "" and pool == "avg" and op == "MaxPool":
        op = "AveragePool"
        attrs.pop("storage_order", None)
        attrs.setdefault("count_include_pad", 0)
    fn = find_converter(op, opset, node.name, domain)
    n_inputs = len(node.input)
    while n_inputs and node.input[n_inputs - 1] == "":
        n_inputs -= 1
    check_node(fn, node.op_type, node.name, opset, n_inputs, attrs, domain)
    if domain == "" and op == "Cast" and attrs.get("to") in _COMPUTE_FLOATS:
        fn, attrs = _cast_float, {"to": attrs["to"], "compute": dtype}
    if padding == "circular" and domain == "" and op in PADDED_OPS:
        fn = circular(fn)
    return fn, attrs


# float types that compute in the model's compute dtype (float64 keeps its own precision)
_COMPUTE_FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
_TORCH_FLOAT = {onnx.TensorProto.FLOAT: torch.float32, onnx.TensorProto.FLOAT16: torch.float16,
                onnx.TensorProto.BFLOAT16: torch.bfloat16}


def _cast_float(x: torch.Tensor, *, to: int, compute: torch.dtype) -> torch.Tensor:
    """Cast to a 32- or 16-bit float, computed in the model's compute dtype: a float16 model computes in float32
    with its weights upcast, and its casts to float16 round as ONNX Runtime's do but stay float32; with float16
    compute every such cast is to float16."""
    target = _TORCH_FLOAT[to]
    if target.itemsize < compute.itemsize:
        x = x.to(target)
    return x.to(compute)


def _spec_attributes(op: str, opset: int) -> set[str]:
    """The attribute names the ONNX spec gives `op` at `opset` (none when the op is unknown to onnx)."""
    try:
        return set(onnx.defs.get_schema(op, opset, "").attributes)
    except onnx.defs.SchemaError:
        return set()


def _py_name(name: str, prefix: str, taken=()) -> str:
    """A Python identifier derived from an ONNX tensor name (which may hold '.', '/', ':')."""
    base = prefix + "_" + re.sub(r"\W", "_", name)
    candidate, k = base, 1
    while candidate in taken:
        candidate, k = f"{base}_{k}", k + 1
    return candidate
