"""`invtool atlas`: a browsable offline atlas of a model's units (channels), as a static site.

For every channel of the chosen layers: the image that excites it most and the one that suppresses it
most (feature visualisation), and the top-K crops of a folder of images that drive it hardest (dataset
examples). The work is split so that each piece has one job:

    units.py     a job = a batch of one layer's channels, visualised in one run; the unit cache
    runner.py    runs jobs in process or as Ray tasks (knows nothing of the site)
    examples.py  the forward-only pass over the images (ONNX Runtime or the rebuilt graph), crops
    site.py      templates + JSON -> pages (knows nothing of how the images were made)

and `build_atlas` here checks every input, then runs them in that order. A rerun with the same options
finds every unit in the cache (`DIR/.cache`, keyed by the model's sha256, the options, the seed and the
batch) and computes nothing; an interrupted run keeps every finished unit. `DIR/.invtool-atlas` marks
the folder as an atlas: a folder holding anything else is never written into.

Example:
    >>> record = build_atlas("models/vgg16.onnx", "out/atlas", layers=["conv3_1"], channels="0-15",
    ...                      images="examples/images", workers=2)
"""
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..defaults import ATLAS, VISUALIZE
from ..errors import InvtoolError
from ..geometry import ReceptiveField, choose_layers, conv_layers, receptive_field
from ..image import ResultCache, encode_png, write_atomic
from ..memory import available_memory, parse_memory
from ..model import DEFAULT_MODEL, as_model
from ..objectives import parse_layers
from ..record import record_header
from ..visualization import parse_batch, parse_channels, relu_input, tile_batch
from .examples import activation_maxima, crop, file_digest, load_example, scan_images, top_examples
from .runner import Runner
from .site import slugs, write_site
from .units import KINDS, plan_jobs

MARKER = ".invtool-atlas"
FORMAT = 1


def build_atlas(model=DEFAULT_MODEL, output="out/atlas", *, layers=None, channels=None, images=None,
                top: int = ATLAS["top"], steps: int = ATLAS["steps"], size: int = ATLAS["size"],
                seed: int = ATLAS["seed"], batch: int | str = ATLAS["batch"], memory=None,
                example_size: int = ATLAS["example_size"], engine: str = "auto", workers: int = ATLAS["workers"],
                address: str | None = None, preprocess=None, pool: str = "max", device=None,
                dtype=ATLAS["dtype"], progress: bool = True) -> dict:
    """Build (or bring up to date) the atlas of `model` in the folder `output`; returns its record.

    Args:
        model: an ONNX path or a loaded FeatureModel.
        output: the site's folder: new, empty, or an earlier atlas (whose cache is reused).
        layers: layer names; "all": every conv layer (`geometry.conv_layers`; VGG16 conv1_1 … conv5_3); default:
            the model's stages (VGG16 conv1_1 … conv5_1).
        channels: the channels of every layer, text such as "0-15" or a list (default: all).
        images: a folder of images for the dataset examples (none: no examples).
        top: dataset examples per unit.
        steps, size, seed: the visualisations' Adam steps, tile side and seed.
        batch: channels per job (one batched run of 2 x batch tiles): "auto" (per layer, as many as the memory
            budget holds, on the CPU memory.CPU_BATCH tiles) or N (at most N; fewer, with a note, when N do not
            fit). It is fixed, a number per layer, before any job runs, and fixes the images: the same batch on
            the same machine finds the cache. The number of workers never changes them.
        memory: the budget in bytes or text such as "2G" (default: what the device has free) for each job.
        example_size: the side the images are resized and centre-cropped to for the dataset pass.
        engine: the dataset pass: "auto" (ONNX Runtime on the CPU when installed), "ort" or "torch".
        workers: 1 runs jobs in this process; N > 1 on a local Ray with N workers (the [ray] extra).
        address: an existing Ray cluster's address instead.
        preprocess, pool, device: as for every command.
        dtype: the compute dtype when `model` is a path, as for `visualize` ("auto": bfloat16 on a CPU with
            bfloat16 instructions, else float32); part of the units' cache key.
        progress: a progress bar over the jobs on stderr.
    """
    t0 = time.perf_counter()
    out = Path(output)
    check_output_dir(out)
    batch, budget = parse_batch(batch), parse_memory(memory) if memory is not None else None
    for name, value, low in (("--top", top, 0), ("--steps", steps, 1), ("--size", size, 16),
                             ("--example-size", example_size, 16)):
        if value < low:
            raise InvtoolError(f"{name} {value}: give at least {low}")
    model = as_model(model, preprocess, pool, device, dtype)
    notes: list[str] = []
    layers = _atlas_layers(model, layers, notes)
    plan = {layer: _layer_plan(model, layer, channels, example_size) for layer in layers}
    budget = budget if budget is not None else available_memory(model.device)   # once, before any job
    batching = {layer: _channels_per_job(model, layer, p, batch, size, budget, notes) for layer, p in plan.items()}
    per_job = {layer: b["channels"] for layer, b in batching.items()}
    paths, skipped = scan_images(images) if images is not None else ([], [])

    with Runner(workers, address) as runner:   # Ray started or joined: a bad address fails before any job
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / MARKER, json.dumps({"format": FORMAT}).encode())
        maxima, stats = _examples(out, model, plan, paths, example_size, engine) if paths else ({}, None)
        units = _units(out, model, plan, runner, progress, size=size, steps=steps, seed=seed, batch=per_job,
                       memory=budget)

    options = {"layers": layers, "channels": None if channels is None else str(channels), "images": None
               if images is None else str(images), "top": top, "steps": steps, "size": size, "seed": seed,
               "batch": batch, "memory": memory, "example_size": example_size, "engine": engine, "workers": workers,
               "address": address, "preprocess": None if model.preprocess is None else model.preprocess.to_dict(),
               "pool": model.pool, "device": str(model.device), "dtype": model.dtype_name}
    atlas = {
        **record_header("atlas", options),
        "model": _provenance(model),
        "runner": runner.description,
        "units": units["counts"],
        "batch": {"asked": batch, "budget": budget, "layers": batching},
        "examples": None if stats is None else {
            "folder": str(images), **stats, "files": [p.name for p in paths], "skipped": skipped},
        "notes": notes,
        "layers": [{**p.info, "slug": slug, "batch": per_job[layer], "units": [
            _write_unit(out, slug, c, units, (layer, c),
                        _unit_examples(out, slug, c, p, maxima, paths, top, example_size, model.in_channels))
            for c in p.wanted]} for (layer, p), slug in zip(plan.items(), slugs(layers).values())],
    }
    atlas["wall_time"] = round(time.perf_counter() - t0, 2)
    write_site(out, atlas)
    return atlas


def _atlas_layers(model, layers, notes: list[str]) -> list[str]:
    """The layers asked for, each checked and named once: names, "all" (every conv layer, `conv_layers`), or
    none (the model's defaults for the atlas, said in `notes`)."""
    if layers == "all" or layers == ["all"]:
        layers = conv_layers(model)
        notes.append(f"--layers all: the model's {len(layers)} conv layers, {layers[0]} … {layers[-1]}")
    layers = list(parse_layers(model, choose_layers(model, layers, "atlas", notes), "atlas"))
    if len(set(map(model.resolve, layers))) != len(layers):
        raise InvtoolError(f"a layer is named twice in {', '.join(layers)}; give each once")
    return layers


def _channels_per_job(model, layer: str, plan: "_LayerPlan", batch, size: int, budget, notes: list[str]) -> dict:
    """The channels a job of `layer` takes (`channels`) and how that was chosen: two tiles each, as many tiles as
    `tile_batch` gives a run ("auto": what the memory budget holds, at most memory.CPU_BATCH on the CPU; N
    channels: at most 2N tiles, fewer with a note when they do not fit)."""
    said: list[str] = []
    tiles, info = tile_batch(model, [plan.read], 2 * len(plan.wanted), size, size,
                             batch if batch == "auto" else 2 * batch, optimizer=VISUALIZE["optimizer"], memory=budget,
                             notes=said)
    notes += [f"{layer}, tiles a job: {note}" for note in said]
    how = info["how"] if batch == "auto" else f"--batch {batch}: at most {2 * batch} tiles, as many as the budget holds"
    return {"channels": max(1, tiles // 2), "tiles": tiles, "how": how}


def check_output_dir(out: Path) -> None:
    """An error unless `out` is new, empty, or an atlas (it holds the marker file)."""
    if out.exists() and not out.is_dir():
        raise InvtoolError(f"-o {out} is a file, not a folder; choose a new folder for the atlas")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise InvtoolError(f"-o {out} holds files that are not an invtool atlas (no {MARKER}); nothing was "
                           "written: choose a new or empty folder")


@dataclass
class _LayerPlan:
    """One layer of the atlas, every input checked: the channels to show, the receptive field, and the
    facts the pages show (`info`, JSON-ready)."""
    wanted: list[int]
    field: ReceptiveField
    read: str          # the tensor the channels are read at (the ReLU's input)
    info: dict


def _layer_plan(model, layer: str, channels, example_size: int) -> _LayerPlan:
    tensor = model.resolve(layer)
    field = receptive_field(model, layer)     # also refuses a layer with no spatial resolution
    count = model.channels(layer)
    wanted = list(range(count)) if channels is None else list(dict.fromkeys(parse_channels(channels)))
    bad = [c for c in wanted if c >= count]
    if bad:
        raise InvtoolError(f"channel {bad[0]} is out of range: {layer} has {count} channels, 0-{count - 1}; "
                           "give --channels within it")
    shape = next(i.shape for i in model.describe(example_size) if i.name == tensor)
    read = relu_input(model, layer)
    return _LayerPlan(wanted, field, read, {
        "name": layer, "tensor": tensor, "read": read,
        "aliases": sorted(a for a, t in model.aliases.items() if t == tensor), "channels": count,
        "shape": list(shape) if shape else None, "stride": field.stride[0],
        "receptive_field": {"size": list(field.size), "stride": list(field.stride), "start": list(field.start)}})


def _units(out: Path, model, plan: dict, runner: Runner, progress: bool, **options) -> dict:
    """Every unit's cache key and record, from the cache or computed (cached as each job finishes). The PNGs stay
    in the cache (`_write_unit` copies them into the site), so a full atlas's images are never all in memory."""
    cache = ResultCache(out / ".cache" / "units", KINDS)
    jobs = plan_jobs(model, {layer: p.wanted for layer, p in plan.items()}, **options)
    results, todo = {}, []
    for job in jobs:
        found = [cache.meta(job.unit_key(c)) for c in job.channels]
        if all(found):
            results.update(((job.layer, c), (job.unit_key(c), u)) for c, u in zip(job.channels, found))
        else:
            todo.append(job)
    bar = tqdm(total=len(todo), desc="atlas jobs", unit="job", disable=not (todo and progress))

    def finished(job, units):
        for unit in units:
            key = job.unit_key(unit["channel"])
            meta = {k: v for k, v in unit.items() if k not in KINDS}
            cache.put(key, meta, {kind: unit[kind] for kind in KINDS})
            results[(job.layer, unit["channel"])] = key, meta
        bar.set_postfix_str(f"{job.layer} {job.channels[0]}-{job.channels[-1]}", refresh=False)
        bar.update()
    try:
        runner.run(todo, model, finished)
    finally:
        bar.close()
    computed = sum(len(j.channels) for j in todo)
    return {"results": results, "cache": cache, "counts": {
        "total": len(results), "computed": computed, "cached": len(results) - computed, "jobs": len(jobs),
        "jobs_run": len(todo)}}


def _examples(out: Path, model, plan: dict, paths, size: int, engine: str):
    """Each layer's per-image maxima over the folder (cached: keyed by the model, the options and every
    image's bytes), and the pass's stats."""
    tensors = list(dict.fromkeys(p.read for p in plan.values()))
    key = hashlib.sha256(json.dumps([FORMAT, model.sha256, str(model.preprocess), model.pool, engine, size, tensors,
                                     [(p.name, file_digest(p)) for p in paths]]).encode()).hexdigest()[:32]
    cached = out / ".cache" / "examples" / f"{key}.npz"
    if cached.is_file():
        with np.load(cached) as data:
            stats = json.loads(str(data["stats"]))
            return {t: (data[f"values{i}"], data[f"positions{i}"]) for i, t in enumerate(tensors)}, stats
    maxima, stats = activation_maxima(model, paths, tensors, size=size, engine=engine)
    arrays = {f"{kind}{i}": maxima[t][k] for i, t in enumerate(tensors) for k, kind in enumerate(("values", "positions"))}
    cached.parent.mkdir(parents=True, exist_ok=True)
    with open(cached.with_suffix(".tmp"), "wb") as f:
        np.savez(f, stats=json.dumps(stats), **arrays)
    cached.with_suffix(".tmp").replace(cached)
    return maxima, stats


def _unit_examples(out: Path, slug: str, c: int, plan: _LayerPlan, maxima: dict, paths, top: int,
                   size: int, channels: int) -> list[dict]:
    """A unit's top examples: each image's crop around the channel's peak (as the model saw it: grey for a grey
    model) written beside the unit's page."""
    if not maxima or not top:
        return []
    values, positions = maxima[plan.read]
    found = []
    for rank, (i, value, y, x) in enumerate(top_examples(values, positions, c, top), 1):
        box = plan.field.box(y, x)
        name = f"units/{slug}/{c}-example-{rank}.png"
        write_atomic(out / name, encode_png(crop(load_example(paths[i], size, channels), box)))
        found.append({"file": paths[i].name, "value": value, "y": y, "x": x, "box": list(box), "crop": name})
    return found


def _write_unit(out: Path, slug: str, c: int, units: dict, unit_id: tuple, examples: list[dict]) -> dict:
    """Copy a unit's two images from the cache into the site; its entry in the layer's JSON."""
    key, unit = units["results"][unit_id]
    entry = {"channel": c, "page": f"units/{slug}/{c}.html"}
    for kind in KINDS:
        entry[kind] = f"units/{slug}/{c}-{kind}.png"
        write_atomic(out / entry[kind], units["cache"].png(key, kind))
    entry.update(objective=unit["objective"], device=unit["device"], batch=unit["batch"], examples=examples)
    return entry


def _provenance(model) -> dict:
    """The model's identity and where its weights came from, as the index shows it."""
    meta = model.metadata
    provenance = {}
    if "invtool.arch" in meta:
        provenance["architecture"] = meta["invtool.arch"]
    if "invtool.source" in meta:
        try:
            source = json.loads(meta["invtool.source"])
            provenance.update(("weights sha256" if k == "sha256" else k, " ".join(map(str, v)) if isinstance(v, list)
                               else v) for k, v in source.items())
        except ValueError:
            provenance["source"] = meta["invtool.source"]
    provenance["preprocessing"] = meta.get("invtool.preprocess") or (
        "none" if model.preprocess is None else json.dumps(model.preprocess.to_dict()))
    return {"name": Path(model.path).name if model.path else "model", "path": str(model.path),
            "sha256": model.sha256, "provenance": provenance}
