"""TF1 VGG16 weights as a pickled `.npy` dict (`conv1_1: [W, b]` … `fc8`), as tensorflow-vgg's vgg16.npy.

Kernels are HWIO; fc6 follows a reshape of the NHWC pool5, so its rows run in (H, W, C) order.
tensorflow-vgg feeds BGR images in 0-255 minus the ImageNet mean (the `caffe` preset). Reading the file
unpickles it (`allow_pickle`): only read .npy files from sources you trust.
"""
import pickle

import numpy as np

from invtool.errors import InvtoolError

from . import Weights, conv_from_hwio, dense_from_tf, vgg16_param_layers


def read(path, arch: str | None = None) -> Weights:
    if arch not in (None, "vgg16"):
        raise InvtoolError(f"TF1 .npy weights are read as VGG16, not {arch!r}; drop --arch or use --arch vgg16")
    try:
        layers = np.load(path, allow_pickle=True, encoding="latin1").item()
    except (OSError, ValueError, EOFError, pickle.UnpicklingError) as e:
        raise InvtoolError(f"cannot read {path} as a .npy dict ({type(e).__name__}); is the file complete?") from None
    if not isinstance(layers, dict) or "conv1_1" not in layers:
        raise InvtoolError(f"{path} is not a TF1 VGG16 dict (no 'conv1_1': [W, b]); give tensorflow-vgg's vgg16.npy layout")
    state, origin, modules = {}, {}, vgg16_param_layers()
    for name, params in layers.items():
        if name not in modules:
            raise InvtoolError(f"unexpected layer {name!r} in {path}; expected {', '.join(modules)}")
        kernel, bias = (np.asarray(p, dtype=np.float32) for p in params)
        kernel = conv_from_hwio(kernel) if name.startswith("conv") else \
            dense_from_tf(kernel, (512, 7, 7) if name == "fc6" else None)
        for suffix, value in (("weight", kernel), ("bias", bias)):
            state[f"{modules[name]}.{suffix}"] = value
            origin[f"{modules[name]}.{suffix}"] = f"{name}[{0 if suffix == 'weight' else 1}]"
    return Weights("vgg16", state, "caffe", "tf1", origin)
