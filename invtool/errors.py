"""The one exception type users see: a single line naming the problem and, where there is one, the fix."""
import difflib


class InvtoolError(Exception):
    """An error caused by the user's input; the CLI prints it as one line and exits 1."""


def close_matches(name: str, candidates, n: int = 5) -> str:
    """A ' (did you mean: a, b?)' suffix listing the candidates closest to `name`, or ''."""
    matches = difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(matches)}?)" if matches else ""
