"""The `invtool` command: a click group with one thin function per command.

Each command parses its options, calls the Python API (the same functions a notebook uses) and
prints the result. Errors in the user's input are InvtoolError: one line, exit 1 (click's usage
errors exit 2); `--debug` shows the traceback instead.
"""
import sys

import click

from .errors import InvtoolError


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
