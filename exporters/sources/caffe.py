"""Caffe `.caffemodel` weights (VGG_ILSVRC_16_layers, Kaiming-style ResNet-18 ports), read without Caffe.

A .caffemodel is a serialized `NetParameter` protobuf. A dozen lines of wire-format reading get at
the few fields needed (the field numbers are caffe.proto's) and let the weight blobs be viewed as
numpy arrays without copying them through Python floats:

    NetParameter     layers = 2 (V1LayerParameter), layer = 100 (LayerParameter)
    LayerParameter   name = 1, type = 2 (string), blobs = 7
    V1LayerParameter name = 4, type = 5 (enum), blobs = 6
    BlobProto        num, channels, height, width = 1..4 (legacy 4-d shape), data = 5 (float),
                     shape = 7 (BlobShape: dim = 1), double_data = 8

Caffe networks take BGR images in 0-255 minus the ImageNet mean (the `caffe` preset); blobs are
already NCHW / [out, in], so only legacy 4-d shapes of fc weights and biases need squeezing.
"""
import re

import numpy as np

from invtool.errors import InvtoolError

from . import Weights, vgg16_param_layers

_WIRE_SIZE = {1: 8, 5: 4}  # fixed-width wire types: 64 and 32 bit
_RESNET = re.compile(r"^(res|bn|scale)(\d)([ab])_branch(1|2a|2b)$")
RESNET_NOTES = ["Caffe ResNet pools conv1 with a 3x3/2 window from the corner (pad 0, ceil) where torchvision "
                "pads by 1; the export keeps torchvision's pool, one pixel off the Caffe alignment."]


def read(path, arch: str | None = None) -> Weights:
    data = memoryview(open(path, "rb").read())
    try:
        net = _fields(data)
        layers = [_layer(m, v1=False) for m in net.get(100, [])] + [_layer(m, v1=True) for m in net.get(2, [])]
    except (IndexError, ValueError) as e:
        raise InvtoolError(f"cannot parse {path} as a Caffe NetParameter ({e}); is the .caffemodel complete?") from None
    blobs = {name: arrays for name, arrays in layers if arrays}
    if not blobs:
        raise InvtoolError(f"{path} holds no layers with weights; is it a .caffemodel (not a .prototxt)?")
    guessed = "resnet18" if "res2a_branch2a" in blobs else "vgg16" if "conv1_1" in blobs else None
    arch = arch or guessed
    if arch == "vgg16":
        return _vgg16(blobs)
    if arch == "resnet18":
        return _resnet18(blobs)
    raise InvtoolError(f"{path}: cannot tell the architecture (no layer conv1_1 or res2a_branch2a; it has "
                       f"{', '.join(list(blobs)[:5])}…); pass --arch vgg16 or --arch resnet18")


def _vgg16(blobs) -> Weights:
    state, origin, modules = {}, {}, vgg16_param_layers()
    for name, arrays in blobs.items():
        if name not in modules:
            raise InvtoolError(f"unexpected Caffe layer {name!r} for VGG16; expected {', '.join(modules)}")
        for i, (suffix, value) in enumerate(zip(("weight", "bias"), arrays)):
            key = f"{modules[name]}.{suffix}"
            state[key], origin[key] = _squeeze(value, fc=name.startswith("fc"), bias=i == 1), f"{name} blob {i}"
    return Weights("vgg16", state, "caffe", "caffe", origin)


def _resnet18(blobs) -> Weights:
    state, origin, aliases = {}, {}, {"fc1000": "fc"}
    for name, arrays in blobs.items():
        module, kind = _resnet_module(name)
        if module is None:
            raise InvtoolError(f"unexpected Caffe layer {name!r} for ResNet-18; expected conv1, bn_conv1, "
                               f"scale_conv1, res2a_branch2a … res5b_branch2b (with bn/scale), fc1000")
        if kind == "conv":
            params = {"weight": arrays[0], **({"bias": arrays[1]} if len(arrays) > 1 else {})}
        elif kind == "bn":   # mean and variance are stored times a moving-average factor
            factor = float(arrays[2].ravel()[0]) if len(arrays) > 2 else 1.0
            factor = 1.0 / factor if factor else 0.0
            params = {"running_mean": arrays[0] * factor, "running_var": arrays[1] * factor}
        elif kind == "scale":
            params = {"weight": arrays[0], **({"bias": arrays[1]} if len(arrays) > 1 else {})}
        else:
            params = {"weight": _squeeze(arrays[0], fc=True, bias=False), "bias": arrays[1]}
        for suffix, value in params.items():
            key = f"{module}.{suffix}"
            state[key] = value if suffix == "weight" and kind in ("conv", "fc") else value.ravel()
            origin[key] = name
        if (m := _RESNET.match(name)) and m[1] == "res" and m[4] == "2a":
            aliases[name] = f"res{m[2]}{m[3]}_mid"  # Caffe's in-place BN/ReLU leave the activation in this blob
    return Weights("resnet18", state, "caffe", "caffe", origin, aliases, RESNET_NOTES)


def _resnet_module(name: str) -> tuple[str | None, str]:
    """A Kaiming-style Caffe layer name -> (torchvision module, conv|bn|scale|fc)."""
    if name in ("conv1", "bn_conv1", "scale_conv1"):
        kind = name.split("_")[0] if "_" in name else "conv"
        return ("conv1" if kind == "conv" else "bn1"), kind
    if name.startswith("fc"):
        return "fc", "fc"
    m = _RESNET.match(name)
    if not m:
        return None, ""
    kind = {"res": "conv", "bn": "bn", "scale": "scale"}[m[1]]
    block = f"layer{int(m[2]) - 1}.{'ab'.index(m[3])}"
    if m[4] == "1":
        return f"{block}.downsample.{0 if kind == 'conv' else 1}", kind
    return f"{block}.{'conv' if kind == 'conv' else 'bn'}{1 if m[4] == '2a' else 2}", kind


def _squeeze(value: np.ndarray, fc: bool, bias: bool) -> np.ndarray:
    """Legacy 4-d blob shapes: an fc weight (1, 1, out, in) -> (out, in), a bias (1, 1, 1, n) -> (n,)."""
    if bias:
        return value.ravel()
    if fc and value.ndim == 4 and value.shape[:2] == (1, 1):
        return value.reshape(value.shape[2:])
    return value


def _layer(message: memoryview, v1: bool) -> tuple[str, list[np.ndarray]]:
    fields = _fields(message)
    name = bytes(fields.get(4 if v1 else 1, [b""])[0]).decode("utf-8", "replace")
    return name, [_blob(b) for b in fields.get(6 if v1 else 7, [])]


def _blob(message: memoryview) -> np.ndarray:
    fields = _fields(message)
    data = np.concatenate([_floats(v, "<f4") for v in fields.get(5, [])] +
                          [_floats(v, "<f8").astype(np.float32) for v in fields.get(8, [])] or [np.zeros(0, np.float32)])
    if 7 in fields:
        shape = [d for m in fields[7] for v in _fields(m).get(1, []) for d in _varints(v)]
    else:
        shape = [int(fields.get(k, [1])[0]) for k in (1, 2, 3, 4)]
    if int(np.prod(shape)) != data.size:
        raise ValueError(f"a blob of shape {shape} holds {data.size} values")
    return data.reshape(shape)


def _floats(value, dtype) -> np.ndarray:
    """A packed run (bytes) or one unpacked value (also bytes here) of little-endian floats."""
    return np.frombuffer(value, dtype=dtype)


def _varints(value) -> list[int]:
    """A packed run of varints (bytes) or a single varint (int)."""
    if isinstance(value, int):
        return [value]
    out, i = [], 0
    while i < len(value):
        v, i = _varint(value, i)
        out.append(v)
    return out


def _fields(buf: memoryview) -> dict[int, list]:
    """The fields of one protobuf message: number -> values (ints, or memoryviews of bytes)."""
    fields, i, end = {}, 0, len(buf)
    while i < end:
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            size, i = _varint(buf, i)
            value, i = buf[i:i + size], i + size
        elif wire in _WIRE_SIZE:
            value, i = buf[i:i + _WIRE_SIZE[wire]], i + _WIRE_SIZE[wire]
        else:
            raise ValueError(f"wire type {wire} at byte {i}")
        if i > end:
            raise ValueError("the data ends inside a field")
        fields.setdefault(number, []).append(value)
    return fields


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if byte < 0x80:
            return value, i
