"""ONNX Runtime as the oracle for the rebuilder: build small ONNX models, run both, compare.

Example:
    >>> node = onnx.helper.make_node("Relu", ["x"], ["y"])
    >>> check_node(node, {"x": np.random.randn(2, 3).astype(np.float32)}, opset=13)
"""
import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import helper, numpy_helper

from invtool import load_model
from invtool.onnx.graph import build

RNG_SEED = 0


def rand(*shape, seed: int = RNG_SEED, dtype=np.float32) -> np.ndarray:
    """A reproducible standard-normal array."""
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def model_of(graph: onnx.GraphProto, opset: int = 13, **kwargs) -> onnx.ModelProto:
    """`helper.make_model` at the smallest IR version its opset needs (at least 4, the first where initializers
    need not be graph inputs), as exporters write them: the installed onnx's newest IR version can be past what
    the installed ONNX Runtime reads (onnx 1.23.1 writes IR 14, ONNX Runtime 1.30 reads up to 13)."""
    opsets = [helper.make_opsetid("", opset)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=max(helper.find_min_ir_version_for(opsets), 4),
                             **kwargs)


def make_model(nodes, inputs: dict[str, np.ndarray], outputs, opset: int,
               initializers: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """A checked model of `nodes`: data `inputs` are graph inputs, `initializers` are weights.

    Output types and shapes come from ONNX shape inference, so any op's outputs can be asked for.
    """
    initializers = initializers or {}
    graph = helper.make_graph(
        list(nodes), "oracle",
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
         for k, v in inputs.items()],
        [],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()])
    model = model_of(graph, opset)
    onnx.checker.check_model(model)  # before outputs are added: the checker wants their shapes known
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True).graph.value_info
    known = {v.name: v for v in inferred}
    model.graph.output.extend(known.get(o) or helper.make_empty_tensor_value_info(o) for o in outputs)
    return model


def run_ort(model: onnx.ModelProto, inputs: dict[str, np.ndarray], outputs) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(list(outputs), inputs)


def run_rebuilt(model: onnx.ModelProto, inputs: dict[str, np.ndarray], outputs, pool: str = "max") -> list[np.ndarray]:
    """The rebuilt module's outputs, fed the graph's non-initializer inputs in graph order."""
    module = build(model, list(outputs), pool=pool)
    weights = {t.name for t in model.graph.initializer}
    args = [torch.from_numpy(inputs[i.name]) for i in model.graph.input if i.name not in weights]
    with torch.no_grad():
        return [np.asarray(t) for t in module(*args)]


def assert_close(got: np.ndarray, ref: np.ndarray, atol_scale: float = 1e-4, what: str = ""):
    """Same shape and dtype kind, and max |got - ref| <= atol_scale * max(|ref|, 1)."""
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape, f"{what}shape {got.shape} != reference {ref.shape}"
    assert got.dtype.kind == ref.dtype.kind, f"{what}dtype {got.dtype} != reference {ref.dtype}"
    if ref.dtype.kind in "biu":
        np.testing.assert_array_equal(got, ref, err_msg=what)
        return
    finite = np.isfinite(ref)
    np.testing.assert_array_equal(np.isfinite(got), finite, err_msg=f"{what}non-finite values differ")
    scale = max(float(np.abs(ref[finite]).max(initial=0.0)), 1.0)
    err = float(np.abs(got[finite].astype(np.float64) - ref[finite]).max(initial=0.0))
    assert err <= atol_scale * scale, f"{what}max abs error {err:.3g} > {atol_scale:g} * {scale:.3g}"


def check_model(model: onnx.ModelProto, inputs: dict[str, np.ndarray], outputs=None,
                atol_scale: float = 1e-4, pool: str = "max") -> list[np.ndarray]:
    """Run `model` in ONNX Runtime and rebuilt; assert every output agrees. Returns ORT's outputs."""
    outputs = list(outputs or [o.name for o in model.graph.output])
    ref = run_ort(model, inputs, outputs)
    got = run_rebuilt(model, inputs, outputs, pool=pool)
    for name, g, r in zip(outputs, got, ref):
        assert_close(g, r, atol_scale, what=f"{name}: ")
    return ref


def check_node(node: onnx.NodeProto, inputs: dict[str, np.ndarray], opset: int,
               initializers: dict[str, np.ndarray] | None = None, atol_scale: float = 1e-4) -> list[np.ndarray]:
    """One node as a model: data `inputs` as graph inputs, shape-like `initializers` as weights."""
    outputs = [o for o in node.output if o]
    model = make_model([node], inputs, outputs, opset, initializers)
    return check_model(model, inputs, outputs, atol_scale)


def all_tensors_match(path, x: np.ndarray, float_only: bool = True, atol_scale: float = 1e-4) -> dict[str, float]:
    """Every tensor of the ONNX file at `path` that depends on the image equals ONNX Runtime's for input
    x [N, 3, H, W], computed by `invtool.load_model` in one module; ORT gets them all as graph outputs.

    float_only: compare the float32 tensors only, else shape arithmetic (int64) and masks too.
    Returns each compared tensor's error relative to its scale, max |ours - ref| / max(|ref|, 1).
    """
    model = load_model(path, device="cpu")
    proto = onnx.load(str(path))
    names = [o for n in proto.graph.node for o in n.output if o]
    del proto.graph.output[:]
    proto.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = x.transpose(0, 2, 3, 1).copy() if model.channels_last else x
    ref = dict(zip(names, sess.run(names, {model.input_name: feed})))
    compared = [n for n in model.names if not float_only or ref[n].dtype == np.float32]
    assert compared
    with torch.no_grad():
        ours = {n: t.cpu().numpy() for n, t in model.features(torch.from_numpy(x), compared).items()}
    errors = {}
    for n in compared:
        assert_close(ours[n], ref[n], atol_scale, what=f"{n}: ")
        r = ref[n].astype(np.float64)
        errors[n] = float(np.abs(ours[n] - r).max(initial=0.0)) / max(float(np.abs(r).max(initial=0.0)), 1.0)
    return errors
