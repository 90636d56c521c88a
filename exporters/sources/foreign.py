"""Foreign ONNX models (a model-zoo VGG or ResNet, a tf2onnx export) brought into invtool's contract.

The image-like input (float, [N, 3, H, W] or channels-last [N, H, W, 3]) is replaced by `image`
(RGB in [0, 1], NCHW) followed by the named preset's preprocessing as nodes (and a transpose for a
channels-last model); every float intermediate tensor becomes a graph output under its own name; a
VGG16 or ResNet18 is recognised from its op sequence and gets the canonical names and their aliases.

Example:
    >>> export_onnx("resnet18-v1-7.onnx", "models/zoo-resnet18.onnx", "imagenet")
    PosixPath('models/zoo-resnet18.onnx')
"""
from pathlib import Path

import numpy as np
import onnx
import torch
from google.protobuf.message import DecodeError
from onnx import TensorProto, helper, numpy_helper

from invtool.errors import InvtoolError
from invtool.preprocess import PRESETS, resolve_preprocess
from invtool.runtime import ort_session

from ..architectures import ALIASES
from invtool.image import write_atomic

from ..export import check_parity, set_metadata
from . import file_sha256

_FLOATS = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
_GLOBAL = {"GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax"}  # their output is size-free


def export_onnx(path, out, preprocess: str | None) -> Path:
    """Export the ONNX model at `path` to `out` with `preprocess` (a preset name) baked in."""
    if preprocess is None:
        raise InvtoolError(f"name the preprocessing {Path(path).name} was trained with: "
                           f"--preprocess {'|'.join(PRESETS)}")
    pre = resolve_preprocess(preprocess)
    try:
        proto = onnx.load(path)
    except (DecodeError, OSError, ValueError) as e:
        raise InvtoolError(f"cannot read {path} as ONNX ({type(e).__name__}: {e}); is the file complete?") from None
    graph = proto.graph
    source_input, channels_last = _image_input(graph, path)
    dims = [d.dim_value or None for d in source_input.type.tensor_type.shape.dim]
    h, w = dims[1:3] if channels_last else dims[2:4]
    original = proto.SerializeToString()
    original_outputs = [o.name for o in graph.output]
    arch, canonical = _recognise(graph)

    inner = source_input.name if source_input.name != "image" else "image.preprocessed"
    if inner != source_input.name:
        for node in graph.node:
            node.input[:] = [inner if i == source_input.name else i for i in node.input]
    graph.input.remove(source_input)
    graph.input.insert(0, helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"]))
    prefix = _preprocess_nodes(pre, inner, channels_last, graph)
    nodes = [*prefix, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)

    types = _float_types(proto)  # name -> (element type, rank); original outputs keep theirs
    types.update({o.name: (o.type.tensor_type.elem_type, len(o.type.tensor_type.shape.dim)) for o in graph.output})
    del graph.value_info[:]
    skip = {o for n in prefix for o in n.output}
    names = [o for n in graph.node if n.op_type != "Constant" for o in n.output if o in types and o not in skip]
    names += [o for o in original_outputs if o not in names]
    del graph.output[:]  # the sizes are free now: every dim unnamed
    graph.output.extend(helper.make_tensor_value_info(n, types[n][0], [None] * types[n][1]) for n in names)

    aliases = {**canonical, **{a: canonical[c] for a, c in ALIASES.get(arch.removesuffix("-conv"), {}).items()
                               if c in canonical}}
    fixed = _fixed_layers(graph, names) if h and w else []
    source = {"framework": "onnx", "weights": Path(path).name, "sha256": file_sha256(path), "trained": "trained",
              "notes": [f"exported from a foreign ONNX model; recognised as {arch}" if arch != "unknown" else
                        "exported from a foreign ONNX model; its tensors keep their own names"]}
    set_metadata(proto, arch=arch, aliases=aliases, source=source, preprocess=preprocess,
                 fixed_input={"size": [h, w], "layers": fixed} if fixed else None)
    data = proto.SerializeToString()
    check_parity(data, [_original_case(original, source_input.name, pre, channels_last, original_outputs, h, w)])
    return write_atomic(out, data)


def _image_input(graph, path):
    """The one float input shaped like an image batch, and whether it is channels-last."""
    weights = {t.name for t in graph.initializer}
    described = []
    for value in graph.input:
        if value.name in weights:
            continue
        tensor = value.type.tensor_type
        dims = [d.dim_value or d.dim_param or "?" for d in tensor.shape.dim]
        described.append(f"{value.name} {dims}")
        if tensor.elem_type in _FLOATS and len(dims) == 4:
            if dims[1] == 3:
                return value, False
            if dims[3] == 3:
                return value, True
    raise InvtoolError(f"{path} has no image-like input (float [N, 3, H, W] or [N, H, W, 3]); its inputs: "
                       f"{'; '.join(described) or 'none'}; invtool needs a CNN on RGB images")


def _preprocess_nodes(pre, inner: str, channels_last: bool, graph) -> list:
    """`image` -> [flip to BGR] -> x * a + b (Preprocess.module()'s buffers) -> [NHWC] -> `inner`."""
    module = pre.module()
    graph.initializer.extend([numpy_helper.from_array(module.a.numpy(), "invtool.pre.a"),
                              numpy_helper.from_array(module.b.numpy(), "invtool.pre.b")])
    if pre.bgr:
        graph.initializer.append(numpy_helper.from_array(np.array([2, 1, 0], np.int64), "invtool.pre.bgr"))
    nodes, x = [], "image"
    steps = ([("Gather", ["invtool.pre.bgr"], {"axis": 1})] if pre.bgr else []) + \
        [("Mul", ["invtool.pre.a"], {}), ("Add", ["invtool.pre.b"], {})] + \
        ([("Transpose", [], {"perm": [0, 2, 3, 1]})] if channels_last else [])
    for i, (op, extra, attrs) in enumerate(steps):
        y = inner if i == len(steps) - 1 else f"invtool.pre.{i}"
        nodes.append(helper.make_node(op, [x, *extra], [y], name=f"invtool.pre.{op}", **attrs))
        x = y
    return nodes


def _float_types(proto) -> dict[str, tuple[int, int]]:
    """(element type, rank) of every float tensor of known rank, by ONNX shape inference."""
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception as e:  # inference fails on some exotic graphs; the graph outputs still stand
        raise InvtoolError(f"ONNX shape inference failed on this model ({str(e).splitlines()[0][:200]})") from None
    g = inferred.graph
    return {v.name: (v.type.tensor_type.elem_type, len(v.type.tensor_type.shape.dim)) for v in g.value_info
            if v.type.tensor_type.elem_type in _FLOATS and v.type.tensor_type.HasField("shape")}


def _recognise(graph) -> tuple[str, dict[str, str]]:
    """('vgg16' | 'vgg16-conv' | 'resnet18' | 'unknown', canonical name -> tensor) from the op sequence."""
    producer = {o: n for n in graph.node for o in n.output}

    def after(node, *ops):
        return node.input and node.input[0] in producer and producer[node.input[0]].op_type in ops

    relus = [n for n in graph.node if n.op_type == "Relu"]
    pools = [n for n in graph.node if n.op_type == "MaxPool"]
    dense = [n for n in graph.node if n.op_type == "Gemm" or (n.op_type == "Add" and after(n, "MatMul"))]
    # VGG16: 13 conv+ReLU and 5 max pools in the order of VGG16.taps, then optionally 3 dense layers
    seq = [n for n in graph.node if (n.op_type == "Relu" and after(n, "Conv")) or n.op_type == "MaxPool"]
    features = {int(a.split(".")[1]): name for a, name in ALIASES["vgg16"].items() if a.startswith("features.")}
    vgg_names = [features[i] for i in sorted(features)]
    if [n.op_type == "MaxPool" for n in seq] == [name.startswith("pool") for name in vgg_names] and not any(
            n.op_type == "Add" and not after(n, "MatMul") for n in graph.node):
        canonical = {name: n.output[0] for name, n in zip(vgg_names, seq)}
        if len(dense) == 3:
            fc_relus = [next((r for r in relus if r.input[0] == d.output[0]), None) for d in dense[:2]]
            if all(fc_relus):
                canonical.update(fc6=fc_relus[0].output[0], fc7=fc_relus[1].output[0], fc8=dense[2].output[0])
                return "vgg16", canonical
        return "vgg16-conv", canonical
    # ResNet18: conv1 ReLU, max pool, 8 blocks (a ReLU inside, a ReLU after the residual Add), pool, fc
    block_outs = [r for r in relus if after(r, "Add")]
    mids = [r for r in relus[1:] if not after(r, "Add")]
    pooled = [n for n in graph.node if n.op_type in ("GlobalAveragePool", "Flatten")]
    if len(relus) == 17 and len(block_outs) == 8 and len(mids) == 8 and len(pools) == 1 and pooled and dense:
        names = [f"res{s}{b}" for s in range(2, 6) for b in "ab"]
        canonical = {"conv1": relus[0].output[0], "pool1": pools[0].output[0],
                     "pool5": pooled[-1].output[0], "fc": dense[-1].output[0]}
        canonical.update({n: r.output[0] for n, r in zip(names, block_outs)})
        canonical.update({f"{n}_mid": r.output[0] for n, r in zip(names, mids)})
        return "resnet18", canonical
    return "unknown", {}


def _fixed_layers(graph, names) -> list[str]:
    """Outputs at or after a Flatten/Reshape of a spatial map (not of a global pool): they need the original size."""
    producer = {o: n.op_type for n in graph.node for o in n.output}
    fixed = set()
    for node in graph.node:
        flattens = node.op_type in ("Flatten", "Reshape") and producer.get(node.input[0]) not in _GLOBAL
        if flattens or any(i in fixed for i in node.input):
            fixed.update(node.output)
    return [n for n in names if n in fixed]


def _original_case(original: bytes, input_name, pre, channels_last, outputs, h, w):
    """A probe image and the original model's outputs on it, preprocessed by `pre.module()` in PyTorch."""
    image = torch.rand(1, 3, h or 224, w or 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = pre.module()(image)
    x = x.permute(0, 2, 3, 1) if channels_last else x
    session = ort_session(original)
    return image, dict(zip(outputs, session.run(outputs, {input_name: x.contiguous().numpy()})))
