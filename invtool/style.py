"""Neural style transfer (Gatys et al. 2016): an image that keeps the content image's features at some
layers and takes the style images' feature statistics at others.

The objective is `content_weight * Σ w_l MSE(F_l, P_l)` over the content layers `+ style_weight * Σ_s b_s
Σ_l w_l L(F_l, S_l)` over the style images (blend weights `b_s`) and style layers, `L` the Gram loss
(Gatys' normalisation) or the sliced Wasserstein loss, `+ tv_weight * TV`, TV per pixel (`losses.tv_loss`,
so its weight does not depend on the size). Every target is computed for the size the engine asks at, so
coarse-to-fine `scales` see the content at their own size and the style at the same scale relative to
the output (`style_scale`). Colours: `preserve_color="luminance"` transfers the style on luminance only
and puts the content's chroma back; `"histogram"` matches the style images' colour histograms to the
content's first (both from Gatys et al. 2016b).

Regions (Gatys et al. 2017 §4, guided Gram matrices): with `masks`, one greyscale mask per style image, each style
applies where its mask is on. A mask m (the output's size) is area-downsampled to every style layer's resolution
(`losses.pool_mask`) and weights the features; the region's Gram matrix is

    G_r = Σ_p m(p)² f(p) f(p)ᵀ / (2 Σ_p m(p)²)

the Gram of the mask-weighted features F·M with Gatys' 1/(2M) normalisation, the pixel count M replaced by the mask's
weight Σ m², so that G_r is the mean outer product over the region, the same scale as the style image's whole-image
Gram it is compared with (a constant mask gives exactly the plain Gram). A style mask (`style_masks`) selects the
part of a style image that gives its Gram, in the same way; none: the whole image. Each region's Gram loss is
weighted by its area, Σ m² / M, so that a pixel feels the same style pressure, against the content term, whatever its
region's size (one mask covering everything gives exactly the unmasked run); pixels that no mask covers keep only the
content loss. The masked statistics are sums over positions, so they tile (`--memory`): each tile takes its slice of
the downsampled mask, at the feature positions its `objectives.Region` gives.

Example:
    >>> run = transfer_style("examples/images/chelsea.png", "examples/textures/ihc.png", size=384)
    >>> run.save("out/chelsea_ihc.png", report=True)
"""
import functools
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from . import losses
from .defaults import COLOR_MODES, CONTENT_LAYERS, STYLE, STYLE_LAYERS, STYLE_LOSSES, STYLE_WEIGHTS  # noqa: F401
from .errors import InvtoolError, close_matches
from .geometry import choose_layers, fit_to_model, size_step, stride
from .image import match_histograms, read_input, rgb_to_yuv, yuv_to_rgb
from .memory import PIXEL_LR, parse_memory
from .model import DEFAULT_MODEL, FeatureModel, as_model
from .objectives import Objective, Region, Sum, parse_layers
from .optimize import optimize, require_size
from .param import resize_image
from .record import Run, build_record
from .start import initial_image
from . import tiled

POOLS = ("max", "avg")


def transfer_style(content, styles, *, model: str | FeatureModel = DEFAULT_MODEL, content_layers=None,
                   style_layers=None, content_weight: float = STYLE["content_weight"],
                   style_weight: float | None = None, tv_weight: float = STYLE["tv_weight"],
                   style_loss: str = STYLE["style_loss"], style_blend=None, style_scale=STYLE["style_scale"],
                   masks=None, style_masks=None, init: str = STYLE["init"], pool: str = "max",
                   preserve_color: str = STYLE["preserve_color"], size=STYLE["size"], scales: int = STYLE["scales"],
                   work_size: int | None = STYLE["work_size"], optimizer: str | None = STYLE["optimizer"],
                   steps: int = STYLE["steps"], lr: float | None = STYLE["lr"], lr_schedule: str = STYLE["lr_schedule"],
                   tol: float = STYLE["tol"], seed: int = STYLE["seed"], save_every: int = STYLE["save_every"],
                   memory=None, preprocess=None, device=None, progress: bool = True, callback=None,
                   terms: Objective | None = None) -> Run:
    """Paint `content` in the style of `styles`; returns a Run (`.image`, `.record`, `.save(path, report)`).

    Args:
        content: an image file or a `[1, 3, H, W]` tensor in [0, 1]; resized to `size`, it sets the
            output's size.
        styles: one style image (file or tensor) or a list of them.
        model: an ONNX path or a loaded FeatureModel.
        content_layers, style_layers: "conv1_1:1,conv2_1:0.8,…", a list of "LAYER[:WEIGHT]" or a {name:
            weight} dict, by `objectives.layer_weights`' rule: each layer once, weight 1 when none is given;
            the style layers' weights are then divided by their sum (unweighted: 1/L each), the content
            layers' are used as given.
            None: the model's defaults (`geometry.default_layers`: Gatys' conv4_2 and conv1_1 … conv5_1 on
            VGG16, else its middle stage and one layer per stage).
        content_weight, style_weight, tv_weight: the three terms' weights; `style_weight` None takes
            `STYLE_WEIGHTS[style_loss]`: 0.01 for Gram, chosen on the examples' pairs so that the result keeps
            the content (conv4_2 error ≤ 0.6 of the style image's) and takes the style (Gram loss ≤ 0.2 of the
            content image's) with room on both sides (at 1, the previous default, astronaut's face was lost:
            0.67); judged on held-out pairs by tests/bench/bench_style_pairs.py. TV is per pixel, so its
            weight does not depend on the size.
        style_loss: "gram" (Gatys) or "swd" (sliced Wasserstein, Heitz et al. 2021).
        style_blend: one weight per style image (normalised to sum to 1); default equal.
        style_scale: each style image is resized so its longer side is this times the output's: one number for
            all, or one per style image ([0.5, 1.0] or "0.5,1.0").
        masks: one mask per style image (files or `[1, 1, H, W]` tensors in [0, 1], greyscale; another size is
            resized to the output's, with a note): style i applies where mask i is on (guided Gram matrices, see the
            module docstring); pixels no mask covers keep only the content loss. With masks each style's blend
            weight is multiplied by the style count, so by default each style has the whole style weight in its
            region. The record's metrics give each region's style loss (`region_style_losses`).
        style_masks: one per style image, or None entries: the part of each style image whose statistics it gives
            (default: the whole image).
        init: "content", "style", "noise", "blend:W" (W x content + (1 - W) x noise),
            "blend:W:style" (W x content + (1 - W) x style), or a starting image (a `[1, C, H, W]` tensor, resized
            to the output: video starts a frame from the previous stylised frame, warped).
        terms: further objective terms added to the content and style losses (video's temporal loss).
        pool: "max", or "avg" to swap every max pooling for average pooling (Gatys: smoother results).
        preserve_color: "none", "luminance" or "histogram" (see the module docstring).
        size: the output's longer side N, or (height, width); None keeps the content's size. 160 px and
            200 steps take about a minute on 2 CPU cores; ask for more with `size` and `steps`.
        memory: the budget, bytes or "2G" (None: what the device has free): past it the output is optimised in
            tiles, exactly, and L-BFGS keeps fewer pairs or gives way to Adam (the record's `memory` and notes
            say); the gram style loss tiles, swd does not.
        optimizer: default "lbfgs" (lr 1) for gram, "adam" (lr 0.02) for swd, whose random projections change at
            every evaluation, which L-BFGS's line search cannot follow; `lr` None takes the optimiser's
            (`memory.PIXEL_LR`), as texture does.
        scales, work_size, steps, lr_schedule, tol, seed, save_every, progress, callback: passed
            to `optimize`. L-BFGS from the content image is the classic fast choice and the default. An output
            larger than `work_size` (512) starts there and is refined at each doubling, the style images
            resized for each size as `style_scale` says, so brush strokes keep their size relative to the output.
    """
    options = {k: v for k, v in locals().items() if k not in ("model", "content", "styles", "callback", "progress")}
    styles = list(styles) if isinstance(styles, (list, tuple)) else [styles]
    masks, style_masks = _as_list(masks), _as_list(style_masks)
    options.update(masks=masks and [_describe(m) for m in masks],
                   style_masks=style_masks and [None if m is None else _describe(m) for m in style_masks],
                   content=_describe(content), styles=[_describe(s) for s in styles], init=_describe(init),
                   terms=terms and terms.names, model=str(model.path if isinstance(model, FeatureModel) else model))
    _check_options(style_loss, preserve_color, pool, styles, style_scale, init)
    _check_masks(masks, style_masks, len(styles), style_loss)
    scales_ = style_scales(style_scale, len(styles))
    memory = None if memory is None else parse_memory(memory)
    blend = blend_weights(style_blend, len(styles))
    style_weight = STYLE_WEIGHTS[style_loss] if style_weight is None else style_weight
    optimizer = optimizer or ("adam" if style_loss == "swd" else "lbfgs")   # swd's projections change every step
    lr = lr or PIXEL_LR.get(optimizer, 1.0)
    options.update(style_weight=style_weight, style_blend=blend, optimizer=optimizer, lr=lr,
                   style_scale=scales_[0] if len(set(scales_)) == 1 else scales_)

    model = as_model(model, preprocess, pool, device)
    if preserve_color != "none" and model.in_channels == 1:
        raise InvtoolError(f"--preserve-color {preserve_color} with a grey-input model: its images have no colour "
                           "to keep; leave --preserve-color out")
    content_img, notes = read_input(content, channels=model.in_channels, size=size, what="content")
    content_w = parse_layers(model, choose_layers(model, content_layers, "content", notes, progress), "content")
    style_w = parse_layers(model, choose_layers(model, style_layers, "style", notes, progress), "style",
                           normalise=True)
    layers = list(dict.fromkeys([*content_w, *style_w]))
    content_img = _fit_content(model, layers, content_img, notes)
    h, w = content_img.shape[-2:]
    read = [read_input(s, channels=model.in_channels, what="style image") for s in styles]
    style_imgs, notes = [x for x, _ in read], notes + [n for _, more in read for n in more]
    region_masks = masks and _read_masks(masks, [(h, w)] * len(styles), "mask", notes, "the output's size")
    style_region_masks = style_masks and _read_masks(style_masks, [x.shape[-2:] for x in style_imgs], "style mask", notes,
                                                     "its style image's size")

    target, style_imgs = _colour_targets(preserve_color, content_img, style_imgs)
    style_min = model.min_size(list(style_w))
    content_obj = content_objective(model, target.to(model.device), content_w)
    region_kw = dict(scale=scales_, min_side=style_min, masks=region_masks, style_masks=style_region_masks)
    style_obj = style_objective(model, [s.to(model.device) for s in style_imgs], style_w, blend, loss=style_loss,
                                seed=seed, **region_kw)
    objective = _total(content_weight * content_obj + style_weight * style_obj, terms, tv_weight)
    start = initial_image(init, target.shape, seed=seed, like=target, styles=style_imgs, blend=blend)
    result = optimize(model, objective, start, optimizer=optimizer, lr=lr, steps=steps, lr_schedule=lr_schedule,
                      tol=tol, scales=scales, work_size=work_size, callback=callback, save_every=save_every, seed=seed,
                      progress=progress, memory=memory)

    metrics = _metrics(model, content_obj, style_obj, result.image, memory, style_imgs, style_w, region_kw)
    image, snapshots = result.image, result.snapshots
    if preserve_color == "luminance":
        image = with_chroma(image, content_img)
        snapshots = [(step, with_chroma(s, content_img)) for step, s in snapshots]
    sizes = _style_sizes(model, style_imgs, h, w, scales_, style_min, list(style_w), notes)
    record = build_record("style", options, result, model=model, layers=layers, metrics=metrics, notes=notes,
                          content_layers=content_w, style_layers=style_w, output_size=[h, w],
                          style_sizes=[list(s) for s in sizes])
    inputs = {"content": content_img, **{f"style {i + 1}" if len(styles) > 1 else "style": s
                                         for i, s in enumerate(style_imgs)}}
    return Run(image, record, inputs, snapshots)


def _total(objective: Objective, terms: Objective | None, tv_weight: float) -> Objective:
    """The content and style losses, with the caller's further terms and total variation (per pixel) if asked."""
    if terms is not None:
        objective = objective + terms
    if tv_weight:
        objective = objective + tv_weight * Objective(lambda f, x: losses.tv_loss(x), name="tv")
    return objective


def _metrics(model, content_obj, style_obj, image, memory, style_imgs, style_w, region_kw) -> dict:
    """The result's content and style losses (in tiles if one pass would not fit `memory`), and with masks each
    region's Σ_l w_l L(G_r, A_s), unweighted by blend and area: comparable to a plain run's style loss."""
    metrics = {"content_loss": tiled.score(model, content_obj, image, memory)[0],
               "style_loss": tiled.score(model, style_obj, image, memory)[0]}
    if region_kw["masks"]:
        n = len(style_imgs)
        judge = style_objective(model, [s.to(model.device) for s in style_imgs], style_w, [1 / n] * n,
                                by_area=False, **region_kw)
        terms = tiled.score(model, judge, image, memory)[1]
        metrics["region_style_losses"] = [sum(v for k, v in terms.items() if k.split(":")[0] == p)
                                          for p in _prefixes(n)]
    return metrics


def _style_sizes(model, style_imgs, h: int, w: int, scales, style_min: int, layers, notes: list[str]) -> list:
    """Each style image's (h, w) for the h x w output (`_style_size`), with a note for each one resized."""
    sizes = [_style_size(s.shape[-2:], h, w, k, style_min, size_step(model, layers)) for s, k in zip(style_imgs, scales)]
    notes += [f"style {i + 1}: {s.shape[-1]}x{s.shape[-2]} resized to {sw}x{sh} for the {w}x{h} output"
              for i, (s, (sh, sw)) in enumerate(zip(style_imgs, sizes)) if (sh, sw) != tuple(s.shape[-2:])]
    return sizes


def _colour_targets(preserve_color: str, content: torch.Tensor, styles: list[torch.Tensor]):
    """(the content target, the style images) for `preserve_color`: histogram matches the styles' colours to the
    content's; luminance optimises a grey image against grey styles, the content's chroma going back at the end."""
    if preserve_color == "histogram":
        return content, [match_histograms(s, content) for s in styles]
    if preserve_color == "luminance":
        return luminance_image(content), [luminance_image(s, like=content) for s in styles]
    return content, styles


def _check_options(style_loss: str, preserve_color: str, pool: str, styles: list, style_scale: float, init) -> None:
    """InvtoolError for options no run could use, before anything is loaded."""
    if style_loss not in STYLE_LOSSES:
        raise InvtoolError(f"unknown style loss {style_loss!r}{close_matches(style_loss, STYLE_LOSSES)}; "
                           f"use one of {', '.join(STYLE_LOSSES)}")
    if preserve_color not in COLOR_MODES:
        raise InvtoolError(f"unknown colour mode {preserve_color!r}{close_matches(preserve_color, COLOR_MODES)}; "
                           f"use one of {', '.join(COLOR_MODES)}")
    if pool not in POOLS:
        raise InvtoolError(f"unknown pooling {pool!r}; use 'max' or 'avg'")
    if not styles:
        raise InvtoolError("give at least one style image")
    style_scales(style_scale, len(styles))
    if isinstance(init, torch.Tensor):
        return
    if not isinstance(init, str) or not (init in ("content", "style", "noise") or init.startswith("blend:")):
        raise InvtoolError(f"bad init {init!r}; use content, style, noise, blend:W or blend:W:style with W in [0, 1] "
                           "(the content's share)")


def _fit_content(model: FeatureModel, layers: list[str], content: torch.Tensor, notes: list[str]) -> torch.Tensor:
    """The content at a size the layers take: refused when they need another fixed size, rounded to their
    alignment when the model needs it (`geometry.fit_to_model`)."""
    h, w = content.shape[-2:]
    fixed = model.fixed_size(layers)
    if fixed and (h, w) != tuple(fixed):
        raise InvtoolError(f"layers {', '.join(layers)} need a {fixed[1]}x{fixed[0]} input; use --size "
                           f"{fixed[1]}x{fixed[0]}")
    require_size(model, layers, h, w, what="the content (after --size)")
    return resize_image(content, *fit_to_model(model, layers, h, w, notes, "the content (after --size)"))


def content_objective(model: FeatureModel, content: torch.Tensor, layers: dict[str, float]) -> Objective:
    """Σ w_l MSE(F_l, P_l): the content's features P_l are computed once per size the engine asks at (in tiles
    when the engine evaluates that size in tiles). Each term is a sum over positions, so it tiles."""
    targets = per_size(lambda h, w, tiling: tiled.features(model, resize_image(content, h, w), layers, tiling))

    def term(name):
        s, channels = stride(model, name), model.channels(name)
        return Sum(name, lambda f, where: losses.squared_error(f, targets(where)[name][..., where.rows, where.cols]),
                   lambda total, shape, where: total / math.prod(shape),
                   stored=lambda h, w: 4 * channels * (h // s + 1) * (w // s + 1))

    return sum(wt * Objective(term(name), name=f"content:{name}") for name, wt in layers.items())


def style_objective(model: FeatureModel, styles: list[torch.Tensor], layers: dict[str, float], blend: list[float],
                    *, loss: str = "gram", scale=1.0, min_side: int = 1, seed: int = 0, masks=None,
                    style_masks=None, by_area: bool = True) -> Objective:
    """Σ_s b_s Σ_l w_l L(F_l, S_l) over style images and layers; L is the Gram loss or sliced Wasserstein.

    For each output size the style images are resized so their longer side is `scale` times the output's
    (at least `min_side` on their shorter side), so brush strokes keep their size relative to the output
    at every coarse-to-fine scale; `scale` is one number or one per style image.

    `masks` (gram only): one `[1, 1, H, W]` mask per style image, at the output's size (resized to each size the
    engine asks at): style s is compared through guided Gram matrices over its region (see the module docstring),
    its weight n b_s (n styles) times the region's area Σ m² / M (`by_area`; False: the region's own Gram loss, for
    judging). `style_masks`: None or one per style image (None entries: the whole image), at its size.
    """
    generator = torch.Generator(model.device).manual_seed(seed + 1)   # swd's projections
    step = size_step(model, list(layers))
    scales = style_scales(scale, len(styles))
    regions = masks and [_Mask(m, model.device) for m in masks]
    style_regions = [None if m is None else _Mask(m, model.device) for m in (style_masks or [None] * len(styles))]

    def resized(i, h, w):
        s = styles[i]
        return resize_image(s, *_style_size(s.shape[-2:], h, w, scales[i], min_side, step))

    @functools.cache
    def features(h, w):   # swd's targets: the style images' features
        return [tiled.features(model, resized(i, h, w), layers) for i in range(len(styles))]

    def grams(h, w, tiling):   # Gram's: Σ f fᵀ over the style images' positions, normalised, in tiles if need be
        out = []
        for i, m in enumerate(style_regions):
            x = resized(i, h, w)
            if m is None:
                found = tiled.sums(model, x, {n: lambda f, where: losses.gram_sum(f) for n in layers}, tiling)
                out.append({n: losses.normalize_gram(total, shape) for n, (total, shape) in found.items()})
                continue
            found = tiled.sums(model, x, {n: lambda f, where, s=stride(model, n): losses.guided_gram_sum(f, m.at(where, s))
                                          for n in layers}, tiling)
            out.append({n: losses.normalize_guided_gram(total, m.whole(x.shape[-2:], stride(model, n), shape))
                        for n, (total, shape) in found.items()})
        return out

    targets = per_size(grams)

    def guided(i, name):   # a sum over positions, each weighted by the region's mask there: it tiles
        m, s = regions[i], stride(model, name)

        def loss_fn(total, shape, where):
            whole = m.whole(where.size, s, shape)
            area = whole.square().sum() / (shape[-2] * shape[-1]) if by_area else 1.0
            return area * losses.gram_loss(losses.normalize_guided_gram(total, whole), targets(where)[i][name])
        return Sum(name, lambda f, where: losses.guided_gram_sum(f, m.at(where, s)), loss_fn)

    def term(i, name):
        if regions:
            return guided(i, name)
        if loss == "gram":   # a sum over positions: it tiles (objectives.Sum)
            return Sum(name, lambda f, where: losses.gram_sum(f),
                       lambda total, shape, where: losses.gram_loss(losses.normalize_gram(total, shape),
                                                                    targets(where)[i][name]))
        return lambda f, x: losses.sliced_wasserstein_loss(f[name], features(*x.shape[-2:])[i][name],
                                                           generator=generator)

    prefix, k = _prefixes(len(styles)), len(styles) if regions else 1
    return sum(k * b * wt * Objective(term(i, name), [name], name=f"{prefix[i]}:{name}")
               for i, b in enumerate(blend) for name, wt in layers.items())


def _prefixes(n: int) -> list[str]:
    """The style terms' name prefixes: "style", or "style1", "style2", … for several style images."""
    return ["style"] if n == 1 else [f"style{i + 1}" for i in range(n)]


class _Mask:
    """A region mask `[1, 1, H, W]` at every image size the engine asks at (resized) and every layer stride
    (`losses.pool_mask`), cached."""

    def __init__(self, mask: torch.Tensor, device):
        self.mask, self.cache = mask.to(device), {}

    def pooled(self, size, s: int) -> torch.Tensor:
        if (size, s) not in self.cache:
            self.cache[size, s] = losses.pool_mask(resize_mask(self.mask, *size), s)
        return self.cache[size, s]

    def at(self, where, s: int) -> torch.Tensor:
        """The mask at the feature positions of `where` (an `objectives.Region`: a tile's interior or the whole map)
        of a layer of stride s; a map a position shorter than the layer's (a network that rounds up) repeats its
        last row or column."""
        m = self.pooled(tuple(where.size), s)
        short = (max(0, where.rows.stop - m.shape[-2]), max(0, where.cols.stop - m.shape[-1]))
        if any(short):
            m = F.pad(m, (0, short[1], 0, short[0]), mode="replicate")
        return m[..., where.rows, where.cols]

    def whole(self, size, s: int, shape) -> torch.Tensor:
        """The mask over a whole feature map of `shape` for an image of `size`."""
        return self.at(Region(slice(0, shape[-2]), slice(0, shape[-1]), tuple(size)), s)


def resize_mask(mask: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """A mask `[N, 1, H, W]` resized to h x w: bilinear, antialiased when shrinking (an area average), in [0, 1]."""
    if tuple(mask.shape[-2:]) == (h, w):
        return mask
    return F.interpolate(mask, size=(h, w), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def _check_masks(masks, style_masks, n: int, style_loss: str) -> None:
    """InvtoolError for masks no run could use: counts that are not one per style image, masks with swd."""
    for found, what in ((masks, "masks"), (style_masks, "style masks")):
        if found is not None and len(found) != n:
            raise InvtoolError(f"{len(found)} {what} for {n} style image{'s' if n > 1 else ''}; give one "
                               f"--{what[:-1].replace(' ', '-')} per style image, in the same order")
    if style_masks is not None and masks is None:
        raise InvtoolError("style masks without masks: give one --mask per style image for where each style goes")
    if masks is not None and style_loss != "gram":
        raise InvtoolError(f"masks need the gram style loss (guided Gram matrices), not {style_loss}; "
                           "use --style-loss gram")


def _as_list(masks) -> list | None:
    """Masks as a list (one file or tensor alone is a list of one); None for none (None, an empty list)."""
    if masks is None or isinstance(masks, (list, tuple)) and not masks:
        return None
    return [masks] if isinstance(masks, (str, Path, torch.Tensor)) else list(masks)


def _read_masks(sources: list, sizes: list, what: str, notes: list[str], target: str) -> list:
    """Masks `[1, 1, h, w]` in [0, 1] from files or tensors (None entries stay None), each at its size in `sizes`:
    another size is resized with a note, a colour image read as luminance; an all-black mask is an InvtoolError."""
    out = []
    for i, (source, (h, w)) in enumerate(zip(sources, sizes)):
        if source is None:
            out.append(None)
            continue
        name = f"{what} {i + 1}" + (f" ({Path(source).name})" if isinstance(source, (str, Path)) else "")
        if isinstance(source, torch.Tensor) and source.dim() == 2:
            source = source[None, None]
        m, more = read_input(source, channels=1, what=name)
        if more:
            notes.append(f"{name}: colour image read as its luminance")
        if float(m.max()) <= 0:
            raise InvtoolError(f"{name} is all black: it covers no pixel; paint white where style {i + 1} goes")
        if tuple(m.shape[-2:]) != (h, w):
            notes.append(f"{name}: {m.shape[-1]}x{m.shape[-2]} resized to {w}x{h} ({target})")
            m = resize_mask(m, h, w)
        out.append(m)
    return out


def style_scales(scale, n: int) -> list[float]:
    """One style scale per style image from a number, "0.5,1.0" or a list: one value for all, or one per style."""
    try:
        values = [float(v) for v in (scale.split(",") if isinstance(scale, str)
                                     else scale if isinstance(scale, (list, tuple)) else [scale])]
    except (TypeError, ValueError):
        raise InvtoolError(f"bad style scale {scale!r}; give a number like 0.5, or one per style image like "
                           "0.5,1.0") from None
    if len(values) == 1:
        values = values * n
    if len(values) != n:
        raise InvtoolError(f"{len(values)} style scales for {n} style images; give one for all or one per style image")
    for v in values:
        if not v > 0 or not math.isfinite(v):
            raise InvtoolError(f"style scale must be positive, got {v:g}")
    return values


def per_size(compute):
    """`compute(h, w, tiling)` cached per image size: an objective's targets at each size the engine asks at,
    computed as the engine evaluates that size (`objectives.Region`: in one pass or in its tiles)."""
    cache = {}

    def get(where):
        if where.size not in cache:
            cache[where.size] = compute(*where.size, where.tiling)
        return cache[where.size]
    return get


def blend_weights(blend, n: int) -> list[float]:
    """Style blend weights normalised to sum to 1 (equal when None); "0.7,0.3" or a list."""
    if blend is None:
        return [1.0 / n] * n
    try:
        values = [float(b) for b in (blend.split(",") if isinstance(blend, str) else blend)]
    except ValueError:
        raise InvtoolError(f"bad style blend {blend!r}; give numbers like 0.7,0.3") from None
    if len(values) != n:
        raise InvtoolError(f"{len(values)} style blend weights for {n} style images; give one per style image")
    if min(values) < 0 or sum(values) <= 0:
        raise InvtoolError(f"style blend weights must be non-negative and not all zero, got {blend!r}")
    return [v / sum(values) for v in values]


def luminance_image(x: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """x's luminance Y as a gray RGB image; with `like`, Y is shifted and scaled to like's luminance mean and
    standard deviation (Gatys et al. 2016b: the style's luminance matched to the content's)."""
    y = rgb_to_yuv(x)[:, :1]
    if like is not None:
        ref = rgb_to_yuv(like)[:, :1]
        y = (y - y.mean()) * (ref.std() / y.std().clamp_min(1e-6)) + ref.mean()
    return y.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()


def with_chroma(x: torch.Tensor, color: torch.Tensor) -> torch.Tensor:
    """x's luminance with the chroma (U, V) of `color`, resized to x's size: RGB in [0, 1]."""
    chroma = rgb_to_yuv(resize_image(color, *x.shape[-2:]))[:, 1:]
    return yuv_to_rgb(torch.cat([rgb_to_yuv(x)[:, :1], chroma.to(x.device)], dim=1))


def _style_size(shape, h: int, w: int, scale: float, min_side: int, step: int = 1) -> tuple[int, int]:
    """(h, w) of a style image of `shape` for an h x w output: longer side = scale x the output's, aspect
    kept, the shorter side at least `min_side`, both multiples of `step` (the model's alignment)."""
    sh, sw = shape
    k = scale * max(h, w) / max(sh, sw)
    k = max(k, min_side / min(sh, sw))
    if step == 1:
        return max(1, round(sh * k)), max(1, round(sw * k))
    floor = step * math.ceil(min_side / step)   # the smallest multiple of step that is not under min_side
    return max(floor, step * round(sh * k / step)), max(floor, step * round(sw * k / step))


def _describe(image) -> str:
    return str(image) if isinstance(image, (str, Path)) else "tensor"
