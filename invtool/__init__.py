"""invtool: look inside convolutional networks by optimising images against their features.

Example:
    >>> import invtool
    >>> model = invtool.load_model("models/vgg16.onnx")
    >>> feats = model.features(torch.rand(1, 3, 128, 128), ["conv1_1", "pool2"])
    >>> run = invtool.synthesize_texture("examples/textures/brick.png", steps=100)
"""
import importlib

from .errors import InvtoolError

# public name -> the module defining it, imported on first use so that `exporters` can use
# invtool.errors and invtool.preprocess without loading the rebuilder. The command modules are named
# by the noun (inversion, visualization) so that no submodule shadows the function of the same name.
_LAZY = {"FeatureModel": "model", "load_model": "model", "invert": "inversion",
         "synthesize_texture": "texture", "transfer_style": "style", "visualize": "visualization"}

__all__ = ["InvtoolError", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'invtool' has no attribute {name!r}")
