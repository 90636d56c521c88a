"""ONNX's own conformance cases, for every op that `supported_ops()` lists, at opset <= 20.

The cases are ONNX's backend node tests (`onnx.backend.test.case.node.collect_testcases()`, model and
expected outputs generated in memory) plus the model tests shipped in the onnx wheel
(onnx/backend/test/data/{pytorch-converted,pytorch-operator,simple}). A case is kept when every op of
its graph is in the registry: the registry is the promise, so there is no hand-kept list of ops here.

Each case is rebuilt (`graph.build` on all the graph's outputs), run on the case's inputs and compared
with the expected outputs as ONNX's backend runner compares them: same shape, values within the case's
rtol/atol (1e-3 / 1e-7 by default). Floats compare as floats whatever their width (invtool may compute a
float16 graph in float32); other dtypes must match exactly, except the results of quantised ops, which
invtool holds as floats (equal to the integers) so that gradients flow. ONNX Runtime is not run: the expected outputs
are in the case. Outcomes:
- pass;
- refused: an InvtoolError, the one-line refusal naming the op and the reason (fine);
- onnxruntime: the values differ from ONNX's expected outputs but equal ONNX Runtime's, the oracle invtool
  follows (ONNX Runtime is run on these cases only). Resize's align_corners with scales is one: ONNX's
  reference divides by in_len * scale, ONNX Runtime and torch by the integer output length;
- wrong: the values, shapes or dtypes differ from both (must never happen);
- crash: any other exception (must never happen).

`python tests/test_conformance.py` (or tests/bench/conformance_table.py) prints the table per op.
"""
import collections
import glob
import os
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from invtool.errors import InvtoolError
from invtool.onnx.graph import build, opsets_of
from invtool.onnx.registry import domain_key, find_converter, op_name, supported_ops

MAX_OPSET = 20
TARGET_PASS_RATE = 0.97
MODEL_DIRS = ("pytorch-converted", "pytorch-operator", "simple")
OUTCOMES = ("pass", "refused", "onnxruntime", "wrong", "crash")


@dataclass
class Case:
    name: str                 # ONNX's test name, e.g. test_resize_downsample_scales_linear
    source: str               # "node", or the data folder of a model test
    model: onnx.ModelProto
    inputs: list              # numpy arrays, in the order of the graph's non-initializer inputs
    outputs: list             # expected numpy arrays, in the order of the graph's outputs
    rtol: float = 1e-3
    atol: float = 1e-7
    ops: list = field(default_factory=list)  # the op names (as supported_ops() writes them) of its graph


def _graph_ops(graph: onnx.GraphProto) -> set[str]:
    """Every op of the graph and of any subgraph in its nodes' attributes."""
    ops = set()
    for node in graph.node:
        ops.add(op_name(node.op_type, node.domain))
        for a in node.attribute:
            for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                ops |= _graph_ops(g)
    return ops


def _in_scope(model: onnx.ModelProto, supported: set[str]) -> bool:
    return opsets_of(model).get("", 1) <= MAX_OPSET and _graph_ops(model.graph) <= supported


def _node_cases(supported):
    from onnx.backend.test.case import node
    for tc in node.collect_testcases(None):
        if tc.model is None or not tc.data_sets or not _in_scope(tc.model, supported):
            continue
        inputs, outputs = tc.data_sets[0]
        yield Case(tc.name, "node", tc.model, list(inputs), list(outputs), tc.rtol, tc.atol)


def _model_cases(supported):
    root = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
    for folder in MODEL_DIRS:
        for model_dir in sorted(glob.glob(os.path.join(root, folder, "test_*"))):
            model = onnx.load(os.path.join(model_dir, "model.onnx"))
            if not _in_scope(model, supported):
                continue
            data = sorted(glob.glob(os.path.join(model_dir, "test_data_set_*")))[0]

            def read(kind):
                files = sorted(glob.glob(os.path.join(data, f"{kind}_*.pb")),
                               key=lambda p: int(p.rsplit("_", 1)[1][:-3]))
                return [numpy_helper.to_array(onnx.load_tensor(p)) for p in files]
            yield Case(os.path.basename(model_dir), folder, model, read("input"), read("output"))


def collect() -> list[Case]:
    """Every conformance case in scope, node tests first, ops filled in."""
    supported = set(supported_ops())
    with warnings.catch_warnings():  # onnx's case generators warn about the overflows they test
        warnings.simplefilter("ignore")
        cases = [*_node_cases(supported), *_model_cases(supported)]
    for c in cases:
        c.ops = sorted(_graph_ops(c.model.graph))
    return cases


def _compare(got: np.ndarray, ref: np.ndarray, rtol: float, atol: float, ints_as_floats=False) -> str | None:
    """None when they agree as ONNX's runner wants (floats of any width as floats), else why not.

    ints_as_floats: an integer output may come as a float tensor holding exactly the same integers (the
    quantised ops' design, so that gradients flow through them).
    """
    got, ref = np.asarray(got), np.asarray(ref)
    if got.shape != ref.shape:
        return f"shape {got.shape} != expected {ref.shape}"
    if ints_as_floats and ref.dtype.kind in "iu" and got.dtype.kind == "f":
        equal = np.array_equal(got.astype(np.float64), ref.astype(np.float64))
        return None if equal else "integer values differ"
    if ref.dtype.kind == "f" or str(ref.dtype) == "bfloat16":
        if got.dtype.kind != "f":
            return f"dtype {got.dtype} != expected {ref.dtype}"
        got, ref = got.astype(np.float64), ref.astype(np.float64)
        try:
            np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol)
        except AssertionError:
            finite = np.isfinite(ref) & np.isfinite(got)
            err = np.abs(got[finite] - ref[finite]).max(initial=0.0)
            return f"values differ (max abs error {err:.3g}, rtol {rtol:g}, atol {atol:g})"
        return None
    if got.dtype != ref.dtype:
        same = got.dtype.kind in "biuf" and np.array_equal(got.astype(np.float64), ref.astype(np.float64))
        return f"dtype {got.dtype} != expected {ref.dtype} ({'values equal' if same else 'values differ too'})"
    if not np.array_equal(got, ref):
        return f"values differ ({int((got != ref).sum())} of {ref.size} elements)"
    return None


def run_case(case: Case) -> tuple[str, str]:
    """(outcome, detail) of one case: see the module docstring."""
    graph = case.model.graph
    names = [o.name for o in graph.output]
    try:
        module = build(case.model, names)
        weights = {t.name for t in graph.initializer}
        data = [i.name for i in graph.input if i.name not in weights]
        if len(case.inputs) != len(data):
            return "crash", f"{len(case.inputs)} inputs for graph inputs {data}"
        args = [torch.from_numpy(np.array(x, copy=True)) for x in case.inputs]
        with torch.no_grad():
            got = module(*args)
    except InvtoolError as e:
        return "refused", str(e)
    except Exception as e:  # noqa: BLE001 (the outcome we count)
        return "crash", f"{type(e).__name__}: {e}".splitlines()[0][:300]
    if len(got) != len(case.outputs):
        return "wrong", f"{len(got)} outputs, expected {len(case.outputs)}"
    got = [g.detach().cpu().numpy() if isinstance(g, torch.Tensor) else g for g in got]
    held = _float_held(case.model)
    for name, g, ref in zip(names, got, case.outputs):
        why = _compare(g, ref, case.rtol, case.atol, ints_as_floats=name in held)
        if why:
            if _onnxruntime_agrees(case, got):
                return "onnxruntime", f"output {name!r}: {why}; ONNX Runtime gives invtool's values"
            return "wrong", f"output {name!r}: {why}"
    return "pass", ""


def _float_held(model: onnx.ModelProto) -> set[str]:
    """The tensors made by quantised ops (converters of invtool.onnx.ops.quant), which hold their integer
    results in float tensors by design (straight-through gradients)."""
    opsets = opsets_of(model)
    held = set()
    for node in model.graph.node:
        try:
            fn = find_converter(node.op_type, opsets.get(domain_key(node.domain), 1), domain=node.domain)
        except InvtoolError:
            continue
        if fn.__module__.endswith(".ops.quant"):
            held.update(node.output)
    return held


def _onnxruntime_agrees(case: Case, got) -> bool:
    """Whether ONNX Runtime's outputs for the case equal invtool's (False when it cannot run the case)."""
    import onnxruntime as ort
    try:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(case.model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        weights = {t.name for t in case.model.graph.initializer}
        feed = dict(zip([i.name for i in case.model.graph.input if i.name not in weights], case.inputs))
        ref = session.run(None, feed)
    except Exception:  # noqa: BLE001 (ONNX Runtime refusing the case is an answer too)
        return False
    return all(_compare(g, r, case.rtol, case.atol) is None for g, r in zip(got, ref))


def run_all(cases=None) -> list[tuple[Case, str, str]]:
    return [(c, *run_case(c)) for c in (collect() if cases is None else cases)]


def table(results) -> str:
    """Markdown: pass / refused / wrong / crash per op (a case counts once for each op it uses), totals."""
    per_op = collections.defaultdict(collections.Counter)
    totals = collections.Counter()
    for case, outcome, _ in results:
        totals[outcome] += 1
        for op in case.ops:
            per_op[op][outcome] += 1
    lines = ["| op | cases | pass | refused | = ONNX Runtime | wrong | crash |", "|---|---:|---:|---:|---:|---:|---:|"]
    for op in sorted(per_op):
        n = per_op[op]
        lines.append(f"| {op} | {sum(n.values())} | " + " | ".join(str(n[o]) for o in OUTCOMES) + " |")
    total = sum(totals.values())
    lines.append(f"| **all cases** | **{total}** | " + " | ".join(f"**{totals[o]}**" for o in OUTCOMES) + " |")
    rate = totals["pass"] / total if total else 0.0
    lines.append("")
    lines.append(f"{totals['pass']} of {total} cases pass ({100 * rate:.1f}%), {totals['refused']} refused by name, "
                 f"{totals['onnxruntime']} equal ONNX Runtime where it differs from ONNX, {totals['wrong']} wrong, "
                 f"{totals['crash']} crash; at opset <= {MAX_OPSET}.")
    return "\n".join(lines)


def details(results, outcomes=("refused", "onnxruntime", "wrong", "crash")) -> str:
    return "\n".join(f"- {o}: `{c.name}` ({c.source}): {d}" for c, o, d in results if o in outcomes)


# --- the tests ----------------------------------------------------------------------------------------
CASES = collect()
_RESULTS: dict[str, tuple[str, str]] = {}


def _result(case: Case) -> tuple[str, str]:
    key = f"{case.source}/{case.name}"
    if key not in _RESULTS:
        _RESULTS[key] = run_case(case)
    return _RESULTS[key]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.source}/{c.name}" for c in CASES])
def test_conformance_case(case):
    """Pass, a refusal by name (a one-line InvtoolError) or ONNX Runtime's values; never a wrong value or
    another exception."""
    outcome, detail = _result(case)
    assert outcome in ("pass", "refused", "onnxruntime"), f"{outcome}: {detail}"
    if outcome == "refused":
        assert "\n" not in detail and detail, detail


def test_conformance_pass_rate():
    results = [(c, *_result(c)) for c in CASES]
    counts = collections.Counter(o for _, o, _ in results)
    assert len(CASES) > 500, "the conformance set shrank: is the onnx wheel's test data there?"
    assert counts["pass"] / len(CASES) >= TARGET_PASS_RATE, table(results)


if __name__ == "__main__":
    results = run_all(CASES)
    print(table(results))
    if "-v" in sys.argv:
        print()
        print(details(results))
