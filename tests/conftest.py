"""Shared fixtures: small ONNX files exported from the reference architectures at random init."""
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from exporters.architectures import ResNet18, VGG16
from oracle import assert_close as oracle_assert_close

ROOT = Path(__file__).resolve().parent.parent
VGG16_ONNX = ROOT / "models" / "vgg16.onnx"

torch.set_num_threads(2)
# no TF32 in CUDA convolutions and matmuls (cuDNN's default allows it): on a GPU the tests compare with ONNX Runtime
# and with one-pass results at fp32 tolerance, as on the CPU
torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False


class Taps(torch.nn.Module):
    """Wraps an architecture so that every canonical tap is a named graph output."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return tuple(self.net.taps(x).values())


def export_taps(net, path, opset=17, size=64):
    """torch.onnx.export of all taps of `net` (eval mode) with dynamic N, H, W; returns tap names."""
    net = net.eval()
    names = list(net.taps(torch.zeros(1, 3, size, size)))
    torch.onnx.export(Taps(net), (torch.rand(1, 3, size, size),), str(path), dynamo=False,
                      opset_version=opset, input_names=["image"], output_names=names,
                      dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}})
    return names


def randomize_bn(net, seed=0):
    """Non-trivial BatchNorm statistics, so eval semantics are really exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return net


@pytest.fixture(scope="session")
def vgg16_conv_onnx(tmp_path_factory):
    """(path, torch module) of VGG16's conv part at random init."""
    torch.manual_seed(0)
    net = VGG16(classifier=False).eval()
    path = tmp_path_factory.mktemp("vgg") / "vgg16conv.onnx"
    export_taps(net, path)
    return path, net


@pytest.fixture(scope="session")
def resnet18_onnx(tmp_path_factory):
    torch.manual_seed(0)
    net = randomize_bn(ResNet18()).eval()
    path = tmp_path_factory.mktemp("resnet") / "resnet18.onnx"
    export_taps(net, path, opset=13)
    return path, net


def gram_objective(model, source, layers):
    """Gatys' Gram loss against `source` at `layers`, one named term per layer: the engine tests' objective."""
    from invtool import losses
    from invtool.objectives import Objective
    with torch.no_grad():
        feats = model.features(source, layers)
    targets = {n: losses.gram_matrix(feats[n]) for n in layers}
    return sum(Objective(lambda f, x, n=n: losses.gram_loss(losses.gram_matrix(f[n]), targets[n]), [n], name=n)
               for n in layers)


def assert_close(actual, expected, rel=1e-4):
    """Max abs error within `rel` of the expected output's scale (max |expected|, at least 1)."""
    if isinstance(actual, torch.Tensor):
        actual = actual.detach().cpu().numpy()
    oracle_assert_close(actual, expected, atol_scale=rel)


@pytest.fixture(scope="session")
def vgg16_model():
    """The real models/vgg16.onnx (trained conv weights), loaded once for every test that needs it."""
    if not VGG16_ONNX.is_file():
        pytest.skip("models/vgg16.onnx is missing: run `make export-models`")
    from invtool import load_model
    return load_model(VGG16_ONNX, device="cpu")


def ort_outputs(path, x: np.ndarray, names=None) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = names or [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {sess.get_inputs()[0].name: x})))


@pytest.fixture(scope="session")
def corpus_model(tmp_path_factory):
    """name -> CorpusModel of tests/corpus.py, each exported into a session temporary directory on first
    use (a dynamo export takes ~10 s, so a selected test builds only its own model)."""
    import corpus
    directory, built = tmp_path_factory.mktemp("corpus"), {}

    def get(name: str):
        if name not in built:
            try:
                built.update(corpus.build_corpus(directory, [name]))
            except ModuleNotFoundError as e:  # the dynamo exporter without onnxscript (in the dev extra)
                pytest.skip(f"{name} cannot be exported here: {e}")
        return built[name]
    return get


# --- the atlas -------------------------------------------------------------------------------------

# on the CPU on every machine: these tests check byte-identical PNGs (reruns, interrupted runs, Ray workers),
# which a GPU's reordered sums do not give, and the CPU's dataset pass on ONNX Runtime
SMALL_ATLAS = dict(layers="conv1_2,conv2_1", channels="0-3", size="32", steps="4", batch="2", top="3",
                   example_size="32", seed="3", device="cpu")


def atlas_args(model, out, **options) -> list[str]:
    """`invtool atlas` arguments for the small test atlas (SMALL_ATLAS, overridden by `options`)."""
    args = ["atlas", str(model), "-o", str(out), "--quiet"]
    for key, value in {**SMALL_ATLAS, **options}.items():
        if value is not None:
            args += [f"--{key.replace('_', '-')}", str(value)]
    return args


@pytest.fixture(scope="session")
def atlas_images(tmp_path_factory):
    """A folder of five small seeded images (of other sizes and aspects) and two files that are not images."""
    from invtool.image import write_png
    folder = tmp_path_factory.mktemp("atlas-images")
    g = torch.Generator().manual_seed(0)
    for i, (h, w) in enumerate([(40, 48), (48, 40), (32, 32), (36, 60), (64, 50)]):
        write_png(folder / f"img{i}.png", torch.rand(1, 3, h, w, generator=g))
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    return folder


@pytest.fixture(scope="session")
def small_atlas(vgg16_conv_onnx, atlas_images, tmp_path_factory):
    """The small atlas built once by the command, serially: (its folder, the command's output)."""
    from click.testing import CliRunner

    from invtool.cli import main
    out = tmp_path_factory.mktemp("atlas") / "site"
    result = CliRunner().invoke(main, atlas_args(vgg16_conv_onnx[0], out, images=atlas_images))
    assert result.exit_code == 0, result.output
    return out, result.output
