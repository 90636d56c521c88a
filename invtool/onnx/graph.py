"""Rebuild the part of an ONNX graph that some tensors need, as a torch.fx GraphModule.

Walks back from the requested tensors to keep only the nodes they depend on, folds every node whose
inputs are all known at build time (initializers, `Constant` nodes, shape arithmetic on them) into a
buffer, and emits one `call_function` per remaining node. Weights, whether initializers or `Constant`
nodes, become buffers of the module: never parameters, so only the image is ever optimised.

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
from .registry import MULTI_OUTPUT, find_converter


def opset_of(model: onnx.ModelProto) -> int:
    """The version of the default ONNX domain the model was written for."""
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    return 1


def to_torch(array: np.ndarray) -> torch.Tensor:
    """A numpy value as a torch tensor; 16-bit floats become float32 (CPU kernels want it)."""
    t = torch.from_numpy(np.array(array, copy=True))
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def node_attributes(node: onnx.NodeProto) -> dict:
    """The node's attributes as Python values under their ONNX names (strings decoded, tensors torch)."""
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


def build(model: onnx.ModelProto, outputs, *, pool: str = "max",
          weights: dict[str, torch.Tensor] | None = None) -> fx.GraphModule:
    """A module computing `outputs` (tensor names) from the graph's non-initializer inputs.

    Args:
        model: the ONNX model.
        outputs: tensor names; the module returns them as a tuple in this order.
        pool: "avg" swaps every MaxPool for an AveragePool of the same geometry (Gatys et al.).
        weights: the model's initializers as torch tensors, to share them between several modules.

    Raises InvtoolError, before anything is built, when a node needs an unsupported op.
    """
    g = model.graph
    opset = opset_of(model)
    consts = dict(initializers(model) if weights is None else weights)  # values known at build time
    nodes = needed_nodes(g, outputs)
    converters = [_converter_for(n, opset, pool) for n in nodes]  # fail early: nothing half-built
    used = {i for n in nodes for i in n.input} | set(outputs)
    for node, (fn, _) in zip(nodes, converters):
        extra = [o for o in node.output[1:] if o in used]
        if extra and fn not in MULTI_OUTPUT:
            raise InvtoolError(f"output {extra[0]!r} of {node.op_type} node {node.name!r} is not supported: "
                               "only its first output is computed")

    root, graph = nn.Module(), fx.Graph()
    env: dict[str, fx.Node] = {i.name: graph.placeholder(_py_name(i.name, "input"))
                               for i in g.input if i.name not in consts}
    buffers: dict[str, fx.Node] = {}

    def value(name: str):
        if name == "":
            return None
        if name in env:
            return env[name]
        if name not in consts:
            raise InvtoolError(f"tensor {name!r} is used but nothing produces it; the ONNX file is broken")
        if name not in buffers:
            attr = _py_name(name, "w", taken=root._buffers)
            root.register_buffer(attr, consts[name])
            buffers[name] = graph.get_attr(attr)
        return buffers[name]

    for node, (fn, attrs) in zip(nodes, converters):
        names = list(node.input)
        while names and names[-1] == "":
            names.pop()
        if all(n == "" or n in consts for n in names):  # fold: computed once, now
            with torch.no_grad():
                result = fn(*[consts.get(n) for n in names], **attrs)
            outs = result if fn in MULTI_OUTPUT else (result,)
            consts.update((out, v) for out, v in zip(node.output, outs) if out)
            continue
        call = graph.call_function(fn, tuple(value(n) for n in names), attrs)
        if fn in MULTI_OUTPUT:
            env.update((out, graph.call_function(_output, (call, k))) for k, out in enumerate(node.output) if out)
        else:
            env[node.output[0]] = call

    graph.output(tuple(value(o) for o in outputs))
    graph.eliminate_dead_code()
    return fx.GraphModule(root, graph, class_name="RebuiltOnnx")


def _converter_for(node: onnx.NodeProto, opset: int, pool: str):
    attrs = node_attributes(node)
    op = node.op_type
    if op == "Split":  # before opset 18 an even split is told only by the number of outputs
        attrs.setdefault("num_outputs", len(node.output))
    if pool == "avg" and op == "MaxPool":
        op = "AveragePool"
        attrs.pop("storage_order", None)
        attrs.setdefault("count_include_pad", 0)
    return find_converter(op, opset, node.name), attrs


def _py_name(name: str, prefix: str, taken=()) -> str:
    """A Python identifier derived from an ONNX tensor name (which may hold '.', '/', ':')."""
    base = prefix + "_" + re.sub(r"\W", "_", name)
    candidate, k = base, 1
    while candidate in taken:
        candidate, k = f"{base}_{k}", k + 1
    return candidate
