"""Input preprocessing per framework, in one table.

Every invtool model takes RGB images in [0, 1], NCHW. A network trained on another convention gets it
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
    """x_model = (flip(x) * scale - mean) / std, with mean and std in the model's channel order."""

    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    scale: float = 1.0
    bgr: bool = False

    def is_identity(self) -> bool:
        return self == Preprocess()

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
    """A preset name, a Preprocess, or a dict of Preprocess fields -> Preprocess."""
    if isinstance(spec, Preprocess):
        return spec
    if isinstance(spec, dict):
        try:
            return Preprocess(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()})
        except TypeError as e:
            raise InvtoolError(f"bad preprocessing {spec!r}: {e}; fields are mean, std, scale, bgr") from None
    if isinstance(spec, str) and spec in PRESETS:
        return PRESETS[spec]
    raise InvtoolError(f"unknown preprocessing {spec!r}{close_matches(str(spec), PRESETS)}; "
                       f"use one of {', '.join(PRESETS)} or give mean/std/scale/bgr")


class _PreprocessModule(nn.Module):
    def __init__(self, p: Preprocess):
        super().__init__()
        self.bgr = p.bgr
        scale = torch.tensor(p.scale, dtype=torch.float32)
        std = torch.tensor(p.std, dtype=torch.float32)
        # one multiply-add per channel: (x * scale - mean) / std
        self.register_buffer("a", (scale / std).view(1, 3, 1, 1))
        self.register_buffer("b", (-torch.tensor(p.mean, dtype=torch.float32) / std).view(1, 3, 1, 1))

    def forward(self, x):
        if self.bgr:
            x = x.flip(1)
        return x * self.a + self.b
