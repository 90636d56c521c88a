"""One module per op family; importing them registers their converters."""
from . import activation, conv, elementwise, linear, norm, pool, quant, resize, shape  # noqa: F401
