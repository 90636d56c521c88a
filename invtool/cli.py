"""The `invtool` command: a click group with one thin function per command.

Each command parses its options, calls the Python API (the same functions a notebook uses) and
prints the result. Errors in the user's input are InvtoolError: one line, exit 1 (click's usage
errors exit 2); `--debug` shows the traceback instead.
"""
import json
import sys

import click

from .errors import InvtoolError


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


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except InvtoolError as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
        except Exception as e:  # an unexpected failure still gets one line unless --debug
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {type(e).__name__}: {e} (run with --debug for the traceback)", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="invtool")
@click.pass_context
def main(ctx, debug):
    """Look inside CNNs by optimising images against their features (any ONNX model)."""
    ctx.obj = {"debug": debug}


@main.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option("--size", type=SIZE, default="224", show_default=True, help="Input size for the shapes: S or WxH.")
@click.option("--preprocess", default=None, help="For models that do not bake it in: imagenet|caffe|tf|none.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def layers(model_path, size, preprocess, as_json):
    """List every layer of MODEL: name, aliases, op and output shape."""
    from .model import load_model

    infos = load_model(model_path, preprocess=preprocess, device="cpu").describe(size)
    if as_json:
        click.echo(json.dumps([{"name": i.name, "aliases": list(i.aliases), "op": i.op,
                                "shape": list(i.shape) if i.shape else None} for i in infos], indent=1))
        return
    rows = [(i.name, ", ".join(i.aliases), i.op, "x".join(map(str, i.shape)) if i.shape else "?") for i in infos]
    rows.insert(0, ("name", "aliases", "op", "shape"))
    widths = [max(len(r[k]) for r in rows) for k in range(3)]
    for r in rows:
        click.echo("  ".join(c.ljust(wd) for c, wd in zip(r[:3], widths)) + "  " + r[3])
