"""A corpus of real export patterns: small CNNs in the shapes people export, written the way the exporters
people use write them, for checking the rebuilder against ONNX Runtime at every tensor.

Each architecture is defined here (random weights, seeded; BatchNorm statistics randomised so inference
semantics matter) and exported with dynamic H and W:
- YOLO-style detector (C2f blocks with Split, SiLU, SPPF, nearest Resize by scales, a DFL head and
  anchors built from Shape/Range/ConstantOfShape/Expand of the activations, as ultralytics'
  make_anchors does), by the legacy exporter (opset 17, as YOLOv8 is usually exported) and by dynamo;
- MobileNetV3-style classifier (depthwise convs, HardSigmoid/HardSwish, squeeze-excitation, global
  pooling), by the legacy exporter at opset 13 (HardSwish as HardSigmoid * x) and by dynamo;
- Inception/DenseNet-style net (Concat-heavy, ceil-mode pools), by dynamo;
- OCR-style grey-input recogniser (a CRNN: one input channel, pools that halve the height faster than the
  width, the height averaged away, a per-column classifier), by the legacy exporter at opset 12 (as
  ddddocr's PyTorch 1.9 export) and by dynamo;
- Paddle2ONNX-style graph, hand-built with onnx.helper (paddle itself is too heavy to install): weights
  and every scalar as `Constant` nodes, Clip with Constant bounds, HardSigmoid, ConvTranspose,
  BatchNormalization, Pad/Reshape/Resize with Constant operands.

`python tests/corpus.py` builds the corpus into a temporary directory and prints, per model, its
exporter, opset, node count, op types and worst parity error against ONNX Runtime at each input size.
"""
import contextlib
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from conftest import randomize_bn

LEGACY = "torch.onnx legacy (TorchScript), dynamic axes"
DYNAMO = "torch.onnx dynamo"
PADDLE = "hand-built onnx.helper, Paddle2ONNX style"

# (N, H, W) of the two inputs every model is checked at: a square one and a non-square batch of two
SIZES = ((1, 64, 64), (2, 96, 80))


@dataclass(frozen=True)
class CorpusModel:
    """One exported corpus file and how it was made."""

    name: str
    path: Path
    exporter: str
    opset: int
    sizes: tuple[tuple[int, int, int], ...] = SIZES  # (N, H, W) inputs to test
    channels: int = 3                                # C: 3 (RGB) or 1 (grey)

    @property
    def proto(self) -> onnx.ModelProto:
        return onnx.load(str(self.path))

    def inputs(self, seed: int = 0):
        """One reproducible image batch [N, C, H, W] in [0, 1] per size."""
        rng = np.random.default_rng(seed)
        return [rng.random((n, self.channels, h, w), dtype=np.float32) for n, h, w in self.sizes]


# --- YOLO-style detector (ultralytics YOLOv8 layout, a few channels wide) ---------------------------
class ConvBnSiLU(nn.Module):
    def __init__(self, c1, c2, k=1, s=1, g=1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c, shortcut=True):
        super().__init__()
        self.cv1, self.cv2, self.add = ConvBnSiLU(c, c, 3), ConvBnSiLU(c, c, 3), shortcut

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """cv1 -> Split in two -> a chain of bottlenecks on the second half -> Concat all -> cv2 (ultralytics'
    forward_split, the form its ONNX exports take)."""

    def __init__(self, c1, c2, n=1, shortcut=False):
        super().__init__()
        self.c = c2 // 2
        self.cv1 = ConvBnSiLU(c1, 2 * self.c)
        self.cv2 = ConvBnSiLU((2 + n) * self.c, c2)
        self.m = nn.ModuleList(Bottleneck(self.c, shortcut) for _ in range(n))

    def forward(self, x):
        y = list(self.cv1(x).split((self.c, self.c), 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    def __init__(self, c1, c2, k=5):
        super().__init__()
        self.cv1, self.cv2 = ConvBnSiLU(c1, c1 // 2), ConvBnSiLU(c1 // 2 * 4, c2)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x):
        y = [self.cv1(x)]
        y.extend(self.m(y[-1]) for _ in range(3))
        return self.cv2(torch.cat(y, 1))


def make_anchors(feats, strides, offset=0.5):
    """ultralytics' make_anchors: cell centres and strides from each feature map's (traced) size."""
    points, stride_tensor = [], []
    for f, stride in zip(feats, strides):
        _, _, h, w = f.shape
        sx = torch.arange(end=w, dtype=f.dtype) + offset
        sy = torch.arange(end=h, dtype=f.dtype) + offset
        sy, sx = torch.meshgrid(sy, sx, indexing="ij")
        points.append(torch.stack((sx, sy), -1).view(-1, 2))
        stride_tensor.append(torch.full((h * w, 1), stride, dtype=f.dtype))
    return torch.cat(points), torch.cat(stride_tensor)


class YoloStyle(nn.Module):
    """Backbone to stride 16, a PAN neck (nearest upsample + Concat), a decoupled head on strides 8 and
    16 with distribution focal loss box decoding, returning boxes and class scores [N, 4 + nc, anchors]."""

    def __init__(self, nc=3, reg_max=4):
        super().__init__()
        self.nc, self.reg_max, self.strides = nc, reg_max, (8.0, 16.0)
        self.stem = nn.Sequential(ConvBnSiLU(3, 8, 3, 2), ConvBnSiLU(8, 16, 3, 2), C2f(16, 16, 1, True))
        self.p3 = nn.Sequential(ConvBnSiLU(16, 24, 3, 2), C2f(24, 24, 1, True))
        self.p4 = nn.Sequential(ConvBnSiLU(24, 32, 3, 2), C2f(32, 32, 1, True), SPPF(32, 32))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.n3 = C2f(32 + 24, 24)
        self.down = ConvBnSiLU(24, 24, 3, 2)
        self.n4 = C2f(24 + 32, 32)
        self.box = nn.ModuleList(nn.Sequential(ConvBnSiLU(c, 16, 3), nn.Conv2d(16, 4 * reg_max, 1)) for c in (24, 32))
        self.cls = nn.ModuleList(nn.Sequential(ConvBnSiLU(c, 16, 3), nn.Conv2d(16, nc, 1)) for c in (24, 32))
        self.dfl = nn.Conv2d(reg_max, 1, 1, bias=False).requires_grad_(False)
        self.dfl.weight.data[:] = torch.arange(reg_max, dtype=torch.float32).view(1, reg_max, 1, 1)

    def forward(self, x):
        p3 = self.p3(self.stem(x))
        p4 = self.p4(p3)
        n3 = self.n3(torch.cat([self.up(p4), p3], 1))
        n4 = self.n4(torch.cat([self.down(n3), p4], 1))
        feats = [torch.cat([b(f), c(f)], 1) for f, b, c in zip((n3, n4), self.box, self.cls)]
        n, no = feats[0].shape[0], 4 * self.reg_max + self.nc
        x_cat = torch.cat([f.view(n, no, -1) for f in feats], 2)
        anchors, strides = (t.transpose(0, 1) for t in make_anchors(feats, self.strides))
        box, cls = x_cat.split((4 * self.reg_max, self.nc), 1)
        a = box.shape[2]
        dist = self.dfl(box.view(n, 4, self.reg_max, a).transpose(2, 1).softmax(1)).view(n, 4, a)
        lt, rb = dist.chunk(2, 1)
        x1y1, x2y2 = anchors.unsqueeze(0) - lt, anchors.unsqueeze(0) + rb
        dbox = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * strides
        return torch.cat((dbox, cls.sigmoid()), 1)


# --- MobileNetV3-style classifier ----------------------------------------------------------------
class SqueezeExcite(nn.Module):
    def __init__(self, c, squeeze):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.relu = nn.Conv2d(c, squeeze, 1), nn.ReLU()
        self.fc2, self.gate = nn.Conv2d(squeeze, c, 1), nn.Hardsigmoid()

    def forward(self, x):
        return x * self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))


class InvertedResidual(nn.Module):
    """1x1 expand, depthwise kxk, optional squeeze-excitation, 1x1 project, residual when shapes allow."""

    def __init__(self, cin, exp, cout, k, stride, se, act):
        super().__init__()
        layers = []
        if exp != cin:
            layers += [nn.Conv2d(cin, exp, 1, bias=False), nn.BatchNorm2d(exp), act()]
        layers += [nn.Conv2d(exp, exp, k, stride, k // 2, groups=exp, bias=False), nn.BatchNorm2d(exp), act()]
        if se:
            layers.append(SqueezeExcite(exp, max(8, exp // 4)))
        layers += [nn.Conv2d(exp, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV3Style(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        hs, re = nn.Hardswish, nn.ReLU
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), hs(),
            InvertedResidual(8, 8, 8, 3, 2, True, re),
            InvertedResidual(8, 24, 12, 3, 2, False, re),
            InvertedResidual(12, 32, 12, 3, 1, False, re),
            InvertedResidual(12, 48, 16, 5, 2, True, hs),
            InvertedResidual(16, 64, 16, 5, 1, True, hs),
            nn.Conv2d(16, 64, 1, bias=False), nn.BatchNorm2d(64), hs())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(64, 80), hs(), nn.Dropout(0.2), nn.Linear(80, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1)).softmax(-1)


# --- Inception / DenseNet-style net ----------------------------------------------------------------
def conv_bn_relu(c1, c2, k=1, s=1):
    return nn.Sequential(nn.Conv2d(c1, c2, k, s, k // 2, bias=False), nn.BatchNorm2d(c2), nn.ReLU())


class Inception(nn.Module):
    """Four branches (1x1; 1x1-3x3; 1x1-3x3-3x3; ceil-mode 3x3 max pool-1x1) concatenated."""

    def __init__(self, c1, b1, b2, b3, b4):
        super().__init__()
        self.b1 = conv_bn_relu(c1, b1)
        self.b2 = nn.Sequential(conv_bn_relu(c1, b2 // 2), conv_bn_relu(b2 // 2, b2, 3))
        self.b3 = nn.Sequential(conv_bn_relu(c1, b3 // 2), conv_bn_relu(b3 // 2, b3, 3), conv_bn_relu(b3, b3, 3))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), conv_bn_relu(c1, b4))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 bottleneck, BN-ReLU-3x3, over the Concat of every earlier feature map."""

    def __init__(self, c1, growth):
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm2d(c1), nn.ReLU(), nn.Conv2d(c1, 2 * growth, 1, bias=False),
                                  nn.BatchNorm2d(2 * growth), nn.ReLU(), nn.Conv2d(2 * growth, growth, 3, 1, 1, bias=False))

    def forward(self, features):
        return self.body(torch.cat(features, 1))


class DenseBlock(nn.Module):
    def __init__(self, c1, growth, n):
        super().__init__()
        self.layers = nn.ModuleList(DenseLayer(c1 + i * growth, growth) for i in range(n))

    def forward(self, x):
        features = [x]
        for layer in self.layers:
            features.append(layer(features))
        return torch.cat(features, 1)


class InceptionDenseStyle(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.net = nn.Sequential(
            conv_bn_relu(3, 16, 7, 2), nn.MaxPool2d(3, 2, ceil_mode=True),
            Inception(16, 8, 12, 6, 6), Inception(32, 8, 16, 8, 8),
            DenseBlock(40, 8, 3),
            nn.BatchNorm2d(64), nn.ReLU(), nn.Conv2d(64, 32, 1, bias=False), nn.AvgPool2d(2, 2),
            DenseBlock(32, 8, 2),
            nn.BatchNorm2d(48), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(48, classes))

    def forward(self, x):
        return self.net(x)


# --- OCR-style grey-input recogniser (a CRNN, the shape of ddddocr's and most captcha readers) -----
class GreyOcrStyle(nn.Module):
    """[N, 1, H, W] -> per-column class log-probabilities [N, W / 4, classes]: conv-BN-ReLU blocks, 2x2 pools,
    then a pool of the height alone (stride (2, 1)), the height averaged away and a Linear per column."""

    def __init__(self, classes=12):
        super().__init__()
        self.features = nn.Sequential(
            conv_bn_relu(1, 8, 3), nn.MaxPool2d(2),
            conv_bn_relu(8, 16, 3), nn.MaxPool2d(2),
            conv_bn_relu(16, 24, 3), nn.MaxPool2d((2, 1), (2, 1)),
            conv_bn_relu(24, 32, 3))
        self.head = nn.Linear(32, classes)

    def forward(self, x):
        f = self.features(x).mean(2)                          # [N, C, W / 4]
        return self.head(f.permute(0, 2, 1)).log_softmax(-1)


# --- exporting -------------------------------------------------------------------------------------
def _seeded(cls, seed):
    torch.manual_seed(seed)
    return randomize_bn(cls(), seed).eval()


def _opset(path) -> int:
    return next(i.version for i in onnx.load(str(path), load_external_data=False).opset_import
                if i.domain in ("", "ai.onnx"))


def export_legacy(net, path, opset, channels=3):
    """The TorchScript exporter with dynamic N, H, W, as `yolo export format=onnx dynamic=True` runs it."""
    torch.onnx.export(net, (torch.rand(1, channels, 64, 64),), str(path), dynamo=False, opset_version=opset,
                      input_names=["images"], output_names=["output0"],
                      dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch"}})


def export_dynamo(net, path, multiple=16, channels=3):
    """The torch.export-based exporter (onnxscript) with dynamic N, H, W; H and W are declared multiples
    of `multiple` so a neck that concatenates an upsampled map with a finer one needs no guard."""
    from torch.export import Dim
    dims = {0: Dim("batch", min=1, max=64),
            2: multiple * Dim("h", min=2, max=256), 3: multiple * Dim("w", min=2, max=256)}
    with contextlib.redirect_stdout(io.StringIO()):  # its progress lines
        torch.onnx.export(net, (torch.rand(2, channels, 64, 64),), str(path), dynamo=True, input_names=["image"],
                          dynamic_shapes={"x": dims}, verbose=False)


def _torch_model(name, cls, seed, exporter, directory, opset=None, channels=3):
    path = Path(directory) / f"{name}.onnx"
    net = _seeded(cls, seed)
    if exporter == LEGACY:
        export_legacy(net, path, opset, channels)
    else:
        export_dynamo(net, path, channels=channels)
    return CorpusModel(name, path, exporter, _opset(path), channels=channels)


# --- Paddle2ONNX-style graph, hand-built ---------------------------------------------------------
class PaddleGraph:
    """Writes nodes the way Paddle2ONNX does: tensors named after Paddle variables (`conv2d_3.tmp_0`),
    every weight and every scalar operand a separate `Constant` node (`p2o.Constant.17`), conv biases
    added after a Reshape to [1, C, 1, 1], hard_swish as x * Clip(x + 3, 0, 6) / 6."""

    def __init__(self, seed=0):
        self.nodes, self.rng, self.count = [], np.random.default_rng(seed), {}

    def _index(self, kind) -> int:
        """0, 1, 2, … per kind, as Paddle numbers its variables."""
        self.count[kind] = self.count.get(kind, -1) + 1
        return self.count[kind]

    def _name(self, op):
        return f"{op}_{self._index(op)}"

    def node(self, op, inputs, out=None, **attrs):
        out = out or f"{self._name(op.lower())}.tmp_0"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"p2o.{op}.{len(self.nodes)}", **attrs))
        return out

    def const(self, value, dtype=np.float32, name=None):
        value = np.asarray(value, dtype)
        name = name or f"p2o.Constant.{self._index('Constant')}"
        self.nodes.append(helper.make_node("Constant", [], [name], name=f"p2o.Constant.{len(self.nodes)}",
                                           value=numpy_helper.from_array(value, name)))
        return name

    def weight(self, layer, suffix, shape, scale=None):
        scale = scale if scale is not None else 1 / np.sqrt(np.prod(shape[1:]) if len(shape) > 1 else 1)
        return self.const(self.rng.standard_normal(shape) * scale, name=f"{layer}.{suffix}")

    def conv(self, x, c1, c2, k=3, s=1, g=1, bias=False, pad=None):
        layer = self._name("conv2d")
        w = self.weight(layer, "w_0", (c2, c1 // g, k, k))
        p = k // 2 if pad is None else pad
        y = self.node("Conv", [x, w], f"{layer}.tmp_0", dilations=[1, 1], group=g, kernel_shape=[k, k],
                      pads=[p] * 4, strides=[s, s])
        if bias:
            b = self.node("Reshape", [self.weight(layer, "b_0", (c2,), 0.1), self.const([1, c2, 1, 1], np.int64)])
            y = self.node("Add", [y, b], f"{layer}.tmp_1")
        return y

    def bn(self, x, c):
        layer = self._name("batch_norm")
        r = self.rng
        params = [self.const(r.random(c) + 0.5, name=f"{layer}.w_0"), self.const(r.standard_normal(c) * 0.1, name=f"{layer}.b_0"),
                  self.const(r.standard_normal(c) * 0.1, name=f"{layer}.w_1"), self.const(r.random(c) + 0.5, name=f"{layer}.w_2")]
        return self.node("BatchNormalization", [x, *params], f"{layer}.tmp_2", epsilon=1e-5, momentum=0.9)

    def relu6(self, x):
        return self.node("Clip", [x, self.const(0.0), self.const(6.0)])

    def hard_swish(self, x):
        clipped = self.node("Clip", [self.node("Add", [x, self.const(3.0)]), self.const(0.0), self.const(6.0)])
        return self.node("Div", [self.node("Mul", [x, clipped]), self.const(6.0)])

    def conv_bn(self, x, c1, c2, k=3, s=1, g=1, act=None):
        y = self.bn(self.conv(x, c1, c2, k, s, g), c2)
        return act(y) if act else y

    def se(self, x, c):
        """PP-LCNet's squeeze-excitation: pool, 1x1 conv + bias, ReLU, 1x1 conv + bias, hardsigmoid gate."""
        s = self.node("GlobalAveragePool", [x])
        s = self.node("Relu", [self.conv(s, c, c // 4, 1, bias=True)])
        gate = self.node("HardSigmoid", [self.conv(s, c // 4, c, 1, bias=True)], alpha=0.1666667, beta=0.5)
        return self.node("Mul", [x, gate])

    def conv_transpose(self, x, c1, c2, k, s, p):
        layer = self._name("conv2d_transpose")
        w = self.weight(layer, "w_0", (c1, c2, k, k), 1 / np.sqrt(c1 * k * k / s / s))
        return self.node("ConvTranspose", [x, w], f"{layer}.tmp_0", dilations=[1, 1], group=1, kernel_shape=[k, k],
                         pads=[p] * 4, strides=[s, s], output_padding=[0, 0])

    def scale(self, x, scale, bias):
        """paddle.scale: x * scale + bias, each operand its own Constant."""
        return self.node("Add", [self.node("Mul", [x, self.const(scale)]), self.const(bias)])


def paddle_style(directory, seed=3) -> CorpusModel:
    """A small PP-LCNet-like encoder with a ConvTranspose decoder and a segmentation head, at opset 11."""
    p, x = PaddleGraph(seed), "x"
    y = p.scale(x, 2.0, -1.0)  # normalisation to [-1, 1], as exported PaddleSeg models start
    y = p.node("Pad", [y, p.const([0, 0, 0, 0, 0, 0, 1, 1], np.int64), p.const(0.0)], mode="constant")
    y = p.conv_bn(y, 3, 8, 3, 2, act=p.hard_swish)
    y = p.bn(p.conv(y, 8, 8, 3, 1, 8, pad=0), 8)  # after the asymmetric Pad: "SAME" padding, no conv pads
    s4 = p.conv_bn(p.relu6(y), 8, 16, 1)
    s4 = p.conv_bn(p.conv_bn(s4, 16, 16, 3, 2, 16, p.hard_swish), 16, 24, 1, act=p.hard_swish)
    y = p.conv_bn(s4, 24, 24, 3, 2, 24, p.hard_swish)
    y = p.conv_bn(p.se(y, 24), 24, 32, 1, act=p.hard_swish)
    y = p.conv_bn(y, 32, 32, 5, 1, 32, p.relu6)
    s8 = p.conv_bn(p.se(y, 32), 32, 32, 1, act=p.hard_swish)
    y = p.conv_bn(s8, 32, 32, 3, 2, 32, p.hard_swish)
    y = p.conv_bn(y, 32, 48, 1, act=p.hard_swish)
    # decoder: ConvTranspose back to stride 8, Concat, nearest Resize by Constant scales to stride 4
    y = p.node("Relu", [p.bn(p.conv_transpose(y, 48, 24, 4, 2, 1), 24)])
    y = p.node("Concat", [y, s8], axis=1)
    y = p.conv_bn(y, 56, 24, 1, act=p.relu6)
    y = p.node("Resize", [y, p.const([], np.float32), p.const([1.0, 1.0, 2.0, 2.0])],
               coordinate_transformation_mode="asymmetric", mode="nearest", nearest_mode="floor")
    y = p.node("Concat", [y, s4], axis=1)
    y = p.conv_bn(y, 48, 16, 3, act=p.relu6)
    y = p.conv(p.conv_transpose(y, 16, 8, 2, 2, 0), 8, 4, 1, bias=True)
    # head: flatten the pixels through a Reshape by a Constant shape, softmax over classes, back
    flat = p.node("Reshape", [y, p.const([0, 4, -1], np.int64)])
    probs = p.node("Transpose", [p.node("Softmax", [p.node("Transpose", [flat], perm=[0, 2, 1])], axis=2)], perm=[0, 2, 1])
    dims = p.node("Shape", [y])
    out = p.node("Reshape", [probs, dims], "save_infer_model/scale_0.tmp_0")

    dyn = ["p2o.DynamicDimension.0", 3, "p2o.DynamicDimension.1", "p2o.DynamicDimension.2"]
    graph = helper.make_graph(p.nodes, "paddle-infer", [helper.make_tensor_value_info(x, TensorProto.FLOAT, dyn)],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, [dyn[0], 4, dyn[2], dyn[3]])])
    model = helper.make_model(graph, producer_name="PaddlePaddle", producer_version="2.6",
                              opset_imports=[helper.make_opsetid("", 11)], ir_version=6)
    onnx.checker.check_model(model)
    path = Path(directory) / "paddle_style.onnx"
    onnx.save(model, str(path))
    return CorpusModel("paddle_style", path, PADDLE, 11)


# name -> builder(directory) -> CorpusModel
BUILDERS = {
    "yolo_legacy": lambda d: _torch_model("yolo_legacy", YoloStyle, 0, LEGACY, d, opset=17),
    "yolo_dynamo": lambda d: _torch_model("yolo_dynamo", YoloStyle, 0, DYNAMO, d),
    "mobilenetv3_legacy": lambda d: _torch_model("mobilenetv3_legacy", MobileNetV3Style, 1, LEGACY, d, opset=13),
    "mobilenetv3_dynamo": lambda d: _torch_model("mobilenetv3_dynamo", MobileNetV3Style, 1, DYNAMO, d),
    "inception_dense_dynamo": lambda d: _torch_model("inception_dense_dynamo", InceptionDenseStyle, 2, DYNAMO, d),
    "paddle_style": paddle_style,
    "grey_ocr_legacy": lambda d: _torch_model("grey_ocr_legacy", GreyOcrStyle, 4, LEGACY, d, opset=12, channels=1),
    "grey_ocr_dynamo": lambda d: _torch_model("grey_ocr_dynamo", GreyOcrStyle, 4, DYNAMO, d, channels=1),
}


def build_corpus(directory, names=None) -> dict[str, CorpusModel]:
    """Export the corpus models (all, or `names`) into `directory`."""
    return {n: BUILDERS[n](directory) for n in (names or BUILDERS)}


def main():
    """Build the corpus in a temporary directory and print its table of parity errors."""
    from oracle import all_tensors_match
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name, m in build_corpus(d).items():
            proto = m.proto
            ops = sorted({n.op_type for n in proto.graph.node})
            errors = []
            for x in m.inputs():
                try:
                    errs = all_tensors_match(m.path, x, float_only=False)
                    errors.append(f"{max(errs.values()):.1e}")
                except Exception as e:  # a model that does not load or match yet is a row, not a crash
                    errors.append(f"FAIL ({type(e).__name__}: {str(e).splitlines()[0][:60]})")
            rows.append((name, m.exporter, m.opset, len(proto.graph.node), errors, ops))
    sizes = " | ".join(f"worst @ {n}xCx{h}x{w}" for n, h, w in SIZES)
    print(f"| model | exporter | opset | nodes | {sizes} | op types |")
    print("|---" * (5 + len(SIZES)) + "|")
    for name, exporter, opset, count, errors, ops in rows:
        print(f"| {name} | {exporter} | {opset} | {count} | {' | '.join(errors)} | {', '.join(ops)} |")
    print("\nworst error: max |ours - ONNX Runtime| / max(|ONNX Runtime|, 1) over every tensor that depends on the image")


if __name__ == "__main__":
    main()
