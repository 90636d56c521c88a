"""One module per op family; importing them registers their converters."""
from . import activation, conv, elementwise, linear, norm, pool, resize, shape  # noqa: F401
