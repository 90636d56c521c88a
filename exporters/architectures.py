"""VGG16 and ResNet18 with torchvision-compatible state-dict keys, and every layer as a named tap.

`model.taps(x)` returns the canonical layers in graph order (the names the ONNX export uses as output
names); `ALIASES[arch]` maps further names (torchvision module names, Keras and Caffe layer names) to
those canonical names. Defined here, not imported from torchvision, which has no CPU build here.

Example:
    >>> net = VGG16(classifier=False).eval()
    >>> feats = net.taps(torch.rand(1, 3, 64, 64))
    >>> list(feats)[:3], feats["pool5"].shape
    (['conv1_1', 'conv1_2', 'pool1'], torch.Size([1, 512, 2, 2]))
"""
import torch
import torch.nn.functional as F
from torch import nn

# (block, convs per block, channels)
_VGG16_BLOCKS = [(1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512)]
VGG16_FC_SIZE = 224  # the input size at which pool5 is 7x7, as the classifier needs


class VGG16(nn.Module):
    """torchvision's VGG16 (keys `features.N`, `classifier.N`); classifier=False gives the conv part only.

    The classifier needs a 224x224 input (pool5 of 7x7); torchvision's AdaptiveAvgPool2d((7, 7)) is the
    identity there and is left out so the conv part exports with any H x W. `hidden` is the width of
    fc6 and fc7 (4096 in VGG16; fine-tuned heads and small test models use less).
    """

    def __init__(self, classifier: bool = True, num_classes: int = 1000, hidden: int = 4096):
        super().__init__()
        layers, c_in = [], 3
        for _, n, c in _VGG16_BLOCKS:
            for _ in range(n):
                layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU()]
                c_in = c
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, hidden), nn.ReLU(), nn.Dropout(),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(),
            nn.Linear(hidden, num_classes)) if classifier else None

    def taps(self, x) -> dict[str, torch.Tensor]:
        out, names = {}, _vgg16_feature_names()
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in names:
                out[names[i]] = x
        if self.classifier is not None:
            x = torch.flatten(x, 1)
            c = self.classifier
            out["fc6"] = x = c[1](c[0](x))
            out["fc7"] = x = c[4](c[3](x))
            out["fc8"] = c[6](x)
        return out

    def forward(self, x):
        return list(self.taps(x).values())[-1]


def _vgg16_feature_names() -> dict[int, str]:
    """Index in `features` -> canonical name of that module's output (ReLUs and pools)."""
    names, i = {}, 0
    for b, n, _ in _VGG16_BLOCKS:
        for k in range(1, n + 1):
            names[i + 1] = f"conv{b}_{k}"
            i += 2
        names[i] = f"pool{b}"
        i += 1
    return names


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock; `mid` is the activation between the two convolutions."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                           if stride != 1 or c_in != c_out else None)

    def forward(self, x):
        mid = F.relu(self.bn1(self.conv1(x)))
        skip = x if self.downsample is None else self.downsample(x)
        return mid, F.relu(self.bn2(self.conv2(mid)) + skip)


class ResNet18(nn.Module):
    """torchvision's ResNet18 (keys `conv1`, `bn1`, `layer1.0.conv1`, …, `fc`)."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = [64, 128, 256, 512]
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            nn.Sequential(BasicBlock(c_in, c, 1 if i == 0 else 2), BasicBlock(c, c))
            for i, (c_in, c) in enumerate(zip([64] + widths[:-1], widths)))
        self.fc = nn.Linear(512, num_classes)

    def taps(self, x) -> dict[str, torch.Tensor]:
        out = {}
        out["conv1"] = x = F.relu(self.bn1(self.conv1(x)))
        out["pool1"] = x = self.maxpool(x)
        for stage, layer in enumerate([self.layer1, self.layer2, self.layer3, self.layer4], start=2):
            for letter, block in zip("ab", layer):
                out[f"res{stage}{letter}_mid"], x = block(x)
                out[f"res{stage}{letter}"] = x
        out["pool5"] = x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        out["fc"] = self.fc(x)
        return out

    def forward(self, x):
        return self.taps(x)["fc"]


def _vgg16_aliases() -> dict[str, str]:
    """Other names for VGG16's canonical layers: torchvision module names, Keras and Caffe names."""
    aliases = {f"features.{i}": name for i, name in _vgg16_feature_names().items()}
    for b, n, _ in _VGG16_BLOCKS:
        for k in range(1, n + 1):
            aliases[f"block{b}_conv{k}"] = f"conv{b}_{k}"   # Keras (conv + ReLU in one layer)
        aliases[f"block{b}_pool"] = f"pool{b}"
    aliases.update({"classifier.1": "fc6", "classifier.4": "fc7", "classifier.6": "fc8",
                    "fc1": "fc6", "fc2": "fc7", "predictions": "fc8"})  # Caffe's own names are canonical
    return aliases


def _resnet18_aliases() -> dict[str, str]:
    aliases = {"relu": "conv1", "maxpool": "pool1", "avgpool": "pool5"}
    for stage in range(2, 6):
        aliases[f"res{stage}"] = f"res{stage}b"                      # stage output
        aliases[f"layer{stage - 1}"] = f"res{stage}b"
        for i, letter in enumerate("ab"):
            aliases[f"layer{stage - 1}.{i}"] = f"res{stage}{letter}"
            aliases[f"layer{stage - 1}.{i}.relu"] = f"res{stage}{letter}_mid"
    return aliases


ALIASES = {"vgg16": _vgg16_aliases(), "resnet18": _resnet18_aliases()}
ARCHITECTURES = {"vgg16": VGG16, "resnet18": ResNet18}
