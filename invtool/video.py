"""Video style transfer that does not flicker (Ruder et al. 2016): frames in and out, optical flow, the temporal
term, and the loop over frames and chunks.

Each frame t > 0 of a chunk starts from the previous stylised frame warped by the backward optical flow
(`warp(O_{t-1})`), and a temporal term ties it to that warped frame where the flow can be trusted:
`temporal_weight * mean(c * (x - warp(O_{t-1}))²)`, c in {0, 1} from Ruder's forward-backward consistency check
(occlusions, motion boundaries, flow leaving the frame). The flow is OpenCV's DIS, computed on the content frames.
A chunk's first frame is styled on its own (`steps` steps from the content, as `invtool style` does); the
others take `frame_steps`.

Long clips are cut into chunks of `chunk` frames that overlap by `overlap`; each chunk is an independent job
(in process, or as a Ray task with `workers` / `address`, through the atlas's Runner), and the chunks are joined
by a linear cross-fade over their overlaps. Every finished frame is cached under `OUTPUT.cache/` beside the
output, keyed by the model, the style images, the options and the hashes of the content frames it depends on
(its chunk's frames up to it): a rerun, or the same command after Ctrl-C, reuses every finished frame.

Flicker is measured as the warping error (Lai et al. 2018): per frame, Σ_x c(x) |O_t(x) − warp(O_{t−1})(x)|²
(summed over RGB, images in [0, 1]) / Σ_x c(x), with the flow and c of the content frames; the clip's own
warping error is the floor. The run record (`OUTPUT.json`) holds it per frame, with each frame's losses and time.

Example:
    >>> run = stylize_video("clip.mp4", "examples/textures/ihc.png", output="out/clip.mp4", report=True)
    >>> run.record["metrics"]["warping_error"], run.record["metrics"]["input_warping_error"]
"""
import base64
import hashlib
import html
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .errors import InvtoolError
from .image import ResultCache, contact_sheet, encode_png, fit_size, read_input, write_atomic
from .model import DEFAULT_MODEL, as_model
from .objectives import Objective
from .param import resize_image
from .record import figure, figure_png, record_header

# tuned on a panned photo of examples/ (tests/bench/bench_video.py --tune), judged on held-out clips
TEMPORAL_WEIGHT = 300.0    # w_t
FRAME_STEPS = 30           # L-BFGS steps for each frame after a chunk's first
CHUNK, OVERLAP = 24, 4     # frames per job, frames shared by consecutive chunks (cross-faded)
FLOW_PRESETS = {"fast": cv2.DISOPTICAL_FLOW_PRESET_FAST, "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
METHODS = ("temporal", "independent")
CACHE_VERSION = 1

READ_EXTS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv")
WRITE_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}   # what opencv-python writes
FRAME_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_FPS = 24.0


# --- frames in and out -------------------------------------------------------------------------------

def is_clip(path) -> bool:
    """Whether a style command's CONTENT is a clip: a folder (of frames) or a video file by its extension."""
    p = Path(path)
    return p.is_dir() or p.suffix.lower() in READ_EXTS


@dataclass
class Clip:
    """Frames as H x W x 3 uint8 RGB arrays, all one size, and the frame rate."""
    frames: list[np.ndarray]
    fps: float
    source: str
    notes: list[str] = field(default_factory=list)


def read_clip(source, size=None) -> Clip:
    """A video file (OpenCV) or a folder of numbered frames -> Clip, each frame resized to `size` (the longer
    side, or (h, w)). InvtoolError for a file OpenCV cannot read and for a clip with no frames."""
    path, notes = Path(source), []
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.suffix.lower() in FRAME_EXTS and not p.name.startswith(".")),
                       key=_natural)
        if not files:
            raise InvtoolError(f"{path}: no frames (a clip folder holds numbered images: "
                               f"{', '.join(FRAME_EXTS[:3])}…)")
        frames = []
        for f in files:
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                raise InvtoolError(f"{f}: not an image OpenCV can read; a clip folder holds only its frames")
            frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        fps = DEFAULT_FPS
    else:
        if not path.is_file():
            raise InvtoolError(f"{path}: no such file")
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise InvtoolError(f"{path}: OpenCV cannot read it as a video; give an .mp4 or .avi file, or a "
                               "folder of numbered frames")
        fps = cap.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
        frames = []
        while True:
            ok, img = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        cap.release()
        if not frames:
            raise InvtoolError(f"{path}: the video has no frames OpenCV can decode")
    h, w = frames[0].shape[:2]
    if any(f.shape[:2] != (h, w) for f in frames):
        notes.append(f"{path.name}: frames of other sizes resized to the first's {w}x{h}")
        frames = [f if f.shape[:2] == (h, w) else cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA)
                  for f in frames]
    if size is not None:
        th, tw = fit_size(h, w, size)
        if (th, tw) != (h, w):
            interp = cv2.INTER_AREA if th * tw < h * w else cv2.INTER_CUBIC
            frames = [cv2.resize(f, (tw, th), interpolation=interp) for f in frames]
    return Clip(frames, float(fps), str(path), notes)


def _natural(p: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def output_kind(output) -> str:
    """"folder" (no extension: numbered PNG frames) or "video" (an extension OpenCV writes, checked by opening a
    writer in a temporary folder); InvtoolError for any other, before anything is written."""
    suffix = Path(output).suffix.lower()
    if not suffix or Path(output).is_dir():
        return "folder"
    if suffix not in WRITE_FOURCC:
        raise InvtoolError(f"-o {output}: OpenCV cannot write {suffix} video here; use .mp4 or .avi, or a folder "
                           "(a path without extension) for PNG frames")
    with tempfile.TemporaryDirectory() as tmp:
        writer = cv2.VideoWriter(str(Path(tmp) / f"probe{suffix}"), cv2.VideoWriter_fourcc(*WRITE_FOURCC[suffix]),
                                 DEFAULT_FPS, (32, 32))
        ok = writer.isOpened()
        writer.release()
    if not ok:
        raise InvtoolError(f"-o {output}: this OpenCV build cannot write {suffix} video; use a folder (a path "
                           "without extension) for PNG frames")
    return "folder" if not suffix else "video"


def write_clip(output, frames: list[np.ndarray], fps: float) -> Path:
    """Write uint8 RGB frames as a video (to a temporary file, then renamed: never half-written) or, for a path
    without extension, as numbered PNGs (00000.png, …) in that folder."""
    output = Path(output)
    if output_kind(output) == "folder":
        for i, f in enumerate(frames):
            write_atomic(output / f"{i:05d}.png", _png(f))
        for stale in output.glob("*.png"):   # frames of an earlier, longer clip
            if stale.stem.isdigit() and int(stale.stem) >= len(frames):
                stale.unlink()
        return output
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.stem}.", suffix=output.suffix)
    os.close(fd)
    try:
        h, w = frames[0].shape[:2]
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*WRITE_FOURCC[output.suffix.lower()]), fps, (w, h))
        if not writer.isOpened():
            raise InvtoolError(f"-o {output}: OpenCV could not open a {output.suffix} writer")
        for f in frames:
            writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        writer.release()
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return output


def _png(frame: np.ndarray) -> bytes:
    return encode_png(_tensor(frame))


def _tensor(frame: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 -> [1, 3, H, W] float in [0, 1]."""
    return (torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float() / 255.0).contiguous()


def _uint8(x: torch.Tensor) -> np.ndarray:
    return (x[0].detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def _decode(png: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# --- optical flow ------------------------------------------------------------------------------------

def flow(a: np.ndarray, b: np.ndarray, preset: str = "medium") -> np.ndarray:
    """DIS optical flow from frame `a` to frame `b` (uint8 RGB or grey): H x W x 2 float32 (dx, dy) with
    a(x) ≈ b(x + flow(x))."""
    if preset not in FLOW_PRESETS:
        raise InvtoolError(f"unknown flow preset {preset!r}; use {' or '.join(FLOW_PRESETS)}")
    dis = cv2.DISOpticalFlow_create(FLOW_PRESETS[preset])
    return dis.calc(_grey(a), _grey(b), None)


def _grey(x: np.ndarray) -> np.ndarray:
    return x if x.ndim == 2 else cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)


def _sample(field_: np.ndarray, by: np.ndarray) -> np.ndarray:
    """`field_` (H x W x C) sampled at x + by(x), bilinear, the border repeated."""
    h, w = by.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(field_, gx + by[..., 0], gy + by[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def consistency(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Ruder et al.'s weight c in {0, 1} (H x W float32) for frame t, from forward = flow(t-1 -> t) and
    backward = flow(t -> t-1): 0 where x + backward(x) leaves the frame, at disocclusions
    (|w̃ + ŵ|² > 0.01 (|w̃|² + |ŵ|²) + 0.5, ŵ the backward flow and w̃ the forward flow sampled at x + ŵ(x)),
    and at motion boundaries (|∇û|² + |∇v̂|² > 0.01 |ŵ|² + 0.002)."""
    h, w = backward.shape[:2]
    warped = _sample(forward, backward)
    sq = lambda v: (v ** 2).sum(-1)   # noqa: E731
    occluded = sq(warped + backward) > 0.01 * (sq(warped) + sq(backward)) + 0.5
    du_y, du_x = np.gradient(backward[..., 0])
    dv_y, dv_x = np.gradient(backward[..., 1])
    boundary = du_x ** 2 + du_y ** 2 + dv_x ** 2 + dv_y ** 2 > 0.01 * sq(backward) + 0.002
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    x, y = gx + backward[..., 0], gy + backward[..., 1]
    outside = (x < 0) | (x > w - 1) | (y < 0) | (y > h - 1)
    return (~(occluded | boundary | outside)).astype(np.float32)


def warp(x: torch.Tensor, by: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Images `[N, C, H, W]` sampled at x + by(x) (by: H x W x 2, (dx, dy) in pixels), bilinear, border repeated:
    with by = flow(t -> t-1), the frame t-1 moved onto frame t."""
    by = torch.as_tensor(by, dtype=x.dtype, device=x.device)
    h, w = x.shape[-2:]
    gy, gx = torch.meshgrid(torch.arange(h, dtype=x.dtype, device=x.device),
                            torch.arange(w, dtype=x.dtype, device=x.device), indexing="ij")
    grid = torch.stack([2 * (gx + by[..., 0]) / max(w - 1, 1) - 1, 2 * (gy + by[..., 1]) / max(h - 1, 1) - 1], -1)
    return F.grid_sample(x, grid[None].expand(x.shape[0], -1, -1, -1), mode="bilinear", padding_mode="border",
                         align_corners=True).contiguous()   # grid_sample's strides would reach L-BFGS's view()


def frame_flows(frames: list[np.ndarray], preset: str = "medium") -> list[tuple[np.ndarray, np.ndarray] | None]:
    """For each frame t: None for t = 0, else (backward flow t -> t-1, consistency weight c)."""
    out = [None]
    for prev, cur in zip(frames, frames[1:]):
        backward, forward = flow(cur, prev, preset), flow(prev, cur, preset)
        out.append((backward, consistency(forward, backward)))
    return out


def warping_error(frames: list[np.ndarray], flows) -> list[float | None]:
    """Lai et al.'s warping error of each frame t > 0 (None for t = 0): Σ c |O_t − warp(O_{t−1})|² / Σ c, the sum
    over pixels and RGB, images in [0, 1], `flows` from `frame_flows` of the content frames."""
    errors = [None]
    for t in range(1, len(frames)):
        backward, c = flows[t]
        d = (_tensor(frames[t]) - warp(_tensor(frames[t - 1]), backward))[0].square().sum(0).numpy()
        errors.append(float((c * d).sum() / max(c.sum(), 1.0)))
    return errors


# --- the temporal term -------------------------------------------------------------------------------

def temporal_objective(target: torch.Tensor, mask, weight: float = 1.0) -> Objective:
    """`weight * mean(c * (x - target)²)`: the image tied to `target` (the previous stylised frame, warped) where
    the weight c (H x W, from `consistency`) is 1; the mean over every element of x. Target and mask are resized
    to the size the engine works at (coarse-to-fine scales)."""
    mask = torch.as_tensor(mask, dtype=torch.float32).reshape(1, 1, *target.shape[-2:])

    def fn(features, x):
        t, c = target.to(x), mask.to(x)
        if t.shape[-2:] != x.shape[-2:]:
            t, c = resize_image(t, *x.shape[-2:]), resize_image(c, *x.shape[-2:])
        return (c * (x - t).square()).mean()
    return weight * Objective(fn, name="temporal")


# --- the jobs ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChunkJob:
    """One chunk: consecutive content frames styled in order, each after the first tied to the one before.
    `done` frames are already cached; `last` is the last of them (PNG bytes), the next frame's start."""
    index: int
    start: int                       # the clip's index of the chunk's first frame
    frames: tuple                    # uint8 RGB arrays
    keys: tuple                      # each frame's cache key
    styles: tuple                    # [1, 3, H, W] tensors
    options: dict                    # transfer_style's
    method: str
    temporal_weight: float
    frame_steps: int
    flow_preset: str
    cache: str
    done: int = 0
    last: bytes | None = None


def run_chunk(job: ChunkJob, model, on_frame=None) -> list[dict]:
    """Style the chunk's frames from `job.done` on, caching each as it finishes; the new frames' results (PNG
    bytes, losses, time). A frame's run cut short by Ctrl-C is not kept: KeyboardInterrupt."""
    from .style import luminance_image, transfer_style

    cache, results = ResultCache(job.cache), []
    prev = None if job.last is None else _tensor(_decode(job.last))
    luminance = job.options.get("preserve_color") == "luminance"
    for j in range(job.done, len(job.frames)):
        t0 = time.perf_counter()
        content = _tensor(job.frames[j])
        options, target, mask = dict(job.options), None, None
        if j > 0 and job.method == "temporal":
            backward = flow(job.frames[j], job.frames[j - 1], job.flow_preset)
            mask = consistency(flow(job.frames[j - 1], job.frames[j], job.flow_preset), backward)
            target = warp(prev, backward)
            if luminance:   # that mode optimises a grey image and puts the chroma back afterwards
                target = luminance_image(target)
            options.update(init=target, steps=job.frame_steps,
                           terms=temporal_objective(target, mask, job.temporal_weight))
        run = transfer_style(content, list(job.styles), model=model, size=None, progress=False, **options)
        if run.interrupted:
            raise KeyboardInterrupt
        image = run.image if run.image.shape[-2:] == content.shape[-2:] else resize_image(run.image, *content.shape[-2:])
        frame = _uint8(image)
        prev = _tensor(frame)   # the stored frame, so that a resumed run continues exactly as an unbroken one
        metrics = run.record["metrics"]
        temporal = None
        if target is not None:
            grey = luminance_image(prev) if luminance else prev
            temporal = float(temporal_objective(target, mask)(None, grey))
        meta = {"frame": job.start + j, "chunk": job.index, "position": j, "first": target is None,
                "steps": run.record["steps"], "content_loss": metrics["content_loss"],
                "style_loss": metrics["style_loss"], "temporal_loss": temporal,
                "consistent": None if mask is None else float(mask.mean()),
                "wall_time": round(time.perf_counter() - t0, 3), "device": run.record["device"],
                "threads": torch.get_num_threads()}
        png = encode_png(prev)
        try:
            cache.put(job.keys[j], meta, {"": png})
        except OSError:   # a Ray worker on another machine: the driver caches what the job returns
            pass
        results.append({**meta, "key": job.keys[j], "png": png})
        if on_frame:
            on_frame(meta)
    return results


def _check_options(method, flow_preset, frame_steps, temporal_weight, chunk, overlap, style_options) -> None:
    """InvtoolError for video options no run could use, before anything is read."""
    if method not in METHODS:
        raise InvtoolError(f"unknown method {method!r}; use {' or '.join(METHODS)}")
    if flow_preset not in FLOW_PRESETS:
        raise InvtoolError(f"unknown flow preset {flow_preset!r}; use {' or '.join(FLOW_PRESETS)}")
    if frame_steps < 1 or temporal_weight < 0:
        raise InvtoolError("--frame-steps must be at least 1 and --temporal-weight not negative")
    if chunk < 0 or overlap < 0 or (chunk and 2 * overlap > chunk):
        raise InvtoolError(f"--chunk {chunk} --overlap {overlap}: the overlap is at most half a chunk")
    if "terms" in style_options or "init" in style_options and isinstance(style_options["init"], torch.Tensor):
        raise InvtoolError("video sets each frame's init and terms itself")


def _frames_and_metrics(per_chunk, errors, floor, flows, joins, fresh, total):
    """The record's per-frame rows (warping errors, consistency, each chunk's run of the frame) and the run's
    metrics (mean warping errors, at joins and elsewhere, losses, frames computed and cached, seconds a frame)."""
    n = len(errors)
    rows = []
    for i in range(n):
        runs = [{k: v for k, v in r.items() if k != "png"} for rows_ in per_chunk for r in rows_ if r["frame"] == i]
        rows.append({"frame": i, "warping_error": errors[i], "input_warping_error": floor[i],
                     "consistent": None if flows[i] is None else float(flows[i][1].mean()), "join": i in joins,
                     "runs": runs})
    metrics = {
        "warping_error": _mean(errors[1:]), "input_warping_error": _mean(floor[1:]),
        "join_warping_error": _mean([errors[i] for i in joins]),
        "other_warping_error": _mean([errors[i] for i in range(1, n) if i not in joins]),
        "style_loss": _mean([r["style_loss"] for rows_ in per_chunk for r in rows_]),
        "content_loss": _mean([r["content_loss"] for rows_ in per_chunk for r in rows_]),
        "frames": n, "frames_computed": len(fresh), "frames_cached": total - len(fresh),
        "seconds_per_frame": _mean([r["wall_time"] for r in fresh if not r["first"]]),
        "seconds_per_first_frame": _mean([r["wall_time"] for r in fresh if r["first"]]),
    }
    return rows, metrics


def _run_chunks(jobs, model, cache, workers: int, address, total: int, progress: bool):
    """Run the chunks' jobs (in this process or on Ray), caching each frame as its job reports it; (the new
    frames by key, the runner's description)."""
    from .atlas.runner import Runner

    bar = _bar(total, total - sum(len(j.frames) - j.done for j in jobs), progress)
    computed: dict[str, dict] = {}

    def on_frame(meta):
        bar.update(1)
        bar.set_postfix(frame=meta["frame"], s=f"{meta['wall_time']:.1f}", refresh=False)

    def on_result(job, results):
        for r in results:
            computed[r["key"]] = dict(r, cached=False)
            cache.put(r["key"], {k: v for k, v in r.items() if k not in ("key", "png")}, {"": r["png"]})
        if runner.ray is not None:
            bar.update(len(results))

    try:
        with Runner(workers, address) as runner:
            work = partial(run_chunk, on_frame=on_frame) if runner.ray is None else run_chunk
            runner.run(jobs, model, on_result, work=work)
            return computed, runner.description
    finally:
        bar.close()


def _chunk_job(cache, found: dict, c: int, start: int, keys: tuple, frames, style_imgs, options, method, temporal_weight,
               frame_steps, flow_preset, cache_dir) -> "ChunkJob | None":
    """Chunk c's job from its first frame not in the cache (the cached ones go into `found`), or None when all are."""
    done, last = 0, None
    for k in keys:
        meta = cache.meta(k)
        if meta is None:
            break
        found[k] = dict(meta, key=k, png=cache.png(k), cached=True)
        done, last = done + 1, found[k]["png"]
    if done == len(keys):
        return None
    return ChunkJob(c, start, tuple(frames), keys, style_imgs, options, method, float(temporal_weight),
                    int(frame_steps), flow_preset, str(cache_dir), done, last)


def chunk_bounds(n: int, chunk: int, overlap: int) -> list[tuple[int, int]]:
    """[(start, end)) of each chunk of a clip of n frames: `chunk` frames each, consecutive chunks sharing
    `overlap`; chunk 0 (or >= n): one chunk."""
    if chunk <= 0 or chunk >= n:
        return [(0, n)]
    bounds, start = [], 0
    while True:
        end = min(start + chunk, n)
        bounds.append((start, end))
        if end == n:
            return bounds
        start += chunk - overlap


def join_chunks(n: int, bounds, outputs: list[list[np.ndarray]]) -> list[np.ndarray]:
    """The clip's frames from the chunks' frames: where two chunks overlap, a linear cross-fade, the later chunk's
    share (k + 1) / (overlap + 1) at the overlap's k-th frame."""
    frames = []
    for i in range(n):
        covering = [(c, i - s) for c, (s, e) in enumerate(bounds) if s <= i < e]
        if len(covering) == 1:
            c, j = covering[0]
            frames.append(outputs[c][j])
            continue
        (a, ja), (b, jb) = covering[-2:]
        overlap = bounds[a][1] - bounds[b][0]
        alpha = (jb + 1) / (overlap + 1)
        mix = (1 - alpha) * outputs[a][ja].astype(np.float32) + alpha * outputs[b][jb].astype(np.float32)
        frames.append(np.clip(mix + 0.5, 0, 255).astype(np.uint8))
    return frames


def join_frames(bounds) -> list[int]:
    """The frames t whose step t-1 -> t crosses a join: the overlap's frames and the one after it."""
    out = []
    for (_, a_end), (b_start, _) in zip(bounds, bounds[1:]):
        out += list(range(b_start, a_end + 1))
    return sorted(set(out))


# --- the whole clip -----------------------------------------------------------------------------------

@dataclass
class VideoRun:
    """What `stylize_video` returns: the output frames (uint8 RGB), its record and the paths written."""
    frames: list[np.ndarray]
    record: dict
    paths: list[Path]


def stylize_video(clip, styles, *, output, model=DEFAULT_MODEL, preprocess=None, pool: str = "max", device=None,
                  size=160, method: str = "temporal", temporal_weight: float = TEMPORAL_WEIGHT,
                  frame_steps: int = FRAME_STEPS, chunk: int = CHUNK, overlap: int = OVERLAP, workers: int = 1,
                  address: str | None = None, fps: float | None = None, flow_preset: str = "medium",
                  cache=None, report: bool = False, progress: bool = True, **style_options) -> VideoRun:
    """Style every frame of `clip` (a video file or a folder of frames) after `styles`, into `output` (a video
    file, or a folder of PNG frames for a path without extension), with `OUTPUT.json` (the record) beside it
    and, with `report`, `OUTPUT.html` (a contact sheet of frames and the flicker curve).

    Args:
        method: "temporal" (Ruder et al.: each frame after a chunk's first starts from the previous one warped,
            tied to it by the temporal term) or "independent" (every frame styled on its own, as `invtool style`).
        temporal_weight: w_t of the temporal term; frame_steps: the steps of each frame after a chunk's first
            (the first takes `steps`, the style command's).
        chunk, overlap: frames per job and frames shared by consecutive jobs (cross-faded); chunk 0: one job.
        workers, address: run the chunks on Ray (as `invtool atlas` does); 1 and None: in this process.
        fps: the output's frame rate (default: the input video's, 24 for a folder).
        cache: the folder of finished frames (default `OUTPUT.cache` beside the output; runs may share one).
        flow_preset: DIS's "medium" or "fast".
        size, model, preprocess, pool, device and `style_options` (content_layers, style_weight, steps, seed, …):
            as `transfer_style`, applied to each frame.
    """
    from .record import check_output

    t0 = time.perf_counter()
    styles = list(styles) if isinstance(styles, (list, tuple)) else [styles]
    check_output(output, clip, *styles)
    kind = output_kind(output)
    _check_options(method, flow_preset, frame_steps, temporal_weight, chunk, overlap, style_options)
    source = read_clip(clip, size)
    n = len(source.frames)
    model = as_model(model, preprocess, pool, device)
    style_imgs = tuple(read_input(s, channels=model.in_channels, what="style image")[0] for s in styles)
    if model.in_channels != 3:
        raise InvtoolError("video style transfer needs an RGB-input model")

    bounds = chunk_bounds(n, chunk, 0 if method == "independent" else overlap)
    cache_dir = Path(cache) if cache else _cache_dir(output)
    hashes = [hashlib.sha256(f.tobytes() + str(f.shape).encode()).hexdigest() for f in source.frames]
    base = _digest([CACHE_VERSION, model.sha256, model.pool, str(model.preprocess), style_options,
                    [hashlib.sha256(s.numpy().tobytes() + str(tuple(s.shape)).encode()).hexdigest() for s in style_imgs]])
    follow = [method, temporal_weight, frame_steps, flow_preset]

    def key(start, j):   # a chunk's first frame (and every independent frame) depends on itself alone
        i = start + j
        if j == 0 or method == "independent":
            return _digest([base, "first", hashes[i]])
        return _digest([base, follow, hashes[start:i + 1]])

    cache = ResultCache(cache_dir)
    found: dict[str, dict] = {}
    jobs = [job for c, (s, e) in enumerate(bounds)
            if (job := _chunk_job(cache, found, c, s, tuple(key(s, j) for j in range(e - s)), source.frames[s:e],
                                  style_imgs, dict(style_options), method, temporal_weight, frame_steps, flow_preset,
                                  cache_dir))]

    total = sum(e - s for s, e in bounds)
    computed, runner_info = _run_chunks(jobs, model, cache, workers, address, total, progress)

    found.update(computed)
    per_chunk = [[found[key(s, j)] for j in range(e - s)] for s, e in bounds]
    frames = join_chunks(n, bounds, [[_decode(r["png"]) for r in rows] for rows in per_chunk])
    flows = frame_flows(source.frames, flow_preset)
    errors, floor = warping_error(frames, flows), warping_error(source.frames, flows)
    joins = join_frames(bounds)

    rows, metrics = _frames_and_metrics(per_chunk, errors, floor, flows, joins, list(computed.values()), total)
    out_fps = float(fps or source.fps)
    record = {**record_header("style-video", _jsonable_options(dict(
        clip=str(clip), styles=[str(s) if isinstance(s, (str, Path)) else "tensor" for s in styles], size=size,
        method=method, temporal_weight=temporal_weight, frame_steps=frame_steps, chunk=chunk, overlap=overlap,
        workers=workers, address=address, fps=out_fps, flow_preset=flow_preset, pool=pool, **style_options)), model),
        "output": str(output), "output_kind": kind, "size": list(source.frames[0].shape[:2]),
        "chunks": [list(b) for b in bounds], "joins": joins, "runner": runner_info, "cache": str(cache_dir),
        "metrics": metrics, "notes": source.notes, "frames": rows, "wall_time": round(time.perf_counter() - t0, 3)}
    paths = [write_clip(output, frames, out_fps)]
    paths.append(write_atomic(_beside(output, ".json"), json.dumps(record, indent=1).encode()))
    if report:
        page = video_report(record, source.frames, frames)
        paths.append(write_atomic(_beside(output, ".html"), page.encode()))
    return VideoRun(frames, record, paths)


def _beside(output, suffix: str) -> Path:
    """OUTPUT.json for out/clip.mp4 (out/clip.json) and for a folder out/frames (out/frames.json)."""
    output = Path(output)
    return output.with_suffix(suffix) if output.suffix else output.parent / f"{output.name}{suffix}"


def _cache_dir(output) -> Path:
    output = Path(output)
    return output.parent / f"{output.stem if output.suffix else output.name}.cache"


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _jsonable_options(options: dict) -> dict:
    return {k: (v if isinstance(v, (str, int, float, bool, list, dict, type(None))) else str(v))
            for k, v in options.items()}


def _bar(total: int, initial: int, progress: bool):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, disable=not progress, unit="frame", dynamic_ncols=True, leave=False)


# --- the report --------------------------------------------------------------------------------------

def video_report(record: dict, inputs: list[np.ndarray], outputs: list[np.ndarray], columns: int = 6) -> str:
    """A self-contained HTML page: input and output frames side by side (a contact sheet of up to `columns`
    frames), the flicker curve (each frame's warping error, the input's as the floor, joins marked) and the
    per-frame losses and times."""
    n = len(outputs)
    picks = sorted(set(np.linspace(0, n - 1, min(columns, n)).round().astype(int).tolist()))
    sheet = contact_sheet([_tensor(inputs[i]) for i in picks] + [_tensor(outputs[i]) for i in picks],
                          [f"input {i}" for i in picks] + [f"styled {i}" for i in picks], cols=len(picks))
    m = record["metrics"]
    facts = {"frames": n, "chunks": record["chunks"], "warping error (styled)": m["warping_error"],
             "warping error (input, the floor)": m["input_warping_error"],
             "warping error at joins / elsewhere": f"{m['join_warping_error']} / {m['other_warping_error']}",
             "style loss (mean)": m["style_loss"], "content loss (mean)": m["content_loss"],
             "seconds per frame (after a chunk's first)": m["seconds_per_frame"],
             "frames computed / cached": f"{m['frames_computed']} / {m['frames_cached']}",
             "wall time": record["wall_time"]}
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items())
    table = "".join(
        f"<tr><td>{r['frame']}</td><td>{_fmt(r['warping_error'])}</td><td>{_fmt(r['input_warping_error'])}</td>"
        + "".join(f"<td>{run['chunk']}:{run['position']}</td><td>{_fmt(run['content_loss'])}</td>"
                  f"<td>{_fmt(run['style_loss'])}</td><td>{_fmt(run['temporal_loss'])}</td>"
                  f"<td>{run['steps']}</td><td>{run['wall_time']}</td>" for run in r["runs"][:1]) + "</tr>"
        for r in record["frames"])
    options = html.escape(json.dumps(record["options"], indent=1))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>invtool style (video)</title>
<style>body{{font:14px sans-serif;margin:2em;max-width:1200px}} img{{max-width:100%;border:1px solid #ccc}}
th{{text-align:left;padding-right:1em}} td{{padding-right:1em}} pre{{background:#f4f4f4;padding:1em}}</style></head>
<body><h1>invtool style: {html.escape(Path(record['output']).name)}</h1>
<h2>Frames</h2><img src="data:image/png;base64,{base64.b64encode(encode_png(sheet)).decode()}">
<h2>Flicker</h2><img src="data:image/png;base64,{_flicker_plot(record)}">
<h2>Run</h2><table>{rows}</table>
<h2>Per frame</h2><table><tr><th>frame</th><th>warping error</th><th>input's</th><th>chunk:position</th>
<th>content</th><th>style</th><th>temporal</th><th>steps</th><th>s</th></tr>{table}</table>
<h3>Options</h3><pre>{options}</pre></body></html>
"""


def _fmt(v) -> str:
    return "" if v is None else f"{v:.4g}"


def _flicker_plot(record: dict) -> str:
    """The warping error per frame, the input's as the floor, the joins between chunks shaded, as base64 PNG."""
    rows = record["frames"][1:]
    fig, ax = figure((7, 3))
    ax.plot([r["frame"] for r in rows], [r["warping_error"] for r in rows], marker=".", label="styled")
    ax.plot([r["frame"] for r in rows], [r["input_warping_error"] for r in rows], marker=".", color="grey",
            label="input (floor)")
    for j in record["joins"]:
        ax.axvspan(j - 0.5, j + 0.5, color="orange", alpha=0.15, lw=0)
    ax.set_xlabel("frame (joins shaded)")
    ax.set_ylabel("warping error")
    return figure_png(fig, ax)
