"""The one exception type users see: a single line naming the problem and, where there is one, the fix."""
import difflib
import sys

import click


class InvtoolError(Exception):
    """An error caused by the user's input; the CLI prints it as one line and exits 1."""


def close_matches(name: str, candidates, n: int = 5) -> str:
    """A ' (did you mean: a, b?)' suffix listing the candidates closest to `name`, or ''."""
    matches = difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(matches)}?)" if matches else ""


class OneLineErrors(click.Group):
    """A click group whose failures print one line `error: …` and exit 1 (click's usage errors exit 2).

    Unexpected exceptions get their type named and a hint; `--debug` (ctx.obj["debug"]) re-raises.
    Shared by `invtool` and `python -m exporters`.
    """

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            if isinstance(e, InvtoolError):
                click.echo(f"error: {e}", err=True)
            else:
                click.echo(f"error: {type(e).__name__}: {e} (run with --debug for the traceback)", err=True)
            sys.exit(1)
