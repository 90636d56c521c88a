"""Rebuilder overhead: forward+backward of the rebuilt VGG16 up to conv5_1 against a hand-written
nn.Sequential with the same weights, and ONNX Runtime's forward against the rebuilt forward.

Run: `make bench` (or `.venv/bin/python tests/bench/bench_rebuilder.py`). 2 threads, 256x256.
Target: rebuilt / hand-written forward+backward <= 1.03.
"""
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import export_taps  # noqa: E402
from exporters.architectures import VGG16  # noqa: E402
from invtool import load_model  # noqa: E402
from invtool.onnx.graph import initializers  # noqa: E402
from invtool.preprocess import Preprocess, PRESETS  # noqa: E402

SIZE, REPEATS, ROUNDS = 256, 3, 3
LAYER = "conv5_1"


def hand_written(path: Path) -> torch.nn.Sequential:
    """Preprocessing + VGG16 features up to conv5_1's ReLU, weights copied from the ONNX file."""
    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    pre = PRESETS["caffe"] if "invtool.preprocess" in props else Preprocess()
    net = VGG16(classifier=False)
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    weights = initializers(model)
    conv_nodes = [n for n in model.graph.node if n.op_type == "Conv"]
    with torch.no_grad():
        for conv, node in zip(convs, conv_nodes):
            conv.weight.copy_(weights[node.input[1]])
            conv.bias.copy_(weights[node.input[2]])
    # frozen like the rebuilt module's buffers: only the image gets a gradient in either
    return torch.nn.Sequential(pre.module(), *list(net.features)[:26]).eval().requires_grad_(False)


def timed(fn) -> float:
    """Median over ROUNDS of the mean time of REPEATS calls, after a warm-up."""
    fn()
    rounds = []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        for _ in range(REPEATS):
            fn()
        rounds.append((time.perf_counter() - t) / REPEATS)
    return statistics.median(rounds)


def main():
    torch.set_num_threads(2)
    path = ROOT / "models" / "vgg16.onnx"
    if not path.exists():
        path = Path(tempfile.mkdtemp()) / "vgg16conv.onnx"
        export_taps(VGG16(classifier=False), path)
        print(f"models/vgg16.onnx missing: random-init VGG16 exported to {path}")
    model = load_model(path, device="cpu")
    seq = hand_written(path)
    x = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        err = (model.features(x, [LAYER])[LAYER] - seq(x)).abs().max().item()
    print(f"same weights check: max |rebuilt - hand-written| at {LAYER} = {err:.2e}")

    def fwd_bwd(f):
        def run():
            xi = x.clone().requires_grad_(True)
            f(xi).square().mean().backward()
        return run

    # interleave the two so drifting machine load hits both alike
    t_rebuilt, t_hand = [], []
    for _ in range(3):
        t_rebuilt.append(timed(fwd_bwd(lambda xi: model.features(xi, [LAYER])[LAYER])))
        t_hand.append(timed(fwd_bwd(seq)))
    rb, hw = min(t_rebuilt), min(t_hand)
    print(f"forward+backward to {LAYER} at {SIZE}x{SIZE}: rebuilt {rb * 1e3:.0f} ms, hand-written {hw * 1e3:.0f} ms, "
          f"ratio {rb / hw:.3f} (target <= 1.03)")

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    m = onnx.load(str(path))
    tensor = model.resolve(LAYER)
    del m.graph.output[:]
    m.graph.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    xn = x.numpy()
    t_ort = timed(lambda: sess.run(None, {model.input_name: xn}))
    with torch.no_grad():
        t_fwd = timed(lambda: model.features(x, [LAYER]))
    print(f"forward only to {LAYER}: ONNX Runtime {t_ort * 1e3:.0f} ms, rebuilt {t_fwd * 1e3:.0f} ms, "
          f"ratio rebuilt/ORT {t_fwd / t_ort:.3f}")
    ort_out = sess.run(None, {model.input_name: xn})[0]
    with torch.no_grad():
        ours = model.features(x, [LAYER])[LAYER].numpy()
    print(f"parity with ONNX Runtime at {LAYER}: max abs error {np.abs(ours - ort_out).max():.2e} "
          f"(scale {np.abs(ort_out).max():.2e})")


if __name__ == "__main__":
    main()
