"""The atlas's static site: HTML pages from templates, and the JSON they are made from.

Pure: it takes the atlas as data (a dict, see `invtool.atlas.build_atlas`) whose image paths are
relative to the site's folder, and writes `index.html` (the model, its provenance, the layers, a search
box for `layer:channel`), `atlas.json` (everything but the units), `layers/SLUG.html` and
`layers/SLUG.json` (a grid of every unit, and the layer's data), and `units/SLUG/CHANNEL.html`. It knows
nothing of how the images were made. The pages need no network: everything is relative links, the
script and style are inline. Templates are Jinja2 with autoescaping, so no name can break a page.

Example:
    >>> write_site("out/atlas", atlas)
"""
import hashlib
import json
import re
from pathlib import Path

import jinja2

from ..image import write_atomic

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("invtool.atlas", "templates"),
                          autoescape=jinja2.select_autoescape(default=True), undefined=jinja2.StrictUndefined,
                          trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def slugs(names) -> dict[str, str]:
    """A file-name-safe, distinct slug per name: the name itself where it is safe, else its safe characters
    and a short hash (ONNX names hold `/`, `:` and the like)."""
    out = {}
    for name in names:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._-") or "layer"
        out[name] = safe if safe == name else f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return out


def write_site(root, atlas: dict) -> list[Path]:
    """Write the pages and JSON files of `atlas` under `root`; returns the paths written."""
    root = Path(root)
    layers = atlas["layers"]
    common = {k: v for k, v in atlas.items() if k != "layers"}
    written = [write_atomic(root / "atlas.json", _json({**common, "layers": [
        {k: v for k, v in layer.items() if k != "units"} | {"units": len(layer["units"])} for layer in layers]}))]
    written.append(_page(root / "index.html", "index.html", **common, layers=layers, search=_search(layers)))
    for i, layer in enumerate(layers):
        neighbours = dict(prev=layers[i - 1] if i else None, next=layers[i + 1] if i + 1 < len(layers) else None)
        written.append(write_atomic(root / "layers" / f"{layer['slug']}.json", _json(layer)))
        written.append(_page(root / "layers" / f"{layer['slug']}.html", "layer.html", **common, layer=layer,
                             **neighbours))
        units = layer["units"]
        for k, unit in enumerate(units):
            written.append(_page(root / unit["page"], "unit.html", **common, layer=layer, unit=unit,
                                 prev=units[k - 1] if k else None, next=units[k + 1] if k + 1 < len(units) else None))
    return written


def _search(layers) -> dict:
    """What the index's search box knows: every name of each layer (its own, its tensor, the aliases) ->
    the layer's slug and channels."""
    found = {}
    for layer in layers:
        entry = {"slug": layer["slug"], "channels": [u["channel"] for u in layer["units"]]}
        for name in [layer["name"], layer["tensor"], *layer.get("aliases", [])]:
            found.setdefault(name, entry)
    return found


def _page(path: Path, template: str, **context) -> Path:
    return write_atomic(path, _ENV.get_template(template).render(**context).encode())


def _json(data) -> bytes:
    return json.dumps(data, indent=1).encode()
