"""Feature inversion (Mahendran & Vedaldi 2015): find an image whose features at chosen layers match a
given image's, under natural-image priors; what the result keeps is what those layers still know.

The objective is Σ_l w_l ‖Φ_l(x) − Φ_l(x₀)‖² / ‖Φ_l(x₀)‖² + λ_α R_α(x − ½) + λ_TV R_TV^β(x), with the
priors per pixel and in Mahendran & Vedaldi's units (B = 80/255 for the range of a centred pixel,
V = B/6.5 for a typical neighbour difference), so each term is about 1 on a natural image whatever its
size, and one set of weights serves every layer.

The image is optimised as a Laplacian pyramid (`param.pyramid`) against the full-size target only:
coarse levels fix the colour of whole regions that pixel steps leave wrong, and no target is taken
from a resized original, which would tell the optimiser more than the layer knows. The default is one
L-BFGS run of at most 600 steps that stops when the loss improves by less than 0.1% over 20 steps;
`restarts=K` optimises K starts as one batch and merges them by fit, which pays on deep layers at about
K times the cost. tests/bench/bench_invert.py measures both, and the 3450-step search that was the
default before, on six held-out images (figures in the README).

Example:
    >>> run = invert("examples/images/chelsea.png", layers=["conv3_1", "conv5_1:0.5"], size=128)
    >>> run.record["metrics"]     # {'psnr': dB, 'ssim': ..., 'feature_error': {'conv3_1': ..., 'conv5_1': ...}}
    >>> run.save("out/chelsea-conv3_1.png", report=True)
"""
import math
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from . import losses
from .defaults import INVERT, INVERT_INITS as INITS, INVERT_PARAMS as PARAMS
from .errors import InvtoolError
from .geometry import choose_layers, default_layers, fit_to_model
from .image import contact_sheet, read_input
from .memory import LBFGS_KINDS
from .metrics import reconstruction_metrics
from .model import DEFAULT_MODEL, FeatureModel, as_model
from .objectives import MAX_WEIGHT, Objective, parse_layers
from .optimize import Result, chain, optimize, require_size
from .param import pyramid, resize_image
from .record import Run, build_record, join_records
from .start import initial_image
from .transforms import jitter as jitter_transform

PYRAMID_LEVELS = 5
RANGE_WEIGHT = 10.0             # the soft [0, 1] box the unclamped pyramid needs
PIXEL_RANGE = 80 / 255          # B: the range of a centred natural-image pixel, in [0, 1] units
TV_SCALE = PIXEL_RANGE / 6.5    # V: a typical difference between neighbouring pixels
DEFAULT_LR = {"adam": 0.05, "sgd": 0.3}   # L-BFGS: 1
MAX_RESTARTS = 64
MERGE_TEMPERATURE = 0.1   # softmax temperature of `merge_by_fit`, in units of the mean error
POLISH_STEPS = 50         # with restarts: the last run, from their merge


def invert(image, *, model: str | FeatureModel = DEFAULT_MODEL, layers=None, size=INVERT["size"],
           alpha: float = INVERT["alpha"], alpha_weight: float = INVERT["alpha_weight"],
           tv_beta: float = INVERT["tv_beta"], tv_weight: float = INVERT["tv_weight"],
           jitter: int = INVERT["jitter"], init: str = INVERT["init"], param: str = INVERT["param"],
           optimizer: str = INVERT["optimizer"],
           lr: float | None = INVERT["lr"], lr_schedule: str = INVERT["lr_schedule"], steps: int = INVERT["steps"],
           tol: float = INVERT["tol"], scales: int = INVERT["scales"], seed: int = INVERT["seed"],
           restarts: int = INVERT["restarts"], preprocess=None, pool: str = "max", device=None,
           save_every: int = INVERT["save_every"], progress: bool = True, callback=None) -> Run:
    """Reconstruct `image` from its features at `layers`; returns a Run (`.image`, `.record`, `.save`).

    Args:
        image: an image file or a `[1, 3, H, W]` tensor in [0, 1].
        model: an ONNX path or a loaded FeatureModel.
        layers: "LAYER[:WEIGHT],…", a list of "LAYER[:WEIGHT]", or a {name: weight} dict: each layer once,
            weight 1 when none is given, the weights used as given (`objectives.layer_weights`); None:
            the model's default (`geometry.default_layers`: conv3_1 on VGG16, else its middle stage).
        size: resize the image (file or tensor) first: N (longer side) or (height, width); None keeps it. Fully connected
            layers override it with the input size they need (the record notes it).
        alpha, alpha_weight: exponent and weight of the α-norm prior on the centred image.
        tv_beta, tv_weight: exponent and weight of the total-variation prior.
        jitter: shift the image by up to this many pixels each step (suits Adam; makes L-BFGS noisy).
        init: "noise" (uniform), "gray" (0.5 everywhere), "blur" (smooth random colours), or a starting
            image (a file or a `[1, 3, H, W]` tensor, resized to fit): to go on from an earlier result.
        param: "pyramid" (a Laplacian pyramid, kept in [0, 1] by a range prior) or "pixel" (clamped pixels).
        restarts: optimise this many starts together, as one batch `[K, 3, H, W]` (the first from `init`,
            the others from noise unless `init` is random), merge their images where each matches the
            features best (`merge_by_fit`) and go on from the merge for the last min(50, steps / 4) steps.
            Single runs stop in different poor minima on deep layers; the merge takes each one's best
            regions. 1 (the default): one run.
        steps: the forward+backward passes the whole inversion may take (with restarts, each pass is of
            the batch).
        tol: stop when the loss improved by less than this fraction over 20 steps (0: run all `steps`).
        optimizer, lr, lr_schedule, scales, seed, save_every, progress, callback: passed to
            `optimize`; lr defaults to 1 for L-BFGS, 0.05 for Adam and 0.3 for SGD (momentum 0.9; with
            `--lr-schedule step` it is Mahendran & Vedaldi's schedule). With `scales` > 1
            each coarse scale's target comes from the original resized.
    """
    options = {k: v for k, v in locals().items() if k not in ("model", "image", "callback", "progress")}
    options.update(image=str(image) if isinstance(image, (str, Path)) else "tensor",
                   init=str(init) if isinstance(init, (str, Path)) else "tensor",
                   model=str(model.path if isinstance(model, FeatureModel) else model))
    check_priors(alpha, alpha_weight, tv_beta, tv_weight)
    _check_options(init, param, jitter, restarts, steps)
    model = as_model(model, preprocess, pool, device)
    src, notes = read_input(image, channels=model.in_channels, size=size)
    weights = parse_layers(model, choose_layers(model, layers, "invert", notes, progress))
    names = list(weights)
    if fixed := model.fixed_size(names):
        if tuple(src.shape[-2:]) != fixed:
            notes.append(f"image resized from {src.shape[-1]}x{src.shape[-2]} to {fixed[1]}x{fixed[0]}: "
                         f"the fully connected layers among {', '.join(names)} need that input size")
            src = resize_image(src, *fixed)
    require_size(model, names, *src.shape[-2:], what="the image (after --size)")
    src = resize_image(src, *fit_to_model(model, names, *src.shape[-2:], notes, "the image (after --size)"))
    if jitter and optimizer in LBFGS_KINDS:
        notes.append("jitter makes the objective random, which L-BFGS's line search does not expect; "
                     "use --optimizer adam with --jitter")

    objective = inversion_objective(model, src, weights, alpha=alpha, alpha_weight=alpha_weight,
                                    tv_beta=tv_beta, tv_weight=tv_weight)
    if param == "pyramid":   # unclamped: a range prior keeps it in [0, 1]
        objective = objective + RANGE_WEIGHT * Objective(lambda f, x: losses.range_penalty(x), name="range")

    def run(start: torch.Tensor, steps: int, offset: int = 0) -> Result:
        step_cb = (lambda s: callback(replace(s, step=s.step + offset))) if callback else None
        start = start.to(model.device)   # the pyramid is built where the model runs
        return optimize(model, objective, pyramid(start, PYRAMID_LEVELS) if param == "pyramid" else start,
                        optimizer=optimizer, lr=DEFAULT_LR.get(optimizer, 1.0) if lr is None else lr, steps=steps,
                        lr_schedule=lr_schedule, tol=tol, scales=scales,
                        transforms=jitter_transform(jitter) if jitter else None, callback=step_cb,
                        save_every=save_every, seed=seed, progress=progress)

    # later restarts start from noise: a fixed start would repeat itself
    starts = torch.cat([initial_image(init if k == 0 or init in ("noise", "blur") else "noise", src.shape, seed=seed + k)
                        for k in range(restarts)])
    if restarts == 1:
        result = run(starts, steps)
    else:   # one batched run, merged where each matches best, then a short run from the merge
        polish = min(POLISH_STEPS, steps // 4)
        searched = run(starts, steps - polish)
        merged = merge_by_fit(model, src, weights, searched.image)
        searched = replace(searched, image=merged, loss=objective.at(model, merged))
        notes.append(f"{restarts} starts (seeds {seed}..{seed + restarts - 1}) optimised together for "
                     f"{searched.steps} steps, merged where each matches the features best, then {polish} steps "
                     f"from the merge")
        ended = searched.interrupted or bool(searched.stop_reason)
        result = searched if ended else chain([searched, run(merged, polish, offset=searched.steps)])
    metrics = reconstruction_metrics(model, src, result.image, names)
    record = build_record("invert", options, result, model=model, layers=names, metrics=metrics, notes=notes,
                          layer_weights=weights)
    return Run(result.image, record, {"original": src}, result.snapshots)


def merge_by_fit(model: FeatureModel, original: torch.Tensor, weights: dict[str, float], images: torch.Tensor,
                 temperature: float = MERGE_TEMPERATURE) -> torch.Tensor:
    """One image `[1, 3, H, W]` from several reconstructions `[K, 3, H, W]`: at each pixel, their mean weighted
    by how well each one's features match the original's there.

    Runs from nothing go wrong in different places, and the feature error near a pixel tells which run got it
    right far better than the total does (astronaut conv3_1: 17.0 dB against 14.8 for the plain mean). The
    weights are a softmax of −error / (`temperature` · mean error) over the runs; a fully connected layer's
    error counts for every pixel.
    """
    with torch.no_grad():
        x = images.to(model.device)
        features = model.features(x, list(weights))
        targets = model.features(original.to(model.device), list(weights))
        error = torch.zeros(len(images), 1, *images.shape[-2:], device=model.device)
        for name, w in weights.items():
            t = targets[name]
            miss = (features[name] - t).square()
            miss = (miss if miss.ndim == 4 else miss.flatten(1)[..., None, None]).sum(1, keepdim=True)
            error += w * F.interpolate(miss, size=images.shape[-2:], mode="bilinear") / t.square().sum()
        share = torch.softmax(-error / (temperature * error.mean()).clamp_min(1e-12), dim=0)
        return (share * x).sum(0, keepdim=True).cpu()


def inversion_objective(model: FeatureModel, original: torch.Tensor, weights: dict[str, float], *,
                        alpha: float = 6.0, alpha_weight: float = 0.0, tv_beta: float = 2.0,
                        tv_weight: float = 3e-4) -> Objective:
    """Σ weight · normalised feature error at each layer, plus the α-norm and TV priors (see module doc).

    The target features are computed once per image size the engine asks for (the original resized to
    it), so coarse-to-fine runs reconstruct the original at each scale.
    """
    names = list(weights)
    targets: dict[tuple[int, int], dict[str, torch.Tensor]] = {}

    def target(x) -> dict[str, torch.Tensor]:
        hw = tuple(x.shape[-2:])
        if hw not in targets:
            with torch.no_grad():
                targets[hw] = model.features(resize_image(original, *hw).to(model.device), names)
        return targets[hw]

    terms = [w * Objective(lambda f, x, n=name: losses.normalized_feature_error(f[n], target(x)[n]), [name],
                           name=f"feature:{name}") for name, w in weights.items()]
    if alpha_weight:
        terms.append(alpha_weight * Objective(lambda f, x: losses.alpha_norm(x - 0.5, alpha, PIXEL_RANGE),
                                              name=f"alpha{alpha:g}"))
    if tv_weight:
        terms.append(tv_weight * Objective(lambda f, x: losses.tv_loss(x, tv_beta, TV_SCALE),
                                           name=f"tv{tv_beta:g}"))
    return sum(terms)


def _check_options(init, param: str, jitter: int, restarts: int, steps: int) -> None:
    """InvtoolError for a start, parameterisation, jitter or restarts no run could use, before loading anything."""
    if isinstance(init, (str, Path)) and init not in INITS and not Path(init).is_file():
        raise InvtoolError(f"unknown init {str(init)!r}: not one of {', '.join(INITS)} nor an image file")
    if param not in PARAMS:
        raise InvtoolError(f"unknown parameterisation {param!r}; use one of {', '.join(PARAMS)}")
    if jitter < 0:
        raise InvtoolError(f"--jitter must be 0 or more pixels, got {jitter}")
    if not 1 <= restarts <= MAX_RESTARTS:
        raise InvtoolError(f"--restarts {restarts} is out of range; give 1 to {MAX_RESTARTS} (1: a single run)")
    if restarts > 1 and steps < 8:
        raise InvtoolError(f"--restarts {restarts} with --steps {steps}: give at least 8 steps (the last quarter "
                           f"goes on from the merge)")


def check_priors(alpha: float, alpha_weight: float, tv_beta: float, tv_weight: float) -> None:
    """InvtoolError for exponents or weights no run could use."""
    for flag, w in (("--alpha-weight", alpha_weight), ("--tv-weight", tv_weight)):
        if not (math.isfinite(w) and 0 <= w <= MAX_WEIGHT):
            raise InvtoolError(f"{flag} {w:g} is out of range; give a number in [0, {MAX_WEIGHT:g}] (0 turns it off)")
    if not (math.isfinite(alpha) and 1 <= alpha <= 20):
        raise InvtoolError(f"--alpha {alpha:g} is out of range; give an exponent in [1, 20] (6 is the usual)")
    if not (math.isfinite(tv_beta) and 0 < tv_beta <= 4):
        raise InvtoolError(f"--tv-beta {tv_beta:g} is out of range; give an exponent in (0, 4] (1 or 2 are usual)")


def compare_layers(image, *, layers=None, **kwargs) -> Run:
    """One inversion per layer, side by side in a labelled contact sheet, with a metrics table.

    The seeds' "deep versus shallow" figure as one call; by default over the model's stage layers
    (VGG16: conv1_1 … conv5_1). Layers the model does not have (fc6 on a conv-only VGG16) fail before
    any run starts.

    Example:
        >>> run = compare_layers("chelsea.png", layers=["conv1_1", "conv3_1", "conv5_1"], size=128)
        >>> print(metrics_table(run.record["runs"]))
    """
    model = as_model(kwargs.pop("model", DEFAULT_MODEL), kwargs.pop("preprocess", None), kwargs.get("pool", "max"),
                     kwargs.pop("device", None))   # loaded once for all runs
    layers = list(parse_layers(model, layers or default_layers(model, "compare")))   # "a,b,c", a list or a name
    runs = []
    for name in layers:
        runs.append(invert(image, model=model, layers=name, **kwargs))
        if runs[-1].interrupted:
            break
    original = runs[0].inputs["original"]
    h, w = original.shape[-2:]
    sheet = contact_sheet([original] + [resize_image(r.image, h, w) for r in runs],
                          ["original"] + [f"{r.record['layers'][0]} {r.record['metrics']['psnr']:.1f} dB"
                                          for r in runs], cols=min(len(runs) + 1, 4))
    record = join_records("invert --compare", runs, [r.record["layers"][0] for r in runs], layers=layers[:len(runs)],
                          metrics={r.record["layers"][0]: r.record["metrics"] for r in runs})
    return Run(sheet, record, {"original": original})


def metrics_table(runs: list[dict]) -> str:
    """A plain-text table of run records (label or layers, size, PSNR, SSIM, feature error, steps/s)."""
    rows = [("layers", "size", "PSNR dB", "SSIM", "feat. err", "steps/s")]
    for r in runs:
        m = r["metrics"]
        h, w = r["sizes"][-1]
        rows.append((r.get("label") or ",".join(r["layers"]), f"{w}x{h}", f"{m['psnr']:.2f}", f"{m['ssim']:.3f}",
                     " ".join(f"{v:.4f}" for v in m["feature_error"].values()), f"{r['steps_per_sec']:.2f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(wd) if i else c.ljust(wd) for i, (c, wd) in enumerate(zip(row, widths)))
                     for row in rows)
