"""The run record: every command writes its image, a same-name `.json` that makes the run reproducible,
and with `report=True` a same-name `.html` page that opens offline (images embedded as base64).

Example:
    >>> rec = build_record("texture", options, result, model=model, layers=layers, notes=notes)
    >>> save_run("out/texture.png", result.image, rec, report=True, inputs={"source": src})
    [PosixPath('out/texture.png'), PosixPath('out/texture.json'), PosixPath('out/texture.html')]
"""
import base64
import datetime
import html
import io
import json
import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import torch

from .errors import InvtoolError
from .image import encode_png, write_atomic
from .optimize import Result

_PACKAGES = ("invtool", "torch", "onnx", "numpy", "opencv-python-headless", "scikit-image")


@dataclass
class Run:
    """What each command's Python API returns: the image, its record, and what the report shows.

    Example:
        >>> run = invtool.synthesize_texture("brick.png", steps=100)
        >>> run.save("out/brick.png", report=True)
    """
    image: torch.Tensor
    record: dict
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    snapshots: list[tuple[int, torch.Tensor]] = field(default_factory=list)

    @property
    def interrupted(self) -> bool:
        return bool(self.record.get("interrupted"))

    def save(self, path, report: bool = False) -> list[Path]:
        """Write the image, its `.json` record and with `report` its `.html` page (see `save_run`)."""
        return save_run(path, self.image, self.record, report=report, inputs=self.inputs, snapshots=self.snapshots)


def check_output(path, *inputs) -> None:
    """InvtoolError when the output path is one of the input files (it would be overwritten)."""
    out = Path(path).resolve()
    for p in inputs:
        if isinstance(p, (str, Path)) and Path(p).resolve() == out:
            raise InvtoolError(f"-o {path} is the input image {p}; choose another output path")


def package_versions() -> dict[str, str]:
    """Python's and the main packages' versions (what a rerun needs to match)."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def record_header(command: str, options: dict, model=None) -> dict:
    """What every record starts with (a run's and the atlas's): the command, when, how it was called, its
    options, the model's card and the versions of what ran it."""
    return {
        "command": command,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv,
        "options": options,
        "model": None if model is None else model.card(),
        "versions": package_versions(),
    }


def build_record(command: str, options: dict, result: Result, *, model=None, layers=None,
                 metrics: dict | None = None, notes: list[str] | None = None, **extra) -> dict:
    """The JSON-ready record of one run, built once from what it returns: options, model identity, versions,
    histories, timings, metrics, and the command's own fields (`extra`, e.g. its layer weights). Sizes are
    `[h, w]`, as everywhere in records."""
    rec = {
        **record_header(command, options, model),
        "layers": list(layers or []),
        "seed": options.get("seed"),
        "device": result.device,
        "steps": result.steps,
        "wall_time": round(result.wall_time, 3),
        "steps_per_sec": round(result.steps_per_sec, 3),
        "sizes": [list(s) for s in result.sizes],
        "scale_starts": result.scale_starts,
        "interrupted": result.interrupted,
        "stopped_early": result.stopped_early,
        "stop_reason": result.stop_reason,
        "final_loss": result.loss,
        "metrics": metrics or {},
        "notes": list(notes or []) + result.notes,
        "memory": result.memory,   # per scale: the budget, the optimiser, one pass or the tiling (memory.plan)
        "history": {"loss": result.history, "terms": result.term_history},
        **extra,
    }
    return rec


RUN_FIELDS = ("layers", "layer_weights", "sizes", "steps", "wall_time", "steps_per_sec", "final_loss", "metrics",
              "stop_reason", "notes", "history")


def join_records(command: str, runs: list["Run"], labels: list[str], **extra) -> dict:
    """One record for several runs shown side by side (`texture --sweep`, `invert --compare`): the last run's
    record with each run's own fields (`RUN_FIELDS`) under `runs`, labelled, and `extra` on top."""
    return dict(runs[-1].record, command=command, interrupted=any(r.interrupted for r in runs), runs=[
        {"label": label, **{k: r.record[k] for k in RUN_FIELDS if k in r.record}} for label, r in zip(labels, runs)],
        **extra)


def save_run(path, image: torch.Tensor, record: dict, *, report: bool = False,
             inputs: dict[str, torch.Tensor] | None = None,
             snapshots: list[tuple[int, torch.Tensor]] | None = None) -> list[Path]:
    """Write `path` (PNG), `path.json` and, with `report`, `path.html`; each atomically (temp + rename).

    The folder is created if needed. Returns the paths written.
    """
    path = Path(path)
    record = dict(record, output=str(path))
    written = [write_atomic(path, encode_png(image)),
               write_atomic(path.with_suffix(".json"), json.dumps(record, indent=1, default=_jsonable).encode())]
    if report:
        page = html_report(record, image, inputs or {}, snapshots or [])
        written.append(write_atomic(path.with_suffix(".html"), page.encode()))
    return written


def html_report(record: dict, image: torch.Tensor, inputs: dict[str, torch.Tensor],
                snapshots: list[tuple[int, torch.Tensor]]) -> str:
    """A self-contained HTML page: inputs, result, snapshots, the loss curve and the record's key facts."""
    def img(x, caption):
        return (f'<figure><img src="data:image/png;base64,{base64.b64encode(encode_png(x)).decode()}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    facts = {k: record.get(k) for k in ("command", "created", "layers", "seed", "device", "steps", "wall_time",
                                        "steps_per_sec", "final_loss", "stop_reason")}
    if record.get("model"):
        facts["model"] = f"{record['model']['path']} (sha256 {record['model']['sha256'][:12]}…)"
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in {**facts, **record.get("metrics", {})}.items() if v not in (None, "", []))
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in record.get("notes", []))
    options = html.escape(json.dumps(record.get("options", {}), indent=1, default=_jsonable))
    curve = _loss_plot(record)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>invtool {html.escape(record['command'])}</title>
<style>body{{font:14px sans-serif;margin:2em;max-width:1100px}} figure{{display:inline-block;margin:0 1em 1em 0;
vertical-align:top}} img{{max-width:512px;image-rendering:pixelated;border:1px solid #ccc}} th{{text-align:left;
padding-right:1em}} pre{{background:#f4f4f4;padding:1em}}</style></head><body>
<h1>invtool {html.escape(record['command'])}</h1>
<h2>Inputs and result</h2>{''.join(img(x, k) for k, x in inputs.items())}{img(image, Path(record['output']).name)}
{'<h2>Snapshots</h2>' + ''.join(img(x, f'step {s}') for s, x in snapshots) if snapshots else ''}
<h2>Loss</h2>{f'<img src="data:image/png;base64,{curve}">' if curve else '<p>no steps run</p>'}
<h2>Run</h2><table>{rows}</table>{f'<h3>Notes</h3><ul>{notes}</ul>' if notes else ''}
<h3>Options</h3><pre>{options}</pre></body></html>
"""


def _loss_plot(record: dict) -> str:
    """The loss history (and each term's) as a base64 PNG plot, log scale, scales marked."""
    loss = record["history"]["loss"]
    if not loss:
        return ""
    fig, ax = figure((7, 3.5))
    if record.get("runs"):   # a sweep: one curve per run
        for run in record["runs"]:
            ax.plot(range(1, len(run["history"]["loss"]) + 1), run["history"]["loss"], label=run["label"], lw=1)
        loss = [v for run in record["runs"] for v in run["history"]["loss"]]
    else:
        ax.plot(range(1, len(loss) + 1), loss, label="total", color="black")
        terms = record["history"]["terms"]
        if len(terms) > 1:
            for name, values in terms.items():
                ax.plot(range(1, len(values) + 1), [abs(v) for v in values], label=name, lw=0.8)
        for s in record.get("scale_starts", [])[1:]:
            ax.axvline(s + 0.5, color="grey", ls=":", lw=0.8)
    if all(v > 0 for v in loss if v == v):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    return figure_png(fig, ax)


def figure(size: tuple[float, float]):
    """A matplotlib (figure, axes) for a report's plot (matplotlib is imported here, for --report only)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt.subplots(figsize=size, dpi=90)


def figure_png(fig, ax) -> str:
    """A report's plot with its legend, as base64 PNG for an <img> (the figure is closed)."""
    import matplotlib.pyplot as plt
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _jsonable(x):
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, (set, tuple)):
        return list(x)
    return str(x)
