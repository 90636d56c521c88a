"""Neural texture synthesis (Gatys et al. 2015): noise moved until its feature statistics match a source's.

Three statistics: `gram` (Gram matrices, Gatys), `sorted` (each channel's sorted activations, a 1-D
optimal transport per channel) and `swd` (sliced Wasserstein over random projections of the channel
vectors, Heitz et al. 2021). All are independent of the pixel count, so the output may have any size and
`tile=True` makes it wrap around seamlessly: the output is optimised through the network with circular
padding in every convolution and pool (`FeatureModel.variant(padding="circular")`), so the network sees
the image as a torus, its wrap-around seams are interior at every layer whatever the receptive field,
and the statistics cover exactly one period (deterministic, so L-BFGS's line search still works; a
random circular shift per step would not). The source's statistics come from the model as it is.

Example:
    >>> run = synthesize_texture("examples/textures/brick.png", out_size=(256, 384), tile=True)   # (h, w)
    >>> run.save("out/brick.png", report=True)
"""
import itertools
from dataclasses import replace
from pathlib import Path

import torch

from . import losses
from .errors import InvtoolError, close_matches
from .defaults import GATYS_LAYERS, LOSSES, TEXTURE  # noqa: F401  (GATYS_LAYERS: invtool.texture's, as before)
from .geometry import choose_layers, default_layers, fit_to_model, stride
from .image import fit_size, is_grey, read_input
from .memory import PIXEL_LR, parse_memory, plan
from .model import DEFAULT_MODEL, FeatureModel, as_model
from .objectives import Objective, Sum, layer_weights as layer_weights_of, parse_layers
from .optimize import optimize, require_size
from .param import resize_image
from .record import Run, build_record, join_records
from .start import initial_image
from .tiled import score
from .transforms import deterministic

WEIGHTINGS = ("uniform", "increasing", "decreasing", "inverse-channels")


def synthesize_texture(source, *, model: str | FeatureModel = DEFAULT_MODEL, layers=None,
                       layer_weights=TEXTURE["layer_weights"], loss: str = TEXTURE["loss"],
                       gram_norm: str = TEXTURE["gram_norm"], pool: str = "max", preprocess=None, device=None,
                       size=None, out_size=None, tile: bool = False, scales: int = TEXTURE["scales"],
                       work_size: int | None = TEXTURE["work_size"],
                       optimizer: str | None = TEXTURE["optimizer"], steps: int = TEXTURE["steps"],
                       lr: float | None = TEXTURE["lr"], lr_schedule: str = TEXTURE["lr_schedule"],
                       tol: float = TEXTURE["tol"], seed: int = TEXTURE["seed"],
                       save_every: int = TEXTURE["save_every"], memory=None, progress: bool = True,
                       callback=None) -> Run:
    """Synthesise a texture like `source`; returns a Run (`.image`, `.record`, `.save(path, report)`).

    Args:
        source: an image file or a `[1, 3, H, W]` tensor in [0, 1]. A grey source (channels equal within
            1/255) gives a grey result: from coloured noise its Gram statistics, which hardly pin the
            colours, left a blue-and-yellow tint.
        model: an ONNX path or a loaded FeatureModel.
        layers: the layers whose statistics are matched (names or ONNX tensor names), as "LAYER[:WEIGHT],…",
            a list or a dict by `objectives.layer_weights`' rule (each once, weight 1 when none is given);
            None: the model's defaults (`geometry.default_layers`: Gatys' conv1_1, pool1..pool4 on VGG16,
            else one per stage). The weights are divided by their sum (unweighted: Gatys' 1/L).
        layer_weights: a weighting over layers given without weights: "uniform" | "increasing" |
            "decreasing" | "inverse-channels" (also divided by its sum).
        loss: "gram" | "sorted" | "swd".
        gram_norm: the Gram normalisation, a key of `losses.GRAM_NORMS`; "gatys" is Gatys et al.'s
            1/(4 N² M²) and does not depend on the image size.
        size: resize the source first: N (longer side) or (height, width).
        out_size: the output's N (longer side, the source's aspect) or (height, width); default the
            (resized) source's size.
        tile: make the output wrap around seamlessly.
        optimizer: default "lbfgs" (lr 1) for gram and sorted, "adam" (lr 0.02) for swd, whose random
            projections change at every evaluation, which L-BFGS's line search cannot follow.
        memory: the budget, bytes or "2G" (None: what the device has free): past it the output is optimised in
            tiles, exactly, and L-BFGS keeps fewer pairs or gives way to Adam (the record's `memory` and notes
            say); only the gram loss tiles.
        scales, work_size, steps, lr, lr_schedule, tol, seed, save_every, progress, callback: passed to
            `optimize` (an output larger than `work_size` gets one more scale per doubling).
            L-BFGS over 2 scales is the default: on VGG16 at 128 px it gets the Gram loss 6-50x lower
            than Adam in the same steps; the coarse scale costs a quarter per step. 150 steps take about
            a minute at 256 px on 2 CPU cores; 200 (~90 s) lowered the final Gram loss 1.1-3.2x on five
            held-out sources (README), in images hard to tell apart. tests/bench/bench_texture.py
            compares the default with the seeds' Adam setting.
    """
    options = {k: v for k, v in locals().items() if k not in ("model", "source", "callback", "progress")}
    options.update(source=str(source) if isinstance(source, (str, Path)) else "tensor",
                   model=str(model.path if isinstance(model, FeatureModel) else model))
    if loss not in LOSSES:
        raise InvtoolError(f"unknown loss {loss!r}{close_matches(loss, LOSSES)}; use one of {', '.join(LOSSES)}")
    if gram_norm not in losses.GRAM_NORMS:
        raise InvtoolError(f"unknown Gram normalisation {gram_norm!r}; use one of {', '.join(losses.GRAM_NORMS)}")
    memory = None if memory is None else parse_memory(memory)
    optimizer = optimizer or ("adam" if loss == "swd" else "lbfgs")
    lr = lr or PIXEL_LR.get(optimizer, 1.0)
    options.update(optimizer=optimizer, lr=lr)
    model = as_model(model, preprocess, pool, device)
    src, notes = read_input(source, channels=model.in_channels, size=size, what="source")
    given = parse_layers(model, choose_layers(model, layers, "texture", notes, progress), "texture")
    layers = list(given)
    weights = layer_weighting(model, given, layer_weights)
    require_size(model, layers, *src.shape[-2:], what="the source (after --size)")
    src = resize_image(src, *fit_to_model(model, layers, *src.shape[-2:], notes, "the source (after --size)"))
    oh, ow = fit_size(*src.shape[-2:], out_size) if out_size else tuple(src.shape[-2:])
    oh, ow = fit_to_model(model, layers, oh, ow, notes)

    if tile and (period := max(stride(model, n) for n in layers)) and (oh % period or ow % period):
        notes.append(f"the output {ow}x{oh} is not a multiple of the layers' stride {period}: the deepest "
                     f"layers wrap only approximately; a multiple of {period} wraps exactly")
    objective = texture_objective(model, src, layers, weights, loss=loss, gram_norm=gram_norm, seed=seed)
    net = model.variant(padding="circular") if tile else model
    plan(net, objective, 1, oh, ow, optimizer=optimizer, memory=memory, wrap=tile)   # before allocating anything
    grey = is_grey(src)
    if grey and src.shape[1] == 3:
        notes.append("grey source: grey result (grey starting noise, the model sees the channels' mean, so the "
                     "three channels stay equal; Gram statistics of a grey source hardly pin the colours)")
    init = initial_image("mean-noise", (1, src.shape[1], oh, ow), seed=seed, like=src)
    result = optimize(net, objective, init, optimizer=optimizer, lr=lr, steps=steps, lr_schedule=lr_schedule,
                      tol=tol, scales=scales, work_size=work_size, callback=callback, save_every=save_every, seed=seed,
                      progress=progress, wrap=tile, transforms=to_grey if grey else None, memory=memory)
    if grey:   # equal already (equal start, equal gradients); the mean makes it exact whatever the optimiser
        result = replace(result, image=to_grey(result.image),
                         snapshots=[(step, to_grey(x)) for step, x in result.snapshots])
    metrics = {"gram_loss": gram_texture_loss(model, src, result.image, layers, memory)}
    record = build_record("texture", options, result, model=model, layers=layers, metrics=metrics, notes=notes,
                          layer_weights=weights)
    return Run(result.image, record, {"source": src}, result.snapshots)


@deterministic
def to_grey(x: torch.Tensor, generator=None) -> torch.Tensor:
    """The channels' mean in all three: as a transform, the model sees a grey image and every channel gets
    the same gradient, so a grey start stays grey under any optimiser. Deterministic, so L-BFGS keeps its
    curvature memory: restarting it every 20 evaluations, as a random transform needs, left the Gram loss
    1.3-3.1x higher (brick, grass and the held-out moon, coins and camera at 128 px, two seeds each)."""
    return x.mean(1, keepdim=True).expand_as(x).contiguous()


def texture_objective(model: FeatureModel, source: torch.Tensor, layers, weights, *, loss: str = "gram",
                      gram_norm: str = "gatys", seed: int = 0) -> Objective:
    """The weighted sum over layers of one statistic loss against the source's features (computed once)."""
    with torch.no_grad():
        feats = model.features(source.to(model.device), layers)
    generator = torch.Generator(model.device).manual_seed(seed + 1)   # swd's projections

    terms = []
    for name, w in zip(layers, weights):
        if loss == "gram":   # a sum over positions: it tiles (objectives.Sum)
            target = losses.gram_matrix(feats[name], gram_norm)
            fn = Sum(name, lambda f, where: losses.gram_sum(f),
                     lambda s, shape, where, t=target: losses.gram_loss(losses.normalize_gram(s, shape, gram_norm), t))
        elif loss == "sorted":
            target = losses.sorted_channels(feats[name])
            fn = lambda f, x, n=name, t=target: losses.sorted_loss(f[n], t)
        else:
            fn = lambda f, x, n=name, t=feats[name]: losses.sliced_wasserstein_loss(f[n], t, generator=generator)
        terms.append(w * Objective(fn, [name], name=f"{loss}:{name}"))
    return sum(terms)


def layer_weighting(model: FeatureModel, layers: dict[str, float], spec: str = "uniform") -> list[float]:
    """Per-layer weights, divided by their sum: `layers`' own (`objectives.layer_weights`, 1 when none is
    given), or the named weighting `spec` over layers given without weights."""
    if not isinstance(spec, str) or spec not in WEIGHTINGS:
        hint = close_matches(spec, WEIGHTINGS) if isinstance(spec, str) else ""
        raise InvtoolError(f"unknown layer weighting {spec!r}{hint}; use one of {', '.join(WEIGHTINGS)}, or give "
                           f"weights with the layers: conv1_1:1,pool1:0.5")
    n, names = len(layers), list(layers)
    if spec != "uniform" and any(w != 1 for w in layers.values()):
        raise InvtoolError(f"layers with weights and the {spec} weighting: give one or the other")
    if spec == "increasing":
        layers = {name: i + 1.0 for i, name in enumerate(names)}
    elif spec == "decreasing":
        layers = {name: n - i + 0.0 for i, name in enumerate(names)}
    elif spec == "inverse-channels":
        layers = {name: 1.0 / model.channels(name) for name in names}
    return list(layer_weights_of(layers, "texture", normalise=True).values())


def gram_texture_loss(model: FeatureModel, source: torch.Tensor, image: torch.Tensor, layers, memory=None) -> float:
    """The evaluator textures are judged by: Gatys' Gram loss, 1/L on each of `layers` (the run's own, so
    that runs with other losses or weights are comparable; Gatys' conv1_1, pool1..pool4 on VGG16); in tiles when
    one pass over the image would not fit `memory`."""
    return score(model, texture_objective(model, source, layers, [1.0 / len(layers)] * len(layers)), image, memory)[0]


def texture_sweep(source, *, layer_sets=None, weightings=None, **kwargs) -> Run:
    """One texture per (layer set, weighting), side by side in a labelled contact sheet.

    The seeds' layer and weighting studies as one call; by default the progression of the model's
    default texture layers: on VGG16 Gatys et al.'s conv1_1, +pool1, +pool2, … up to pool4.

    Example:
        >>> run = texture_sweep("brick.png", layer_sets=[["conv1_1"], ["conv1_1", "pool1", "pool2"]])
    """
    from .image import contact_sheet

    weightings = list(weightings) if weightings else [kwargs.pop("layer_weights", TEXTURE["layer_weights"])]
    kwargs.pop("layer_weights", None)
    model = as_model(kwargs.pop("model", DEFAULT_MODEL), kwargs.pop("preprocess", None), kwargs.get("pool", "max"),
                     kwargs.pop("device", None))   # loaded once for all runs
    defaults = default_layers(model, "texture")
    layer_sets = ([parse_layers(model, s, "texture") for s in layer_sets] if layer_sets
                  else [defaults[:k] for k in range(1, len(defaults) + 1)])
    runs, labels = [], []
    for layers, weighting in itertools.product(layer_sets, weightings):
        run = synthesize_texture(source, model=model, layers=layers, layer_weights=weighting, **kwargs)
        runs.append(run)
        label = ",".join(layers) if len(layers) <= 2 else f"{layers[0]}..{layers[-1]} ({len(layers)})"
        labels.append(label if len(weightings) == 1 else f"{label} {weighting}")
        if run.interrupted:
            break
    source_img = runs[0].inputs["source"]
    sheet = contact_sheet([source_img] + [r.image for r in runs], ["source"] + labels)
    record = join_records("texture --sweep", runs, labels, layers=layer_sets,
                          options=dict(runs[-1].record["options"], layer_sets=layer_sets, weightings=weightings))
    return Run(sheet, record, {"source": source_img})
