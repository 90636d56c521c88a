"""invtool against onnx2torch, side by side, on the same ONNX files, with ONNX Runtime as the oracle.

The set (issue 30, item 5):
- corpus: every model of tests/corpus.py (small CNNs exported the ways people export them), exported
  into a temporary directory;
- deployed: ResNet18 (random init, exported as tests/conftest.py's resnet18_onnx fixture does) and two
  corpus models (mobilenetv3_legacy, grey_ocr_legacy), as exported (ResNet18 only: the corpus rows
  hold the other two) and in the forms people ship them: float16 by onnxconverter-common
  (keep_io_types=False, and keep_io_types=True where the converter writes a file ONNX Runtime loads;
  if it writes one only with the last output kept, as for a model whose taps are graph outputs, that
  form is the row) and int8 by onnxruntime.quantization (QDQ per-channel, QOperator per-channel,
  dynamic), calibrated on three seeded random images;
- conformance: ONNX's backend node cases and the model tests in the onnx wheel, as
  tests/test_conformance.py collects them (every case whose ops invtool's registry lists, opset <= 20).

Per model and converter: loads (yes, or the first line of the exception that conversion raised), equals
ORT (worst relative error over the graph's outputs, max |ours - ORT| / max(|ORT|, 1), against ONNX
Runtime (default session options, as users run it) on the same file and the same 1xCx64x64 image; for
int8 forms also in quantisation steps of the outputs that a DequantizeLinear with a per-tensor scale
makes) and fwd+bwd (median ms of forward + backward of the sum of the float outputs w.r.t. the image,
1xCx64x64, C = 1 for the grey model; both modules' weights frozen, as only the image gets a gradient).
invtool is driven as its users drive it (`load_model(path).features(x, outputs)`); onnx2torch as its
README says (`onnx2torch.convert(path)`, called on the image in the file's input dtype).

Per converter over the conformance cases: pass (the outputs match ONNX's expected ones with the case's
tolerance, compared as tests/test_conformance.py compares; "= ORT" counts the cases among them that match
ONNX Runtime where ONNX Runtime differs from ONNX's expected values) / fail to convert (conversion raised)
/ wrong (runs, values differ from both) / crash (the converted module raised when run).

onnx2torch is a bench-only dependency, installed without its dependencies:

    .venv/bin/pip install --no-deps onnx2torch==1.5.15

(`make bench` does it.) It requires torchvision, which has no CPU build here (pip would pull CUDA torch),
and imports it only for its NMS and RoIAlign converters, which none of these models use: so a stub
torchvision is put in sys.modules before onnx2torch is imported, when torchvision is absent. Without
onnx2torch the bench prints how to install it and runs invtool's column alone.

Run: `.venv/bin/python tests/bench/bench_converters.py [--quick] [--only corpus|deployed|conformance]`.
A markdown table on stdout; progress on stderr. --quick: three corpus models, ResNet18's forms and every
20th conformance case (a check that the script runs). Threads: OMP_NUM_THREADS, else 2.
"""
import argparse
import collections
import contextlib
import importlib.metadata
import importlib.util
import io
import logging
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnx.version_converter
import onnxruntime as ort
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

warnings.filterwarnings("ignore")  # the exporters', converters' and onnx case generators' warnings

import corpus  # noqa: E402
from conftest import export_taps, randomize_bn  # noqa: E402
from exporters.architectures import ResNet18  # noqa: E402
from invtool import load_model  # noqa: E402
from invtool.onnx.graph import build  # noqa: E402

THREADS = int(os.environ.get("OMP_NUM_THREADS") or 2)
SIZE = 64
REPEATS = 5            # timed fwd+bwd runs per model and converter, after one warm-up (3 with --quick)
DEPLOYED = ("mobilenetv3_legacy", "grey_ocr_legacy")
QUICK_CORPUS = ("mobilenetv3_legacy", "grey_ocr_legacy", "paddle_style")
QUICK_CONFORMANCE_EVERY = 20
MOST_COMMON = 12       # failure reasons and failed cases listed per converter
INSTALL = "pip install --no-deps onnx2torch==1.5.15"


def log(msg: str):
    print(msg, file=sys.stderr, flush=True)


def first_line(e: BaseException, width: int = 70) -> str:
    """`Type: first line of the message`, shortened, safe in a markdown cell."""
    text = str(e).strip()
    # onnx2torch's refusal names the op inside a repr: `Converter is not implemented (OperationDescription(
    # domain='', operation_type='QuantizeLinear', version=13))`, shortened to keep the op in the cell
    text = re.sub(r"Converter is not implemented \(OperationDescription\(domain='([^']*)', operation_type='([^']*)', "
                  r"version=(\d+)\)\)", lambda m: f"no converter for {(m[1] + '.') if m[1] else ''}{m[2]} (opset {m[3]})",
                  text)
    line = f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__
    line = line.replace("|", "/").replace("`", "'")
    return line if len(line) <= width else line[:width - 1] + "…"


# --- onnx2torch, bench-only ----------------------------------------------------------------------
def import_onnx2torch():
    """onnx2torch's module, or None (with a line saying how to install it) when it is not installed."""
    if importlib.util.find_spec("onnx2torch") is None:
        print(f"onnx2torch is not installed (`.venv/bin/{INSTALL}`, or `make bench`): invtool's column alone.")
        return None
    if importlib.util.find_spec("torchvision") is None:
        # onnx2torch imports torchvision for its NMS/RoIAlign converters, which none of these models use;
        # torchvision has no CPU build here, so a stub that raises if anything ever calls into it
        def absent(*args, **kwargs):
            raise RuntimeError("torchvision is a stub in bench_converters.py (no NMS/RoIAlign here)")
        tv, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
        ops.nms = ops.box_convert = ops.roi_align = absent
        tv.ops = ops
        sys.modules["torchvision"], sys.modules["torchvision.ops"] = tv, ops
    import onnx2torch
    return onnx2torch


# --- the two converters, as their users call them --------------------------------------------------
def as_list(out) -> list:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def to_numpy(t) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu()
        return (t.float() if t.dtype == torch.bfloat16 else t).numpy()
    return np.asarray(t)


def invtool_model(path: Path, outputs: list[str], input_dtype):
    """The forward of the graph's outputs (the module is built here, so a refusal is a load failure)."""
    model = load_model(path, device="cpu")
    model.module(tuple(sorted({model.resolve(n) for n in outputs})))

    def forward(x):
        got = model.features(x, outputs)
        return [got[n] for n in outputs]
    return forward


def onnx2torch_model(convert):
    def load(path: Path, outputs: list[str], input_dtype):
        module = convert(str(path)).eval().requires_grad_(False)  # only the image gets a gradient, as in invtool

        def forward(x):
            return as_list(module(x.to(input_dtype)))
        return forward
    return load


# --- models: loads, equals ORT, fwd+bwd -----------------------------------------------------------
TORCH_DTYPES = {"tensor(float)": torch.float32, "tensor(float16)": torch.float16, "tensor(double)": torch.float64}


def ort_reference(path: Path, x: np.ndarray):
    """(input dtype as torch's, output names, ORT's outputs) on the file, as users run it."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (image,) = session.get_inputs()
    dtype = TORCH_DTYPES[image.type]
    names = [o.name for o in session.get_outputs()]
    feed = x.astype(torch.empty(0, dtype=dtype).numpy().dtype)
    return dtype, names, session.run(names, {image.name: feed})


def output_scales(path: Path) -> dict[str, float]:
    """The quantisation step of each graph output made by a DequantizeLinear of a constant per-tensor scale."""
    proto = onnx.load(str(path))
    init = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    outs = {o.name for o in proto.graph.output}
    return {n.output[0]: float(init[n.input[1]].reshape(-1)[0]) for n in proto.graph.node
            if n.op_type == "DequantizeLinear" and n.output[0] in outs and n.input[1] in init
            and init[n.input[1]].size == 1}


def parity(got: list, names: list[str], ref: list, scales: dict[str, float]) -> str:
    """The worst relative error over the outputs, and in quantisation steps where the outputs have them."""
    if len(got) != len(ref):
        return f"{len(got)} outputs, ORT {len(ref)}"
    worst, steps = 0.0, None
    for name, g, r in zip(names, got, ref):
        g, r = to_numpy(g).astype(np.float64), np.asarray(r).astype(np.float64)
        if g.shape != r.shape:
            return f"{name}: shape {list(g.shape)} != ORT {list(r.shape)}"
        err = float(np.abs(g - r).max(initial=0.0))
        if not np.isfinite(err):
            return f"{name}: non-finite values"
        worst = max(worst, err / max(float(np.abs(r).max(initial=0.0)), 1.0))
        if name in scales:
            steps = max(steps or 0.0, err / scales[name])
    return f"{worst:.1e}" + (f" ({steps:.3g} steps)" if steps is not None else "")


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(load, path: Path, x: np.ndarray, repeats: int) -> tuple[str, str, str]:
    """(loads, equals ORT, fwd+bwd ms) of one converter on one file."""
    try:
        dtype, names, ref = ort_reference(path, x)
    except Exception as e:  # noqa: BLE001 (no oracle: nothing to compare)
        return f"ORT refuses the file: {first_line(e, 50)}", "—", "—"
    try:
        forward = load(path, names, dtype)
    except Exception as e:  # noqa: BLE001 (the outcome we report)
        return first_line(e), "—", "—"
    try:
        with torch.no_grad():
            equal = parity(forward(torch.from_numpy(x)), names, ref, output_scales(path))
    except Exception as e:  # noqa: BLE001
        return "yes", f"runs: {first_line(e, 60)}", "—"

    def fwd_bwd():
        xi = torch.from_numpy(x).requires_grad_(True)
        outs = [o for o in forward(xi) if o.is_floating_point() and o.requires_grad]
        if not outs:
            raise RuntimeError("no output has a gradient")
        sum(o.float().sum() for o in outs).backward()
    try:
        ms = f"{timed(fwd_bwd, repeats) * 1e3:.1f}"
    except Exception as e:  # noqa: BLE001
        ms = f"bwd: {first_line(e, 50)}"
    return "yes", equal, ms


def image(channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((1, channels, SIZE, SIZE), dtype=np.float32)


# --- the deployed forms -----------------------------------------------------------------------------
def export_resnet18(folder: Path) -> Path:
    """ResNet18 at random init with its 20 taps as graph outputs, as tests/conftest.py's fixture exports it."""
    torch.manual_seed(0)
    path = folder / "resnet18.onnx"
    export_taps(randomize_bn(ResNet18()).eval(), path, opset=13)
    return path


def loads_in_ort(path: Path) -> bool:
    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return True
    except Exception:  # noqa: BLE001 (ORT refusing the converter's file is the answer)
        return False


def float16_forms(src: Path, folder: Path) -> list[tuple[str, Path | None, str]]:
    """(form, path or None, note) for keep_io_types False and True."""
    from test_fp16 import to_fp16   # the tests' conversion, so the bench measures the same files

    forms = []
    for keep in (False, True):
        label = f"float16, keep_io_types={keep}"
        out = to_fp16(src, folder / f"{src.stem}-fp16-{'io32' if keep else 'io16'}.onnx", keep)
        if loads_in_ort(out):
            forms.append((label, out, ""))
            continue
        if keep and len(onnx.load(str(src)).graph.output) > 1:   # its output Casts break taps inside the graph
            to_fp16(src, out, True, final_only=True)
            if loads_in_ort(out):
                forms.append((label + ", last output only", out, ""))
                continue
        forms.append((label, None, "onnxconverter-common's file does not load in ONNX Runtime"))
    return forms


def int8_forms(src: Path, folder: Path, channels: int) -> list[tuple[str, Path | None, str]]:
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    input_name = onnx.load(str(src)).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter({input_name: image(channels, seed)} for seed in range(1, 4))

        def get_next(self):
            return next(self.batches, None)

    jobs = {
        "int8 QDQ per-channel": lambda source, out: quantize_static(
            source, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8),
        "int8 QOperator per-channel": lambda source, out: quantize_static(
            source, out, Reader(), quant_format=QuantFormat.QOperator, per_channel=True),
        "int8 dynamic": lambda source, out: quantize_dynamic(source, out),
    }
    forms = []
    for label, job in jobs.items():
        out = folder / f"{src.stem}-{label.split()[1].lower()}.onnx"
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                job(src, out)
            if not loads_in_ort(out) and opset_of(src) < 13:
                # per-channel QDQ of an opset-12 legacy export: the quantiser writes DequantizeLinear with an
                # axis (opset 13), which ONNX Runtime refuses at opset 12; a user upgrades the model first
                with contextlib.redirect_stdout(io.StringIO()):
                    job(upgraded(src, 13), out)
                label += f", from the opset-{opset_of(src)} file upgraded to 13 (ORT refuses the direct one)"
            forms.append((label, out, "") if loads_in_ort(out) else
                         (label, None, "the quantiser's file does not load in ONNX Runtime"))
        except Exception as e:  # noqa: BLE001 (a row saying the quantiser failed)
            forms.append((label, None, f"onnxruntime.quantization failed: {first_line(e, 60)}"))
    return forms


def opset_of(path: Path) -> int:
    return next(i.version for i in onnx.load(str(path), load_external_data=False).opset_import
                if i.domain in ("", "ai.onnx"))


def upgraded(src: Path, opset: int) -> Path:
    out = src.with_name(f"{src.stem}-opset{opset}.onnx")
    if not out.exists():
        onnx.save(onnx.version_converter.convert_version(onnx.load(str(src)), opset), str(out))
    return out


# --- tables -------------------------------------------------------------------------------------------
def model_rows(jobs, converters, repeats):
    """jobs: (model, form, path or None, channels, note) -> markdown rows."""
    rows = []
    for model, form, path, channels, note in jobs:
        t = time.perf_counter()
        if path is None:
            cells = [note] + ["—"] * (3 * len(converters) - 1)
        else:
            results = [measure(load, path, image(channels), repeats) for load in converters.values()]
            cells = [r[i] for i in range(3) for r in results]  # loads, = ORT, ms, each per converter
        rows.append(f"| {model} | {form} | " + " | ".join(cells) + " |")
        log(f"  {model} / {form}: {time.perf_counter() - t:.1f} s")
    return rows


def model_table(title, rows, converters) -> str:
    names = list(converters)
    head = ["model", "form"] + [f"{what}: {n}" for what in ("loads", "= ORT", "fwd+bwd ms") for n in names]
    return "\n".join([f"## {title}", "", "| " + " | ".join(head) + " |", "|---|---|" + "---|" * len(names)
                      + "---:|" * len(names) + "---:|" * len(names), *rows, ""])


def corpus_jobs(folder: Path, quick: bool):
    jobs = []
    for name in (QUICK_CORPUS if quick else corpus.BUILDERS):
        t = time.perf_counter()
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                m = corpus.build_corpus(folder, [name])[name]
            jobs.append((name, f"{m.exporter.split(',')[0]}, opset {m.opset}", m.path, m.channels, ""))
        except Exception as e:  # noqa: BLE001 (e.g. the dynamo exporter without onnxscript)
            jobs.append((name, "", None, 3, f"not exported here: {first_line(e, 60)}"))
        log(f"  exported {name} in {time.perf_counter() - t:.1f} s")
    return jobs


def deployed_jobs(folder: Path, quick: bool):
    sources = [("resnet18", export_resnet18(folder), 3, True)]
    if not quick:
        built = corpus.build_corpus(folder, list(DEPLOYED))
        sources += [(n, built[n].path, built[n].channels, False) for n in DEPLOYED]
    jobs = []
    logging.disable(logging.WARNING)  # onnxruntime.quantization's advice to pre-process
    try:
        for name, src, channels, with_fp32 in sources:
            t = time.perf_counter()
            forms = ([("float32, as exported", src, "")] if with_fp32 else []) + float16_forms(src, folder) \
                + int8_forms(src, folder, channels)
            jobs += [(name, form, path, channels, note) for form, path, note in forms]
            log(f"  {name}: {len(forms)} forms written in {time.perf_counter() - t:.1f} s")
    finally:
        logging.disable(logging.NOTSET)
    return jobs


# --- conformance ------------------------------------------------------------------------------------
OUTCOMES = ("pass", "= ORT", "fail to convert", "wrong", "crash")


def judge(case, convert, tc) -> tuple[str, str]:
    """One conformance case under one converter: (outcome, detail), the same rules for both."""
    names = [o.name for o in case.model.graph.output]
    try:
        module = convert(case.model, names)
    except Exception as e:  # noqa: BLE001
        return "fail to convert", first_line(e, 90)
    try:
        args = [torch.from_numpy(np.array(x, copy=True)) for x in case.inputs]
        with torch.no_grad():
            got = [to_numpy(g) for g in as_list(module(*args))]
    except Exception as e:  # noqa: BLE001
        return "crash", first_line(e, 90)
    if len(got) != len(case.outputs):
        return "wrong", f"{len(got)} outputs, expected {len(case.outputs)}"
    held = tc._float_held(case.model)
    for name, g, ref in zip(names, got, case.outputs):
        why = tc._compare(g, ref, case.rtol, case.atol, ints_as_floats=name in held)
        if why:
            if tc._onnxruntime_agrees(case, got):
                return "= ORT", why
            return "wrong", f"{name}: {why}"
    return "pass", ""


def invtool_case(model, names):
    return build(model, names)


def onnx2torch_case(convert):
    def conv(model, names):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return convert(copy).eval()
    return conv


def reason_key(detail: str) -> str:
    """A failure's kind: its message without numbers and quoted names, to count alike failures together."""
    detail = re.sub(r"'[^']*'", "'…'", detail)
    return re.sub(r"(?<!opset )(?<![\d.])\d+(\.\d+)?(e-?\d+)?", "N", detail)[:90]  # the opset stays


def conformance_table(converters, quick) -> str:
    t = time.perf_counter()
    import test_conformance as tc
    cases = tc.CASES[::QUICK_CONFORMANCE_EVERY] if quick else tc.CASES
    log(f"  {len(tc.CASES)} cases collected in {time.perf_counter() - t:.1f} s, {len(cases)} run")
    counts, reasons, bad = {}, {}, {}
    for name, convert in converters.items():
        t = time.perf_counter()
        results = [(c, *judge(c, convert, tc)) for c in cases]
        counts[name] = collections.Counter(o for _, o, _ in results)
        counts[name]["pass"] += counts[name]["= ORT"]
        reasons[name] = collections.Counter(reason_key(d) for _, o, d in results if o == "fail to convert")
        bad[name] = [f"{o}: `{c.source}/{c.name}`: {d}" for c, o, d in results if o in ("wrong", "crash")]
        log(f"  {name}: {time.perf_counter() - t:.1f} s")
    lines = ["## ONNX conformance cases", "",
             f"{len(cases)} cases{' (every %dth, --quick)' % QUICK_CONFORMANCE_EVERY if quick else ''}: ONNX's "
             f"backend node cases and the onnx wheel's model tests whose ops invtool's registry lists, opset <= "
             f"{tc.MAX_OPSET} (tests/test_conformance.py's set, so invtool's own ground).", "",
             "| converter | cases | pass | of which = ORT | fail to convert | wrong | crash |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, n in counts.items():
        lines.append(f"| {name} | {len(cases)} | " + " | ".join(str(n[o]) for o in OUTCOMES) + " |")
    lines.append("")
    lines.append("pass: the expected outputs within the case's rtol/atol (\"= ORT\": ONNX Runtime's outputs, "
                 "where they differ from ONNX's expected ones); fail to convert: conversion raised; wrong: runs, "
                 "values differ; crash: the converted module raised.")
    for name in converters:
        if reasons[name]:
            lines += ["", f"Most common reasons to fail to convert, {name}:", ""]
            lines += [f"- {k} x `{why}`" for why, k in reasons[name].most_common(MOST_COMMON)]
            if len(reasons[name]) > MOST_COMMON:
                lines.append(f"- … and {len(reasons[name]) - MOST_COMMON} other reasons")
        if bad[name]:
            lines += ["", f"Wrong and crashed cases, {name}:", ""]
            lines += [f"- {line}" for line in bad[name][:MOST_COMMON]]
            if len(bad[name]) > MOST_COMMON:
                lines.append(f"- … and {len(bad[name]) - MOST_COMMON} more")
    return "\n".join(lines) + "\n"


# --- main ---------------------------------------------------------------------------------------------
def versions(onnx2torch) -> str:
    def v(dist):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "absent"
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), cpu)
    parts = [f"python {platform.python_version()}", f"torch {torch.__version__}", f"onnx {onnx.__version__}",
             f"onnxruntime {ort.__version__}", f"onnxconverter-common {v('onnxconverter-common')}",
             f"invtool {v('invtool')}", f"onnx2torch {v('onnx2torch') if onnx2torch else 'not installed'}"]
    return f"device: CPU, {cpu}, {THREADS} threads (torch and ONNX Runtime)  \nversions: " + ", ".join(parts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a subset, to check that the script runs")
    parser.add_argument("--only", choices=("corpus", "deployed", "conformance"))
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    ort.set_default_logger_severity(3)  # its warnings about the old opsets of some conformance cases
    onnx2torch = import_onnx2torch()
    repeats = 3 if args.quick else REPEATS
    model_converters = {"invtool": invtool_model}
    case_converters = {"invtool": invtool_case}
    if onnx2torch:
        model_converters["onnx2torch"] = onnx2torch_model(onnx2torch.convert)
        case_converters["onnx2torch"] = onnx2torch_case(onnx2torch.convert)
    start = time.perf_counter()
    out = [f"# invtool vs onnx2torch{' (--quick)' if args.quick else ''}", "", versions(onnx2torch), ""]
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        if args.only in (None, "corpus"):
            log("corpus:")
            rows = model_rows(corpus_jobs(folder, args.quick), model_converters, repeats)
            out.append(model_table("Corpus (float32, as exported)", rows, model_converters))
        if args.only in (None, "deployed"):
            log("deployed forms:")
            rows = model_rows(deployed_jobs(folder, args.quick), model_converters, repeats)
            out.append(model_table("Deployed forms (float16, int8)", rows, model_converters))
        if args.only != "conformance":
            out.append(f"loads: yes, or the first line of the exception conversion raised. = ORT: max |ours - ORT| / "
                       f"max(|ORT|, 1) over the graph's outputs on one 1xCx{SIZE}x{SIZE} image (in brackets: in "
                       f"quantisation steps of the outputs a DequantizeLinear makes); \"runs: …\" when the converted "
                       f"module raised. fwd+bwd: median of {repeats} runs of forward + backward of the sum of the "
                       f"float outputs w.r.t. the image (1xCx{SIZE}x{SIZE}, C = 1 for the grey model), weights "
                       f"frozen.\n")
        if args.only in (None, "conformance"):
            log("conformance:")
            out.append(conformance_table(case_converters, args.quick))
    out.append(f"({time.perf_counter() - start:.0f} s in all)")
    print("\n".join(out))


if __name__ == "__main__":
    main()
