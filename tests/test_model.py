"""FeatureModel: whole-network parity with ONNX Runtime, gradients, truncation, names, bad input."""
import json

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import TensorProto, helper

from conftest import assert_close, export_taps, ort_outputs
from oracle import model_of
from exporters.architectures import VGG16
from invtool import InvtoolError, load_model
from invtool.cli import main
from invtool.onnx.graph import build
from invtool.preprocess import PRESETS


def test_vgg16_matches_onnxruntime_at_every_tap(vgg16_conv_onnx):
    path, net = vgg16_conv_onnx
    x = np.random.default_rng(0).random((2, 3, 48, 80), dtype=np.float32)
    ref = ort_outputs(path, x)
    model = load_model(path, device="cpu")
    with torch.no_grad():
        ours = model.features(torch.from_numpy(x), list(ref))
        mine = net.taps(torch.from_numpy(x))
    for name in ref:
        assert_close(ours[name], ref[name])
        assert_close(mine[name], ref[name])  # and the oracle agrees with the source module


def test_resnet18_matches_onnxruntime_at_every_tap(resnet18_onnx):
    path, _ = resnet18_onnx
    x = np.random.default_rng(1).random((1, 3, 64, 96), dtype=np.float32)
    ref = ort_outputs(path, x)
    with torch.no_grad():
        ours = load_model(path, device="cpu").features(torch.from_numpy(x), list(ref))
    for name in ref:
        assert_close(ours[name], ref[name])


@pytest.mark.parametrize("opset", [7, 9, 11, 13, 21])
def test_small_cnn_loads_at_every_opset(tmp_path, opset):
    torch.manual_seed(opset)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                              torch.nn.MaxPool2d(2), torch.nn.Conv2d(8, 4, 3, stride=2), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 3 * 3, 5), torch.nn.Softmax(dim=1)).eval()
    path = tmp_path / "small.onnx"
    torch.onnx.export(net, (torch.rand(1, 3, 16, 16),), str(path), dynamo=False, opset_version=min(opset, 20),
                      input_names=["image"], output_names=["probs"], dynamic_axes={"image": {0: "n"}})
    if opset == 21:  # no exporter writes 21 yet: the same graph stamped 21 must still load
        m = onnx.load(str(path))
        m.opset_import[0].version = 21
        m.ir_version = 10
        onnx.save(m, str(path))
    x = np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)
    with torch.no_grad():
        ours = load_model(path, device="cpu").features(torch.from_numpy(x), ["probs"])["probs"]
    assert_close(ours, ort_outputs(path, x)["probs"])


def test_gradients_match_finite_differences_in_float64(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                              torch.nn.AvgPool2d(2), torch.nn.Conv2d(4, 2, 3, groups=2, padding=1),
                              torch.nn.Tanh()).eval()
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(net, (torch.rand(1, 3, 6, 6),), str(path), dynamo=False, opset_version=13,
                      input_names=["image"], output_names=["out"], dynamic_axes={"image": {2: "h", 3: "w"}})
    module = build(onnx.load(str(path)), ["out"]).double()
    x = torch.rand(1, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: module(t)[0], (x,), eps=1e-6, atol=1e-6)


def test_features_are_differentiable_wrt_the_image(vgg16_conv_onnx):
    path, net = vgg16_conv_onnx
    model = load_model(path, device="cpu")
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0), requires_grad=True)
    model.features(x, ["conv2_1"])["conv2_1"].square().mean().backward()
    ref, = torch.autograd.grad(net.taps(x)["conv2_1"].square().mean(), x)   # through the source module
    torch.testing.assert_close(x.grad, ref, rtol=1e-3, atol=1e-3 * float(ref.abs().max()))
    assert not any(p.requires_grad for p in model.module((model.resolve("conv2_1"),)).buffers())
    assert list(model.module((model.resolve("conv2_1"),)).parameters()) == []


def test_asking_for_the_first_layer_builds_only_the_first_nodes(vgg16_conv_onnx):
    model = load_model(vgg16_conv_onnx[0], device="cpu")
    module = model.module((model.resolve("conv1_1"),))
    ops = [n.target.__name__ for n in module.graph.nodes if n.op == "call_function"]
    assert len(ops) == 2, ops  # Conv and Relu, nothing after
    assert sum(b.numel() for b in module.buffers()) == 64 * 3 * 9 + 64
    deeper = model.module((model.resolve("pool2"),))
    assert len([n for n in deeper.graph.nodes if n.op == "call_function"]) == 10


def test_module_per_name_set_is_cached(vgg16_conv_onnx):
    model = load_model(vgg16_conv_onnx[0], device="cpu")
    x = torch.rand(1, 3, 16, 16)
    model.features(x, ["conv1_2", "conv1_1"])
    model.features(x, ["conv1_1", "conv1_2"])
    assert len(model._modules) == 1


def test_aliases_and_raw_names_give_the_same_tensor(tmp_path):
    torch.manual_seed(0)
    net = VGG16(classifier=False).eval()
    path = tmp_path / "v.onnx"
    export_taps(net, path)
    m = onnx.load(str(path))
    raw = m.graph.node[1].output[0]  # the first Relu's own tensor name, before renaming to conv1_1
    helper.set_model_props(m, {"invtool.aliases": json.dumps({"features.1": "conv1_1", "block1_conv1": "conv1_1"})})
    onnx.save(m, str(path))
    model = load_model(path, device="cpu")
    x = torch.rand(1, 3, 16, 16)
    f = model.features(x, ["conv1_1", "features.1", "block1_conv1", raw])
    assert torch.equal(f["conv1_1"], f["features.1"]) and torch.equal(f["conv1_1"], f["block1_conv1"])
    assert set(f) == {"conv1_1", "features.1", "block1_conv1", raw}
    with pytest.raises(InvtoolError, match=r"unknown layer 'conv1_3'.*did you mean: .*conv1_"):
        model.features(x, ["conv1_3"])


def test_layers_lists_every_tensor_with_shape_and_aliases(vgg16_conv_onnx):
    model = load_model(vgg16_conv_onnx[0], device="cpu")
    infos = {i.name: i for i in model.describe(64)}
    assert infos["conv1_1"].shape == (1, 64, 64, 64) and infos["conv1_1"].op == "Relu"
    assert infos["pool5"].shape == (1, 512, 2, 2) and infos["pool5"].op == "MaxPool"
    assert model.min_size(["pool5"]) == 32 and model.min_size(["conv1_1"]) == 1
    assert model.channels("conv4_1") == 512


def _single_conv_model(path, pool_op="MaxPool"):
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 3, 1, 1], np.arange(6, dtype=np.float32) / 6 - 0.4)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node(pool_op, ["c"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, None, None])],
                          [helper.make_tensor_value_info("p", TensorProto.FLOAT, None)], [w])
    onnx.save(model_of(g, 13), str(path))


def test_pool_avg_swaps_max_pool_for_average_pool_of_the_same_geometry(tmp_path):
    _single_conv_model(tmp_path / "max.onnx", "MaxPool")
    _single_conv_model(tmp_path / "avg.onnx", "AveragePool")  # count_include_pad=0 by default
    x = np.random.default_rng(0).random((1, 3, 9, 9), dtype=np.float32)
    with torch.no_grad():
        swapped = load_model(tmp_path / "max.onnx", pool="avg", device="cpu").features(torch.from_numpy(x), ["p"])["p"]
        kept = load_model(tmp_path / "max.onnx", device="cpu").features(torch.from_numpy(x), ["p"])["p"]
    assert_close(swapped, ort_outputs(tmp_path / "avg.onnx", x)["p"])
    assert_close(kept, ort_outputs(tmp_path / "max.onnx", x)["p"])


@pytest.mark.parametrize("preset", ["imagenet", "caffe", "tf"])
def test_preprocess_presets_match_the_framework_convention(tmp_path, preset):
    _single_conv_model(tmp_path / "m.onnx")
    x = np.random.default_rng(0).random((1, 3, 8, 8), dtype=np.float32)
    p = PRESETS[preset]
    by_hand = (x[:, ::-1] if p.bgr else x) * p.scale
    by_hand = (by_hand - np.array(p.mean, np.float32)[:, None, None]) / np.array(p.std, np.float32)[:, None, None]
    with torch.no_grad():
        ours = load_model(tmp_path / "m.onnx", preprocess=preset, device="cpu").features(torch.from_numpy(x), ["p"])
    assert_close(ours["p"], ort_outputs(tmp_path / "m.onnx", by_hand.astype(np.float32))["p"])


def test_channels_last_input_is_transposed_for_the_model(tmp_path):
    """A tf2onnx-style graph: NHWC input, a Transpose to NCHW, then convolutions."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], np.random.default_rng(0).random(108).astype(np.float32))
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["t", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "h", "w", 3])],
                          [helper.make_tensor_value_info("r", TensorProto.FLOAT, None)], [w])
    onnx.save(model_of(g, 11), str(tmp_path / "nhwc.onnx"))
    x = np.random.default_rng(1).random((1, 3, 5, 7), dtype=np.float32)
    with torch.no_grad():
        ours = load_model(tmp_path / "nhwc.onnx", device="cpu").features(torch.from_numpy(x), ["r"])["r"]
    assert_close(ours, ort_outputs(tmp_path / "nhwc.onnx", x.transpose(0, 2, 3, 1).copy())["r"])


def test_constant_node_weights_load_like_initializers(tmp_path):
    _single_conv_model(tmp_path / "init.onnx")
    m = onnx.load(str(tmp_path / "init.onnx"))
    w = m.graph.initializer.pop()
    m.graph.node.insert(0, helper.make_node("Constant", [], ["w"], value=w))
    onnx.save(m, str(tmp_path / "const.onnx"))
    x = torch.rand(1, 3, 8, 8)
    a = load_model(tmp_path / "init.onnx", device="cpu").features(x, ["p"])["p"]
    b = load_model(tmp_path / "const.onnx", device="cpu").features(x, ["p"])["p"]
    assert torch.equal(a, b)


# --- bad input -------------------------------------------------------------------------------------

def test_missing_file_says_how_to_build_the_default(tmp_path):
    with pytest.raises(InvtoolError, match="model file not found.*make export-models"):
        load_model(tmp_path / "models" / "vgg16.onnx")


def test_not_onnx_and_truncated_files_are_one_line_errors(tmp_path, vgg16_conv_onnx):
    (tmp_path / "a.onnx").write_text("this is not a model\n" * 10)
    data = vgg16_conv_onnx[0].read_bytes()
    (tmp_path / "b.onnx").write_bytes(data[: len(data) // 2])
    for name in ("a.onnx", "b.onnx"):
        with pytest.raises(InvtoolError, match="not (a readable ONNX file|an ONNX model)") as e:
            load_model(tmp_path / name)
        assert "\n" not in str(e.value)


def test_model_without_image_input_is_refused(tmp_path):
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])])
    onnx.save(helper.make_model(g), str(tmp_path / "flat.onnx"))
    with pytest.raises(InvtoolError, match=r"4-D image input.*x \[1, 10\]"):
        load_model(tmp_path / "flat.onnx")


def test_unsupported_op_names_op_node_and_supported_set_before_building(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("FancyOp", ["r"], ["y"], name="mystery")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    onnx.save(helper.make_model(g), str(tmp_path / "odd.onnx"))
    model = load_model(tmp_path / "odd.onnx", device="cpu")
    with pytest.raises(InvtoolError, match=r"unsupported op FancyOp \(node 'mystery'\).*supported: .*Conv"):
        model.features(torch.rand(1, 3, 4, 4), ["y"])
    assert model._modules == {}
    assert model.features(torch.rand(1, 3, 4, 4), ["r"])["r"].shape == (1, 3, 4, 4)  # the rest still works


@pytest.mark.parametrize("x", [torch.rand(3, 8, 8), torch.rand(1, 1, 8, 8), np.zeros((1, 3, 8, 8))])
def test_image_of_wrong_rank_or_channels_is_refused(vgg16_conv_onnx, x):
    with pytest.raises(InvtoolError, match=r"image tensor must be \[N, 3, H, W\]"):
        load_model(vgg16_conv_onnx[0], device="cpu").features(x, ["conv1_1"])


# --- CLI -------------------------------------------------------------------------------------------

def test_cli_layers_table_and_json(vgg16_conv_onnx):
    path = str(vgg16_conv_onnx[0])
    table = CliRunner().invoke(main, ["layers", path, "--size", "64"])
    assert table.exit_code == 0, table.output
    line = next(l for l in table.output.splitlines() if l.startswith("conv3_1 "))
    assert "Relu" in line and line.endswith("1x256x16x16")
    js = CliRunner().invoke(main, ["layers", path, "--size", "96x64", "--json"])
    rows = {r["name"]: r for r in json.loads(js.output)}
    assert rows["pool1"]["shape"] == [1, 64, 32, 48]


def test_cli_errors_are_one_line_with_exit_codes(tmp_path):
    r = CliRunner().invoke(main, ["layers", str(tmp_path / "models" / "none.onnx")])
    assert r.exit_code == 1 and r.output.strip().startswith("error: model file not found") and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["layers", str(tmp_path / "x.onnx"), "--size", "big"])
    assert r.exit_code == 2


def test_one_default_model_for_every_command():
    """DEFAULT_MODEL is defined once, in model.py: every API function and the CLI's --model default to it."""
    import inspect

    from invtool import cli, inversion, style, texture, visualization
    from invtool.model import DEFAULT_MODEL

    for fn in (texture.synthesize_texture, inversion.invert, style.transfer_style, visualization.visualize):
        assert inspect.signature(fn).parameters["model"].default is DEFAULT_MODEL, fn.__name__
    assert all(m.DEFAULT_MODEL is DEFAULT_MODEL for m in (texture, inversion, style, visualization, cli))
    option = next(p for p in cli.main.commands["texture"].params if p.name == "model")
    assert option.default == DEFAULT_MODEL


def test_as_model_loads_a_path_or_switches_a_loaded_models_pooling(vgg16_conv_onnx):
    """One loader for every command: a path is loaded; a loaded model comes back itself, or as a variant
    sharing its graph and weights when the pooling asked for differs."""
    from invtool.model import FeatureModel, as_model

    model = as_model(vgg16_conv_onnx[0], device="cpu")
    assert isinstance(model, FeatureModel) and model.pool == "max"
    assert as_model(model) is model
    avg = as_model(model, pool="avg")
    assert avg.pool == "avg" and avg._weights is model._weights and as_model(avg, pool="avg") is avg


def test_moving_a_model_moves_its_variants(vgg16_conv_onnx, monkeypatch):
    """`to` moves the model and every variant sharing its weights (an avg-pool or circular variant made before
    the move must not keep its weights on the old device). Without a second device here, torch's `meta`
    device stands in for one."""
    import invtool.model as model_module
    monkeypatch.setattr(model_module, "resolve_device", lambda device=None: torch.device(device or "cpu"))
    model = load_model(vgg16_conv_onnx[0], device="cpu")
    avg = model.variant(pool="avg")
    model.to("meta")
    assert avg.device.type == "meta" and model.variant(pool="avg") is avg
    assert {w.device.type for w in avg._weights.values()} == {"meta"}
    assert avg.features(torch.zeros(1, 3, 32, 32, device="meta"), ["conv1_1"])["conv1_1"].device.type == "meta"


def test_a_narrowed_variant_computes_the_listed_channels_alone(vgg16_conv_onnx):
    """`variant(channels=...)`: the listed channels of a Conv's output and the image's gradient through them equal
    the full model's, the others are zeros, and the built module holds the Conv's weights for those channels only.
    A tensor that another requested layer needs, or an index past the channel count, is computed whole."""
    model = load_model(vgg16_conv_onnx[0], device="cpu")
    conv = next(n for n in model.proto.graph.node if n.op_type == "Conv" and model.resolve("conv2_1") in
                [o for m in model.proto.graph.node if m.input[0] == n.output[0] for o in m.output])
    tensor, picked = conv.output[0], [3, 7, 100]
    narrow = model.variant(channels={tensor: picked})
    assert model.variant(channels={tensor: [7, 3, 100, 3]}) is not narrow   # per run, not kept
    x = torch.rand(2, 3, 40, 48, requires_grad=True)
    full, part = model.features(x, [tensor])[tensor], narrow.features(x, [tensor])[tensor]
    assert part.shape == full.shape and torch.equal(part[:, picked], full[:, picked])
    assert not part[:, [c for c in range(full.shape[1]) if c not in picked]].any()
    assert torch.allclose(*(torch.autograd.grad(f[:, 7].mean(), x)[0] for f in (full, part)), atol=1e-7)
    weights = {b.shape[0] for n, b in narrow.module((tensor,)).named_buffers() if b.dim() == 4}
    assert len(picked) in weights and full.shape[1] not in weights   # the last Conv's weights: 3 rows of 128

    with torch.no_grad():   # the tensor feeds conv2_1, also asked for: every channel is computed
        both = narrow.features(x, [tensor, "conv2_1"])
        ref = model.features(x, [tensor, "conv2_1"])
        assert all(torch.equal(both[n], ref[n]) for n in ref)
        past = model.variant(channels={tensor: [3, 10_000]}).features(x, [tensor])[tensor]
        assert torch.equal(past, full)   # an index out of range: the objective's own check names it


def test_a_narrowed_grouped_conv_is_computed_whole():
    """A Conv with groups reads a slice of its input per output channel: narrowing its weights alone would be
    wrong, so it is computed whole, equal to ONNX Runtime."""
    rng = np.random.default_rng(0)
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 2, 3, 3], rng.standard_normal(72).astype(np.float32))
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], group=2, pads=[1, 1, 1, 1])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [w])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    x = rng.random((1, 4, 8, 8), dtype=np.float32)
    with torch.no_grad():
        y = build(proto, ["y"], channels={"y": (1,)})(torch.from_numpy(x))[0]
    import onnxruntime as ort
    ref = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert_close(y, ref)
