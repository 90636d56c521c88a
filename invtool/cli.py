"""The `invtool` command: a click group with one thin function per command.

Each command parses its options, calls the Python API (the same functions a notebook uses) and
prints the result. Errors in the user's input are InvtoolError: one line, exit 1 (click's usage
errors exit 2); `--debug` shows the traceback instead.

Start-up: this module imports only click and invtool's light modules (errors, defaults), so that `--help`
takes a fraction of a second; the options' defaults come from `invtool.defaults`, which the Python API
reads too. A command imports its API module (and with it torch, onnx) when it runs.
"""
import functools
import json
import os
import sys
import time

import click

from . import defaults
from .defaults import DEFAULT_MODEL
from .errors import InvtoolError, OneLineErrors

_IMPORTED = time.perf_counter()   # the fallback for the process's start, where /proc is not there


class Size(click.ParamType):
    """A size given as S (square) or WxH, parsed to (H, W)."""

    name = "size"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            parts = [int(v) for v in str(value).lower().split("x")]
            if len(parts) in (1, 2) and min(parts) > 0:
                w, h = parts if len(parts) == 2 else parts * 2
                return h, w
        except ValueError:
            pass
        self.fail(f"{value!r} is not a size; use S or WxH, e.g. 224 or 512x384", param, ctx)


SIZE = Size()


class SideOrSize(click.ParamType):
    """N (an image's longer side, or a square tile) -> int, or WxH -> (H, W), as the Python API takes it."""

    name = "side-or-size"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, tuple)):
            return value
        return int(value) if str(value).isdigit() and int(value) > 0 else SIZE.convert(value, param, ctx)


SIDE_OR_SIZE = SideOrSize()


# --- options every optimising command shares (stack them; defaults come from the Python API) -------

def output_options(f):
    """-o/--output, --report, --quiet."""
    f = click.option("--quiet", "-q", is_flag=True, help="No progress bar.")(f)
    f = click.option("--report", is_flag=True, help="Also write OUTPUT.html: inputs, result, snapshots, loss curve.")(f)
    return click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
                        help="Output PNG; OUTPUT.json (the run record) is written next to it.")(f)


def model_options(f):
    """--model, --preprocess, --pool, --device, --dtype. The command gets a loaded model when --dtype is given,
    since the compute dtype is fixed when a model loads (the Python API: `load_model(path, dtype=...)`)."""
    command = f

    @functools.wraps(command)
    def with_dtype(*args, dtype=None, **kwargs):
        if dtype:
            from .model import load_model
            path = kwargs.get("model_path") or kwargs["model"]
            kwargs["model"] = load_model(path, preprocess=kwargs["preprocess"], device=kwargs["device"], dtype=dtype)
            if "model_path" in kwargs:
                kwargs["model_path"] = None
        return command(*args, **kwargs)

    f = click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16", "auto"]), default=None,
                     help="Compute dtype  [default: auto for visualize and atlas, else float32; a float16 model's "
                          "weights are upcast]. auto: bfloat16 on a CPU with bfloat16 instructions (2x faster), "
                          "else float32. float16: native half compute, for CUDA GPUs.")(with_dtype)
    f = click.option("--device", default=None, help="torch device  [default: cuda when present, else cpu]")(f)
    f = click.option("--pool", type=click.Choice(["max", "avg"]), default="max", show_default=True,
                     help="avg swaps every max pooling for average pooling (smoother results, Gatys).")(f)
    f = click.option("--preprocess", default=None,
                     help="For ONNX models that do not bake it in: imagenet|caffe|tf|none, or fields such as "
                          "mean=0.5,std=0.5 (per channel: mean=0.485/0.456/0.406).")(f)
    return click.option("--model", default=DEFAULT_MODEL, show_default=True,
                        type=click.Path(dir_okay=False), help="ONNX model file.")(f)


def optimizer_options(params: dict):
    """--optimizer, --steps, --lr, --lr-schedule, --tol, --scales, --seed, --save-every, for those of them
    that `params` names, with its defaults: a command's dict in `invtool.defaults`, from which its Python API
    function takes the same defaults (one place for them)."""
    options = [
        ("optimizer", dict(type=click.Choice(defaults.OPTIMIZERS),
                           help="adam, sgd (momentum 0.9), lbfgs (its line search on the device) or lbfgs-torch "
                           "(torch's, strong Wolfe)"
                           " [default: the command's, see its Python API]")),
        ("steps", dict(type=click.IntRange(1), help="Forward+backward passes, over all scales.")),
        ("lr", dict(type=float, help="Learning rate (adam, sgd) or initial step (lbfgs).")),
        ("lr_schedule", dict(type=click.Choice(defaults.LR_SCHEDULES), help="Learning-rate schedule over each scale.")),
        ("tol", dict(type=float, help="Stop a scale when the loss improves by less than this fraction over 20 steps.")),
        ("scales", dict(type=click.IntRange(1), help="Coarse-to-fine: optimise at 1/2^(K-1) size first, then double.")),
        ("work_size", dict(type=click.IntRange(0), help="Larger outputs start at this side and are refined at each "
                                                        "doubling, with a quarter of the steps of the size before "
                                                        "(0: never).")),
        ("seed", dict(type=int, help="Random seed: the same seed gives the same image.")),
        ("save_every", dict(type=click.IntRange(0), help="Keep a snapshot every N steps for the report (0: none).")),
    ]

    def decorate(f):
        for name, kw in reversed(options):
            if name in params:
                f = click.option("--" + name.replace("_", "-"), default=params[name], show_default=True, **kw)(f)
        return click.option("--no-graphs", is_flag=True, expose_value=False, callback=_no_graphs,
                            help="Evaluate each step eagerly: no CUDA graphs (on CUDA they are captured once per "
                                 "scale and replayed).")(f)
    return decorate


def _no_graphs(ctx, param, value):
    """--no-graphs: CUDA graphs off for the whole process (optimize.GRAPHS), whatever the command."""
    if value:
        from . import optimize
        optimize.GRAPHS = False


def memory_option(f):
    """--memory: texture and style (whose objectives tile), visualize and atlas (whose batches shrink to fit)."""
    return click.option("--memory", default=None, help="Memory budget, e.g. 2G or 512M: past it the image is "
                        "optimised in tiles (exactly: the same loss and gradient) and L-BFGS keeps fewer pairs or "
                        "gives way to Adam; visualize's and atlas's batches are made smaller to fit it; the record "
                        "says  [default: what the device has free]")(f)


def batch_option(default, help: str):
    """--batch auto|N for visualize and atlas; the Python API checks the value (one line when it is bad)."""
    return click.option("--batch", default=str(default), show_default=True, metavar="auto|N", help=help)


def process_start() -> float:
    """When this process started, on `time.perf_counter`'s clock: from /proc/self/stat where there is one
    (Linux, to 10 ms), else when this module was imported."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])   # field 22, starttime: clock ticks after boot
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
        return time.perf_counter() - age
    except (OSError, ValueError, IndexError, AttributeError):
        return _IMPORTED


class FirstStep:
    """A step callback that notes when the run's first optimisation step has been evaluated. The record's
    `time_to_first_step` is the seconds from the start of the process to then: interpreter start-up,
    imports, loading the model, reading the inputs, planning and the first forward and backward pass (on a
    GPU, finished: the first call synchronises once)."""

    def __init__(self):
        self.at: float | None = None

    def __call__(self, step) -> None:
        if self.at is None:
            if step.loss.device.type == "cuda":
                import torch
                torch.cuda.synchronize(step.loss.device)
            self.at = time.perf_counter()


def finish(run, output, report: bool, first_step: FirstStep | None = None) -> None:
    """Write the run's image, record (and report), say what was written; exit 130 if interrupted."""
    if first_step is not None and first_step.at is not None:
        run.record["time_to_first_step"] = round(first_step.at - process_start(), 3)
    paths = run.save(output, report=report)
    rec = run.record
    click.echo(f"wrote {', '.join(map(str, paths))}")
    if rec.get("steps"):
        click.echo(f"{rec['steps']} steps in {rec['wall_time']:.1f} s ({rec['steps_per_sec']:.2f} steps/s), "
                   f"loss {rec['final_loss']:.4g}" + (f" ({rec['stop_reason']})" if rec.get("stop_reason") else ""))
    if run.interrupted:
        click.echo("interrupted: the best image so far was written", err=True)
        sys.exit(130)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="invtool")
@click.pass_context
def main(ctx, debug):
    """Look inside CNNs by optimising images against their features (any ONNX model)."""
    ctx.obj = {"debug": debug}


@main.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option("--size", type=SIZE, default="224", show_default=True, help="Input size for the shapes: S or WxH.")
@click.option("--preprocess", default=None, help="For models that do not bake it in: imagenet|caffe|tf|none, or "
              "fields such as mean=0.5,std=0.5.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--stages", is_flag=True, help="Only the stages (the last activation before each change of "
              "resolution), with their strides: what the commands' default layers are chosen from.")
def layers(model_path, size, preprocess, as_json, stages):
    """List every layer of MODEL: name, aliases, op and output shape (and stride, with --stages)."""
    from .geometry import stages as find_stages
    from .model import load_model

    model = load_model(model_path, preprocess=preprocess, device="cpu")
    infos = model.describe(size)
    strides = {}
    if stages:
        strides = {s.name: s.stride for s in find_stages(model)}
        infos = [i for i in infos if i.name in strides]
    if as_json:
        click.echo(json.dumps([{"name": i.name, "aliases": list(i.aliases), "op": i.op,
                                "shape": list(i.shape) if i.shape else None,
                                **({"stride": strides[i.name]} if stages else {})} for i in infos], indent=1))
        return
    rows = [(i.name, ", ".join(i.aliases), i.op, "x".join(map(str, i.shape)) if i.shape else "?")
            + ((str(strides[i.name]),) if stages else ()) for i in infos]
    rows.insert(0, ("name", "aliases", "op", "shape") + (("stride",) if stages else ()))
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(c.ljust(wd) for c, wd in zip(r, widths)).rstrip())


# --- texture -------------------------------------------------------------------------------------


@main.command()
@click.argument("source", type=click.Path(dir_okay=False))
@output_options
@model_options
@click.option("--layers", default=None, help="Layers whose statistics to match, LAYER[:WEIGHT],… (each once; "
              "unweighted 1; weights divided by their sum)  [default: the model's, see `invtool layers MODEL "
              "--stages`; VGG16: " + ",".join(defaults.GATYS_LAYERS) + "]")
@click.option("--layer-weights", default=defaults.TEXTURE["layer_weights"], show_default=True,
              help="A weighting over --layers given without weights: uniform|increasing|decreasing|inverse-channels.")
@click.option("--loss", type=click.Choice(defaults.LOSSES), default=defaults.TEXTURE["loss"], show_default=True,
              help="gram (Gatys), sorted (per-channel sorted activations), swd (sliced Wasserstein).")
@click.option("--gram-norm", type=click.Choice(["gatys", "pixels", "elements", "none"]),
              default=defaults.TEXTURE["gram_norm"], show_default=True,
              help="Gram normalisation: gatys is 1/(4 N² M²).")
@click.option("--size", type=click.IntRange(1), default=None, help="Resize the source: its longer side, in pixels.")
@click.option("--out-size", type=SIZE, default=None, help="Output size S or WxH  [default: the source's]")
@click.option("--tile", is_flag=True, help="Make the output wrap around seamlessly (tileable).")
@optimizer_options(defaults.TEXTURE)
@memory_option
@click.option("--sweep", is_flag=True, help="One run per layer set conv1_1, +pool1, … +pool4, in one contact sheet.")
@click.option("--sweep-layers", default=None, help='Layer sets to sweep, ";"-separated: "conv1_1;conv1_1,pool1".')
@click.option("--sweep-weights", default=None, help='Weightings to sweep, ";"-separated: "uniform;increasing".')
def texture(source, output, report, quiet, model, preprocess, pool, device, layers, layer_weights, loss,
            gram_norm, size, out_size, tile, sweep, sweep_layers, sweep_weights, **optim):
    """Synthesise a texture like SOURCE (Gatys et al. 2015), of any size, optionally tileable."""
    from .record import check_output
    from .texture import synthesize_texture, texture_sweep

    check_output(output, source)
    first_step = FirstStep()
    kwargs = dict(model=model, preprocess=preprocess, pool=pool, device=device, loss=loss, gram_norm=gram_norm,
                  size=size, out_size=out_size, tile=tile, progress=not quiet, callback=first_step, **optim)
    if sweep or sweep_layers or sweep_weights:
        run = texture_sweep(source, layer_weights=layer_weights.strip(),
                            layer_sets=sweep_layers.split(";") if sweep_layers else None,
                            weightings=[w.strip() for w in sweep_weights.split(";")] if sweep_weights else None,
                            **kwargs)
    else:
        run = synthesize_texture(source, layers=layers or None, layer_weights=layer_weights.strip(), **kwargs)
    finish(run, output, report, first_step)


# --- visualize -----------------------------------------------------------------------------------

_VIS = defaults.VISUALIZE


@main.command("visualize")
@output_options
@model_options
@click.option("--layer", default=None, help="The layer: its channels' tiles, or alone its DeepDream energy.")
@click.option("--channels", default=None, help="One tile per channel of --layer: e.g. 0-15 or 3,7,12-15.")
@click.option("--objective", "objectives", multiple=True,
              help='One tile per objective (repeatable), e.g. "channel:conv4_1:12 - 0.5*channel:conv4_1:40"; '
                   "terms channel:LAYER:INDEX, neuron:LAYER:INDEX (centre unit), layer:LAYER (energy).")
@click.option("--param", type=click.Choice(defaults.VISUALIZE_PARAMS), default=None,
              help="fourier (decorrelated colour, 1/f scaling) or pixel  [default: fourier; pixel with --image]")
@click.option("--size", default=str(_VIS["size"]), show_default=True, type=SIDE_OR_SIZE,
              help="Tile size: N (square; with --image its longer side) or WxH.")
@click.option("--image", type=click.Path(dir_okay=False), default=None,
              help="Start from this image instead of noise (DeepDream).")
@click.option("--octaves", type=click.IntRange(1), default=_VIS["octaves"], show_default=True,
              help="DeepDream octaves: start this many octave-scale steps smaller, carry the detail up.")
@click.option("--octave-scale", type=click.FloatRange(1, min_open=True), default=_VIS["octave_scale"],
              show_default=True, help="Size ratio between octaves.")
@click.option("--jitter", type=click.IntRange(0), default=_VIS["jitter"], show_default=True,
              help="Random shift of up to this many pixels at each step.")
@click.option("--scale-jitter", type=click.FloatRange(0, 1, max_open=True), default=_VIS["scale_jitter"],
              show_default=True, help="Random zoom by up to this fraction at each step.")
@click.option("--rotate", type=click.FloatRange(0), default=_VIS["rotate"], show_default=True,
              help="Random rotation of up to this many degrees at each step.")
@click.option("--cols", type=click.IntRange(1), default=None, help="Grid columns  [default: up to 4]")
@optimizer_options(_VIS)
@batch_option(_VIS["batch"], "Tiles optimised together, one batched run per group: auto (as many as the memory "
              "budget holds, on the CPU at most invtool.memory.CPU_BATCH) or N (at most N, fewer with a note when "
              "N do not fit).")
@memory_option
def visualize_command(output, report, quiet, model, preprocess, pool, device, objectives, size, image, **options):
    """Images that excite each channel of a layer (activation maximisation), or DeepDream on --image.

    \b
      invtool visualize --layer conv4_1 --channels 0-15 -o grid.png
      invtool visualize --objective "channel:conv4_1:12 - 0.5*channel:conv4_1:40" -o mix.png
      invtool visualize --layer conv4_2 --image photo.jpg --octaves 4 -o dream.png
    """
    from .record import check_output
    from .visualization import visualize as visualize_api

    check_output(output, image)
    first_step = FirstStep()
    run = visualize_api(objectives=list(objectives) or None, model=model, preprocess=preprocess, pool=pool,
                        device=device, size=size, image=image, progress=not quiet, callback=first_step, **options)
    finish(run, output, report, first_step)


# --- invert --------------------------------------------------------------------------------------

_INV = defaults.INVERT


@main.command("invert")
@click.argument("image", type=click.Path(dir_okay=False))
@output_options
@model_options
@click.option("--layer", "layers", multiple=True,
              help="Layer to reconstruct from, LAYER[:WEIGHT] (unweighted 1, weights as given); repeat or "
                   "comma-list for several, each layer once (--layer conv3_1 --layer conv5_1:0.5)  [default: the "
                   "model's middle stage; VGG16: conv3_1]")
@click.option("--compare", default=None,
              help="One run per layer of this comma list (e.g. conv1_1,conv3_1,conv5_1,fc6), one contact sheet "
                   "and table; 'stages' for the model's stages.")
@click.option("--size", default=str(_INV["size"]), show_default=True, type=SIDE_OR_SIZE,
              help="Resize the image first: N (its longer side) or WxH; fc layers need their own size.")
@click.option("--alpha", type=float, default=_INV["alpha"], show_default=True, help="Exponent of the α-norm prior.")
@click.option("--alpha-weight", type=float, default=_INV["alpha_weight"], show_default=True,
              help="Weight of the α-norm prior (0: off).")
@click.option("--tv-beta", type=float, default=_INV["tv_beta"], show_default=True,
              help="Exponent β of the total-variation prior (2 smooth, 1 keeps edges).")
@click.option("--tv-weight", type=float, default=_INV["tv_weight"], show_default=True,
              help="Weight of the total-variation prior (0: off).")
@click.option("--jitter", type=click.IntRange(0), default=_INV["jitter"], show_default=True,
              help="Random shift of up to this many pixels at each step (with --optimizer adam).")
@click.option("--init", default=_INV["init"], show_default=True,
              help=f"Starting image: {'|'.join(defaults.INVERT_INITS)} (uniform noise, flat gray, smooth random "
                   "colours) or an image file, e.g. an earlier result to go on from.")
@click.option("--restarts", type=click.IntRange(1), default=_INV["restarts"], show_default=True,
              help="Optimise K starts together in one batch and merge them where each matches the features best "
                   "(slower per step, better on deep layers; 1: one run).")
@click.option("--param", type=click.Choice(defaults.INVERT_PARAMS), default=_INV["param"], show_default=True,
              help="What is optimised: a Laplacian pyramid (regions get their colour right) or the pixels.")
@optimizer_options(_INV)
def invert_command(image, output, report, quiet, model, preprocess, pool, device, layers, compare, **options):
    """Reconstruct IMAGE from its features at a layer (Mahendran & Vedaldi): what does the layer still know?

    \b
      invtool invert photo.jpg --layer conv3_1 -o conv3_1.png --report
      invtool invert photo.jpg --layer conv3_1 --layer fc6:0.5 --model vgg16-with-classifier.onnx -o mix.png
      invtool invert photo.jpg --compare conv1_1,conv2_1,conv3_1,conv4_1,conv5_1 --size 128 -o compare.png
    """
    from .inversion import compare_layers, invert as invert_api, metrics_table
    from .record import check_output

    check_output(output, image)
    first_step = FirstStep()
    kwargs = dict(model=model, preprocess=preprocess, pool=pool, device=device, progress=not quiet,
                  callback=first_step, **options)
    if compare:
        run = compare_layers(image, layers=None if compare == "stages" else compare, **kwargs)
        runs = run.record["runs"]
    else:
        run = invert_api(image, layers=",".join(layers) or None, **kwargs)
        runs = [run.record]
    click.echo(metrics_table(runs))
    if any(r["stop_reason"].startswith("non-finite") for r in runs):
        run.save(output, report=report)
        raise InvtoolError(f"{runs[-1]['stop_reason']}: the last finite image was written to {output}; "
                           "lower --lr or the prior weights")
    finish(run, output, report, first_step)


# --- style ---------------------------------------------------------------------------------------

_STY = defaults.STYLE


def video_options(f):
    """A clip as CONTENT (a video file or a folder of frames: invtool.video): its options, and CONTENT and -o may be
    folders. Defaults None: stylize_video's (invtool/video.py)."""
    before = len(getattr(f, "__click_params__", []))
    for name, kw in reversed([
            ("temporal_weight", dict(type=click.FloatRange(0), help="Clip: weight of the temporal term  [default: 300]")),
            ("frame_steps", dict(type=click.IntRange(1), help="Clip: steps of each frame after a chunk's first (which "
                                                              "takes --steps)  [default: 30]")),
            ("chunk", dict(type=click.IntRange(0), help="Clip: frames per job (0: one job)  [default: 24]")),
            ("overlap", dict(type=click.IntRange(0), help="Clip: frames shared by consecutive chunks, cross-faded  "
                                                          "[default: 4]")),
            ("workers", dict(type=click.IntRange(1), help="Clip: N Ray workers run the chunks  [default: 1, in this "
                                                          "process]")),
            ("address", dict(help="Clip: run the chunks on the Ray cluster at this address.")),
            ("fps", dict(type=click.FloatRange(0, min_open=True), help="Clip: output frame rate  [default: the "
                                                                       "input's; 24 for a folder]"))]):
        f = click.option("--" + name.replace("_", "-"), name, default=None, **kw)(f)
    f.__click_params__[:] = f.__click_params__[before:] + f.__click_params__[:before]   # listed last in --help
    for p in f.__click_params__:
        if p.name in ("content", "output"):
            p.type = click.Path()
    return f


VIDEO_OPTIONS = ("temporal_weight", "frame_steps", "chunk", "overlap", "workers", "address", "fps")


def style_clip(content, styles, output, report, quiet, **kwargs) -> None:
    """`invtool style CLIP.mp4 STYLE -o OUT.mp4`: invtool.video.stylize_video; exit 130 after Ctrl-C."""
    from .video import stylize_video

    try:
        run = stylize_video(content, list(styles), output=output, report=report, progress=not quiet, **kwargs)
    except KeyboardInterrupt:
        click.echo("interrupted: the finished frames are kept; the same command goes on from there", err=True)
        sys.exit(130)
    m = run.record["metrics"]
    click.echo(f"wrote {', '.join(map(str, run.paths))}")
    click.echo(f"{m['frames']} frames ({m['frames_computed']} computed, {m['frames_cached']} from the cache) in "
               f"{run.record['wall_time']:.1f} s; warping error {m['warping_error'] or 0:.4g} (the input's "
               f"{m['input_warping_error'] or 0:.4g})")


@main.command("style")
@video_options
@click.argument("content", type=click.Path(dir_okay=False))
@click.argument("styles", metavar="STYLE [STYLE…]", nargs=-1, required=True, type=click.Path(dir_okay=False))
@output_options
@model_options
@click.option("--content-layers", default=None,
              help="Layers whose features to keep, LAYER[:WEIGHT],… (each once; unweighted 1; weights as given)  "
                   f"[default: the model's middle stage; VGG16: {','.join(defaults.CONTENT_LAYERS)}]")
@click.option("--style-layers", default=None,
              help="Layers whose statistics to take, e.g. conv1_1:1,conv2_1:0.8 (each once; unweighted 1; weights "
                   "divided by their sum)  "
                   f"[default: one per stage of the model; VGG16: {','.join(defaults.STYLE_LAYERS)}]")
@click.option("--content-weight", type=float, default=_STY["content_weight"], show_default=True,
              help="Weight of the content term (mean squared feature difference).")
@click.option("--style-weight", type=float, default=None, help="Weight of the style term  [default: " + ", ".join(
                  f"{w:g} for {k}" for k, w in defaults.STYLE_WEIGHTS.items()) + "]")
@click.option("--tv-weight", type=float, default=_STY["tv_weight"], show_default=True,
              help="Total variation per pixel (smoothness; 0: off).")
@click.option("--style-loss", type=click.Choice(defaults.STYLE_LOSSES), default=_STY["style_loss"], show_default=True,
              help="gram (Gatys) or swd (sliced Wasserstein).")
@click.option("--init", default=_STY["init"], show_default=True,
              help="content, style, noise, blend:W (W x content + noise) or blend:W:style.")
@click.option("--preserve-color", type=click.Choice(defaults.COLOR_MODES), default=_STY["preserve_color"],
              show_default=True, help="Keep the content's colours: style on luminance only, or the style's "
                                      "histogram matched to the content first.")
@click.option("--style-blend", default=None, help="One weight per STYLE, e.g. 0.7,0.3  [default: equal]")
@click.option("--style-scale", default=str(_STY["style_scale"]), show_default=True,
              help="Style images' longer side relative to the output's: one for all, or one per STYLE, e.g. 0.5,1.0.")
@click.option("--mask", "masks", multiple=True, type=click.Path(dir_okay=False),
              help="Where a STYLE goes: one greyscale image per STYLE, in order, white where it applies (guided Gram "
                   "matrices; resized to the output). Pixels no mask covers keep only the content.")
@click.option("--style-mask", "style_masks", multiple=True, type=click.Path(dir_okay=False),
              help="The part of each STYLE image to take the style from: one per STYLE, with --mask  "
                   "[default: the whole image]")
@click.option("--size", default=str(_STY["size"]), show_default=True, type=SIDE_OR_SIZE,
              help="Output size: N (the content's longer side, resized to it) or WxH.")
@optimizer_options(_STY)
@memory_option
def style_command(content, styles, output, report, quiet, model, preprocess, pool, device, **options):
    """Paint CONTENT in the style of one or more STYLE images (Gatys et al. 2016).

    \b
      invtool style photo.jpg painting.jpg -o styled.png --report
      invtool style photo.jpg a.jpg b.jpg --style-blend 0.7,0.3 --preserve-color luminance -o mix.png
      invtool style photo.jpg painting.jpg --size 1024 --scales 3 -o large.png
      invtool style clip.mp4 painting.jpg -o styled.mp4 --report     # a video, or a folder of frames
    """
    from .record import check_output
    from .style import transfer_style
    from .video import is_clip

    clip = {k: options.pop(k) for k in VIDEO_OPTIONS}
    if is_clip(content):   # a video file or a folder of frames
        return style_clip(content, styles, output, report, quiet, model=model, preprocess=preprocess, pool=pool,
                          device=device, **{k: v for k, v in clip.items() if v is not None}, **options)
    if given := [k for k, v in clip.items() if v is not None]:
        raise InvtoolError(f"--{given[0].replace('_', '-')} applies to a clip (a video file or a folder of frames)")
    check_output(output, content, *styles, *options["masks"], *options["style_masks"])
    first_step = FirstStep()
    run = transfer_style(content, list(styles), model=model, preprocess=preprocess, pool=pool, device=device,
                         progress=not quiet, callback=first_step, **options)
    finish(run, output, report, first_step)


# --- atlas ---------------------------------------------------------------------------------------

_ATL = defaults.ATLAS


@main.command("atlas")
@click.argument("model_path", metavar="[MODEL]", required=False, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="The site's folder: new, empty, or an earlier atlas (its finished units are reused).")
@click.option("--layers", default=None, help="Comma-separated layers, or all: every conv layer (VGG16: conv1_1 … "
              "conv5_3)  [default: the model's stages; VGG16: conv1_1,conv2_1,conv3_1,conv4_1,conv5_1]")
@click.option("--channels", default=None, help="Channels of every layer, e.g. 0-15 or 3,7,12-15  [default: all]")
@click.option("--images", type=click.Path(file_okay=False), default=None,
              help="A folder of images for the dataset examples (unreadable files are skipped and listed).")
@click.option("--top", type=click.IntRange(0), default=_ATL["top"], show_default=True,
              help="Dataset examples per unit.")
@optimizer_options(_ATL)   # --steps, --seed (serially or in parallel, the same images)
@click.option("--size", type=click.IntRange(16), default=_ATL["size"], show_default=True,
              help="Side of each visualisation, in pixels.")
@batch_option(_ATL["batch"], "Channels per job (one batched run of two tiles a channel): auto (per layer, as many "
              "as the memory budget holds, on the CPU half of invtool.memory.CPU_BATCH) or N (at most N). It "
              "shapes the images, --workers does not.")
@memory_option
@click.option("--example-size", type=click.IntRange(16), default=_ATL["example_size"], show_default=True,
              help="Images are resized and centre-cropped to this side for the dataset pass.")
@click.option("--workers", type=click.IntRange(1), default=_ATL["workers"], show_default=True,
              help="1: in this process; N: N Ray workers on this machine (pip install 'invtool[ray]').")
@click.option("--address", default=None, help="Run the jobs on the Ray cluster at this address instead.")
@model_options
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def atlas_command(model_path, model, output, layers, quiet, **options):
    """Build a browsable offline atlas of MODEL's units (or --model's) in the folder -o: index.html, a page
    per layer and per unit (what excites and suppresses it, the dataset examples that drive it), a JSON per
    layer.

    \b
      invtool atlas models/vgg16.onnx -o out/atlas --layers conv3_1 --channels 0-15 --images photos/
      invtool atlas models/vgg16.onnx -o out/atlas --workers 2        # on a local Ray
      invtool atlas models/vgg16.onnx -o out/full --layers all        # every channel of every conv layer
    """
    from .atlas import build_atlas

    try:
        rec = build_atlas(model_path or model, output, layers=layers or None, progress=not quiet,
                          **options)
    except KeyboardInterrupt:
        click.echo(f"interrupted: the finished units are kept in {output}; the same command goes on from there",
                   err=True)
        sys.exit(130)
    units, examples = rec["units"], rec["examples"]
    click.echo(f"wrote {output}/index.html: {len(rec['layers'])} layers, {units['total']} units "
               f"({units['computed']} computed, {units['cached']} from the cache) in {rec['wall_time']:.1f} s")
    if examples:
        click.echo(f"dataset examples: {examples['images']} images on {examples['engine']} "
                   f"({examples['images_per_sec']} images/s)" +
                   (f"; skipped {', '.join(s['file'] for s in examples['skipped'])}" if examples["skipped"] else ""))
