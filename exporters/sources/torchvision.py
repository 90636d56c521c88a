"""torchvision state dicts (.pth/.pt via `torch.load`, or .safetensors), and the published ImageNet weights.

The keys are already the architectures' keys; the architecture is told by them (`features.0.weight`
is VGG16, `layer1.0.conv1.weight` ResNet18) and the preprocessing is torchvision's ImageNet mean/std.
"""
import hashlib
import os
import sys
import urllib.request
from pathlib import Path

import numpy as np
import torch

from invtool.errors import InvtoolError

from . import Weights, file_sha256

# torchvision's published ImageNet weights; the hex in the file name starts their sha256
URLS = {"vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
        "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth"}


def read(path, arch: str | None = None) -> Weights:
    state = _load(Path(path))
    if not state or not all(isinstance(v, (torch.Tensor, np.ndarray)) for v in state.values()):
        raise InvtoolError(f"{path} is not a state dict of tensors; save one with torch.save(model.state_dict(), …)")
    state = {k.removeprefix("module."): (v.float().numpy() if isinstance(v, torch.Tensor) else v)
             for k, v in state.items() if not k.endswith("num_batches_tracked")}
    guessed = "resnet18" if "layer1.0.conv1.weight" in state else "vgg16" if "features.0.weight" in state else None
    if arch is None and guessed is None:
        raise InvtoolError(f"{path}: cannot tell the architecture (no features.0.weight or layer1.0.conv1.weight); "
                           f"pass --arch vgg16 or --arch resnet18")
    return Weights(arch or guessed, state, "imagenet", "torchvision")


def _load(path: Path) -> dict:
    try:
        if path.suffix == ".safetensors":
            from safetensors.numpy import load_file
            return load_file(path)
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch and safetensors raise many types for a bad file
        raise InvtoolError(f"cannot read {path} as a PyTorch state dict ({type(e).__name__}: "
                           f"{str(e).split('.')[0][:120]}); is the file complete?") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):  # a training checkpoint
        state = state["state_dict"]
    return state if isinstance(state, dict) else {}


def download(arch: str, cache: Path) -> Path:
    """The published torchvision ImageNet weights of `arch`, fetched into `cache` once (sha256 checked)."""
    url = URLS[arch]
    dest = Path(cache) / url.rsplit("/", 1)[1]
    prefix = dest.stem.rsplit("-", 1)[1]
    if dest.is_file() and file_sha256(dest).startswith(prefix):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp, digest = dest.with_suffix(".part"), hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(tmp, "wb") as f:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                f.write(chunk)
                digest.update(chunk)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise InvtoolError(f"cannot download {url} ({getattr(e, 'reason', e)}); offline? download it elsewhere "
                           f"and give the file instead of --download") from None
    if not digest.hexdigest().startswith(prefix):
        tmp.unlink()
        raise InvtoolError(f"{url} downloaded with a wrong sha256; try again")
    os.replace(tmp, dest)
    print(f"downloaded {url} -> {dest}", file=sys.stderr)
    return dest
