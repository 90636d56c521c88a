"""invtool: look inside convolutional networks by optimising images against their features.

Example:
    >>> import invtool
    >>> model = invtool.load_model("models/vgg16.onnx")
    >>> feats = model.features(torch.rand(1, 3, 128, 128), ["conv1_1", "pool2"])
"""
from .errors import InvtoolError

__all__ = ["FeatureModel", "InvtoolError", "invert", "load_model", "synthesize_texture", "transfer_style", "visualize"]


def __getattr__(name):
    """Import the model (and the ONNX rebuilder) on first use, so `exporters` can use
    `invtool.errors` and `invtool.preprocess` without loading the rebuilder."""
    if name in ("FeatureModel", "load_model"):
        from . import model
        return getattr(model, name)
    if name == "invert":   # the module is `inversion`: a submodule named `invert` would shadow this
        from .inversion import invert
        return invert
    if name == "synthesize_texture":
        from .texture import synthesize_texture
        return synthesize_texture
    if name == "transfer_style":
        from .style import transfer_style
        return transfer_style
    if name == "visualize":   # the module is `visualization`: a submodule named `visualize` would shadow this
        from .visualization import visualize
        return visualize
    raise AttributeError(f"module 'invtool' has no attribute {name!r}")
