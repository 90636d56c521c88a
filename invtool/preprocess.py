"""Input preprocessing per framework, in one table.

Every invtool model takes images in [0, 1], NCHW, RGB or grey. A network trained on another convention gets it
as a small module in front: the exporters bake that module into the ONNX graph, and `load_model`
prepends it for foreign ONNX files that do not bake it in.

Example:
    >>> pre = PRESETS["caffe"].module()
    >>> pre(torch.zeros(1, 3, 4, 4))[0, :, 0, 0]   # BGR, 0-255, minus the mean
    tensor([-103.9390, -116.7790, -123.6800])
"""
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .errors import InvtoolError, close_matches


@dataclass(frozen=True)
class Preprocess:
    """x_model = (flip(x) * scale - mean) / std, with mean and std in the model's channel order.

    mean and std hold one value per channel (3 for RGB), or one value for every channel (a grey model's,
    or a uniform one such as `tf`'s).
    """

    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    scale: float = 1.0
    bgr: bool = False

    def is_identity(self) -> bool:
        return set(self.mean) <= {0.0} and set(self.std) <= {1.0} and self.scale == 1.0 and not self.bgr

    def check_channels(self, channels: int) -> None:
        """InvtoolError unless this preprocessing fits images of `channels` channels."""
        if self.bgr and channels != 3:
            raise InvtoolError(f"preprocessing with bgr=1 for a {channels}-channel model: a grey image has no "
                               "channel order; drop bgr")
        for field, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, channels) and len(set(values)) > 1:
                raise InvtoolError(f"preprocessing has {len(values)} {field} values {list(values)} for a "
                                   f"{channels}-channel model; give {'one' if channels == 1 else channels}, "
                                   f"e.g. --preprocess mean=0.5,std=0.5")

    def to_dict(self) -> dict:
        return asdict(self)

    def module(self) -> nn.Module:
        return _PreprocessModule(self)


PRESETS: dict[str, Preprocess] = {
    "imagenet": Preprocess(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),  # torchvision
    "caffe": Preprocess(mean=(103.939, 116.779, 123.68), scale=255.0, bgr=True),    # Caffe, Keras VGG
    "tf": Preprocess(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),                     # [-1, 1]
    "none": Preprocess(),
}


def resolve_preprocess(spec) -> Preprocess:
    """A preset name, a Preprocess, a dict of Preprocess fields, or the same as a string
    (`mean=0.5,std=0.5`, `mean=0.485/0.456/0.406,std=0.229/0.224/0.225,scale=1,bgr=0`) -> Preprocess."""
    if isinstance(spec, Preprocess):
        return spec
    if isinstance(spec, str) and spec not in PRESETS and "=" in spec:
        spec = _parse_fields(spec)
    if isinstance(spec, dict):
        try:
            return Preprocess(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()})
        except TypeError as e:
            raise InvtoolError(f"bad preprocessing {spec!r}: {e}; fields are mean, std, scale, bgr") from None
    if isinstance(spec, str) and spec in PRESETS:
        return PRESETS[spec]
    raise InvtoolError(f"unknown preprocessing {spec!r}{close_matches(str(spec), PRESETS)}; "
                       f"use one of {', '.join(PRESETS)} or give fields: mean=0.5,std=0.5 (per channel: a/b/c)")


def _parse_fields(text: str) -> dict:
    """`mean=0.5,std=0.5,scale=255,bgr=1` -> Preprocess fields; mean and std take `/`-separated lists."""
    fields = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        key = key.strip()
        try:
            if key in ("mean", "std"):
                fields[key] = tuple(float(v) for v in value.split("/"))
            elif key == "scale":
                fields[key] = float(value)
            elif key == "bgr":
                fields[key] = bool(int(value))
            else:
                raise InvtoolError(f"unknown preprocessing field {key!r} in {text!r}; fields are mean, std, scale, bgr")
        except ValueError:
            raise InvtoolError(f"bad preprocessing value {part!r} in {text!r}: give numbers, e.g. mean=0.5,std=0.5 "
                               "(per channel: mean=0.485/0.456/0.406)") from None
    return fields


class _PreprocessModule(nn.Module):
    def __init__(self, p: Preprocess):
        super().__init__()
        self.bgr = p.bgr
        scale = torch.tensor(p.scale, dtype=torch.float32)
        std = torch.tensor(p.std, dtype=torch.float32)
        # one multiply-add per channel: (x * scale - mean) / std
        mean = torch.tensor(p.mean, dtype=torch.float32)
        if len(set(p.mean)) == 1 and len(set(p.std)) == 1:   # uniform: one value serves every channel count
            mean, std = mean[:1], std[:1]
        self.register_buffer("a", (scale / std).view(1, -1, 1, 1))
        self.register_buffer("b", (-mean / std).view(1, -1, 1, 1))

    def forward(self, x):
        if self.bgr:
            x = x.flip(1)
        return x * self.a + self.b
