"""Strides, stages and default layers found from layer shapes; the circular-padding network for tiling;
devices that are not there."""
from pathlib import Path

import onnx
import pytest
import torch
from click.testing import CliRunner

from invtool import InvtoolError, load_model
from invtool.cli import main
from invtool.geometry import default_layers, stages, stride, strides
from invtool.model import resolve_device

ZOO = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


@pytest.fixture(scope="module")
def resnet(resnet18_onnx):
    return load_model(resnet18_onnx[0], device="cpu")


@pytest.fixture(scope="module")
def vgg(vgg16_conv_onnx):
    return load_model(vgg16_conv_onnx[0], device="cpu")


def test_resnet18_stages_are_its_stage_outputs(resnet):
    """By hand: the stem's ReLU (stride 2), then the last block of each of the four stages."""
    assert [(s.name, s.stride) for s in stages(resnet)] == [
        ("conv1", 2), ("res2b", 4), ("res3b", 8), ("res4b", 16), ("res5b", 32)]
    assert [s.channels for s in stages(resnet)] == [64, 64, 128, 256, 512]


def test_vgg16_stages_are_the_last_layer_of_each_block(vgg):
    assert [(s.name, s.stride) for s in stages(vgg)] == [
        ("conv1_2", 1), ("conv2_2", 2), ("conv3_3", 4), ("conv4_3", 8), ("conv5_3", 16), ("pool5", 32)]


def test_strides_match_the_feature_sizes_of_a_forward_pass(resnet):
    x = torch.zeros(1, 3, 96, 160)
    with torch.no_grad():
        feats = resnet.features(x, list(strides(resnet)))
    for name, s in strides(resnet).items():
        assert feats[name].shape[-2:] == (96 // s, 160 // s), name


def test_non_spatial_layer_has_no_stride(tmp_path):
    from conftest import export_taps
    from exporters.architectures import VGG16
    torch.manual_seed(0)
    path = tmp_path / "vgg_fc.onnx"
    net = VGG16(classifier=True, hidden=8, num_classes=4)
    export_taps(net, path, size=224)
    model = load_model(path, device="cpu")
    with pytest.raises(InvtoolError, match="no spatial resolution"):
        stride(model, "fc6")


@pytest.mark.parametrize("name", ["light_inception_v1", "light_densenet121", "light_resnet50"])
def test_zoo_stages_halve_the_resolution_each_time(name):
    """Inception and DenseNet blocks branch and concatenate; their stages are still one per stride."""
    model = load_model(ZOO / f"{name}.onnx", device="cpu")
    assert [s.stride for s in stages(model)] == [2, 4, 8, 16, 32]


def test_default_layers_keep_the_known_choices_and_use_stages_elsewhere(vgg16_model, resnet):
    assert default_layers(vgg16_model, "texture") == ["conv1_1", "pool1", "pool2", "pool3", "pool4"]
    assert default_layers(vgg16_model, "content") == ["conv4_2"]
    assert default_layers(vgg16_model, "invert") == ["conv3_1"]
    names = [s.name for s in stages(resnet)]   # no aliases in this export: stages
    assert default_layers(resnet, "texture") == names == default_layers(resnet, "style")
    assert default_layers(resnet, "invert") == default_layers(resnet, "content") == ["res3b"]


@pytest.mark.parametrize("fixture", ["vgg", "resnet"])
def test_circular_padding_makes_the_network_commute_with_circular_shifts(fixture, request):
    """Rolling the image by a multiple of a layer's stride rolls that layer exactly, border included, only
    with circular padding: the network sees the image as a torus, so a tiled texture has no seam."""
    model = request.getfixturevalue(fixture)
    wrapped = model.variant(padding="circular")
    assert wrapped._weights is model._weights   # no copy of the weights
    assert model.variant(padding="circular") is wrapped and wrapped.variant(padding="zeros") is model   # kept
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    deepest = stages(model)[-1]
    layers = [s.name for s in stages(model)]
    shifted = torch.roll(x, (2 * deepest.stride, deepest.stride), dims=(2, 3))
    with torch.no_grad():
        a, b = wrapped.features(x, layers), wrapped.features(shifted, layers)
        za, zb = model.features(x, layers), model.features(shifted, layers)
    for s in stages(model):
        k = (2 * deepest.stride // s.stride, deepest.stride // s.stride)
        torch.testing.assert_close(b[s.name], torch.roll(a[s.name], k, dims=(2, 3)), atol=1e-5, rtol=1e-4)
    s = stages(model)[-1]
    assert not torch.allclose(zb[s.name], torch.roll(za[s.name], (2, 1), dims=(2, 3)), atol=1e-3)


def test_layers_stages_command(resnet18_onnx):
    result = CliRunner().invoke(main, ["layers", str(resnet18_onnx[0]), "--stages"])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.strip().splitlines()]
    assert rows[0][-1] == "stride"
    assert [(r[0], r[-1]) for r in rows[1:]] == [("conv1", "2"), ("res2b", "4"), ("res3b", "8"), ("res4b", "16"),
                                                  ("res5b", "32")]


@pytest.mark.parametrize("device, message", [("tpu9", "unknown device"), ("cuda:7", "cuda")])
def test_absent_device_is_a_one_line_error(device, message, resnet18_onnx, tmp_path):
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    with pytest.raises(InvtoolError, match=message):
        resolve_device(device)
    out = tmp_path / "x.png"
    result = CliRunner().invoke(main, ["visualize", "--model", str(resnet18_onnx[0]), "--layer", "res2b",
                                       "--channels", "0", "--steps", "1", "--device", device, "-o", str(out)])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("error: ") and message in result.output
    assert not out.exists()


def test_cuda_without_a_gpu_says_so():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(InvtoolError, match="no CUDA GPU.*--device cpu"):
        resolve_device("cuda")
