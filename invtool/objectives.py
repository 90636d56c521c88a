"""Objectives: what the engine minimises, as weighted sums of named terms (lucent style).

An `Objective` wraps `fn(features, image) -> scalar tensor` and the layers `fn` reads from `features`.
Objectives compose with `+`, `-` and `*` / `/` by numbers; the sum keeps every named term, so the engine
asks the model once per step for the union of all layers and logs each term's weighted contribution.

The engine calls an objective at every coarse-to-fine scale, so `features` and `image` may have several
sizes over one run: a term whose target depends on the image size (a feature map to reconstruct) must
adapt to the size it is given (e.g. resize the target features); statistics such as Gram matrices
(normalised per pixel) and sorted activations (resampled to the pixel count) need nothing.
`image` is the image as parameterised, before any transform (jitter, roll) that the model sees.

Example:
    >>> style = Objective(lambda f, x: f["conv1_1"].square().mean(), layers=["conv1_1"], name="energy")
    >>> smooth = Objective(lambda f, x: losses.tv_loss(x), name="tv")
    >>> total = style - 0.1 * smooth          # terms: {"energy": 1.0, "tv": -0.1}
    >>> loss, terms = total.evaluate(features, image)
"""
from typing import Callable

import torch

Fn = Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]


class Objective:
    """A weighted sum of named terms; each term is `fn(features, image) -> scalar tensor`.

    Args:
        fn: the term, reading `features[name]` for names in `layers` and/or the image `[N, 3, H, W]`.
        layers: the feature names `fn` needs (as the model resolves them).
        name: the term's name in logs, records and error messages.
    """

    def __init__(self, fn: Fn, layers=(), name: str = "objective"):
        self.parts: list[tuple[float, str, Fn]] = [(1.0, name, fn)]
        self.layers: tuple[str, ...] = tuple(dict.fromkeys(layers))

    @classmethod
    def _of(cls, parts, layers) -> "Objective":
        obj = cls.__new__(cls)
        obj.parts, obj.layers = parts, tuple(dict.fromkeys(layers))
        return obj

    @property
    def names(self) -> list[str]:
        return [name for _, name, _ in self.parts]

    def evaluate(self, features, image) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The total and each term's weighted contribution to it (tensors; no host sync)."""
        terms = {name: w * fn(features, image) for w, name, fn in self.parts}
        return sum(terms.values()), terms

    def __call__(self, features, image) -> torch.Tensor:
        return self.evaluate(features, image)[0]

    def terms(self, features, image) -> dict[str, float]:
        """Each named term's weighted value as a float, for logging."""
        return {k: float(v) for k, v in self.evaluate(features, image)[1].items()}

    def __add__(self, other):
        if isinstance(other, (int, float)) and other == 0:
            return self   # so that sum([...]) works
        if not isinstance(other, Objective):
            return NotImplemented
        taken, parts = set(self.names), list(self.parts)
        for w, name, fn in other.parts:
            unique, i = name, 2
            while unique in taken:
                unique, i = f"{name}#{i}", i + 1
            taken.add(unique)
            parts.append((w, unique, fn))
        return Objective._of(parts, self.layers + other.layers)

    __radd__ = __add__

    def __mul__(self, k):
        if not isinstance(k, (int, float)):
            return NotImplemented
        return Objective._of([(w * k, name, fn) for w, name, fn in self.parts], self.layers)

    __rmul__ = __mul__

    def __truediv__(self, k):
        return self * (1.0 / k)

    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        return self + (-other)

    def __repr__(self):
        return " + ".join(f"{w:g}*{name}" for w, name, _ in self.parts)
