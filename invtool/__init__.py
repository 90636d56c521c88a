"""invtool: look inside convolutional networks by optimising images against their features.

Example:
    >>> import invtool
    >>> model = invtool.load_model("models/vgg16.onnx")
    >>> feats = model.features(torch.rand(1, 3, 128, 128), ["conv1_1", "pool2"])
"""
from .errors import InvtoolError
from .model import FeatureModel, load_model

__all__ = ["FeatureModel", "InvtoolError", "load_model"]
