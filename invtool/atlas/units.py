"""The atlas's unit jobs: what one job is, the work it does, and the keys of finished units.

A job is a batch of channels of one layer, visualised in one batched run of `visualize` (each channel's
positive and negative tile side by side in the batch). The batches are cut from the options alone
(`batch` channels of each layer, a number the driver fixed before any job, in the order asked), never from
the number of workers: a batch's images depend on its whole batch (one best-step choice, the transforms'
draws), so the same batches everywhere give byte-identical PNGs whether the jobs run in process or on any
number of Ray workers. A job runs whole, in the memory budget the driver sized its batch for.

Every unit's result is cached (`image.ResultCache`) under a key of the model's sha256, the options that shape its
images, the seed and its batch, so a rerun finds it and an interrupted run keeps what it finished. The driver
copies a unit's PNGs from the cache into the site one unit at a time: it never holds them all.

Example:
    >>> jobs = plan_jobs(model, {"conv3_1": [0, 1, 2]}, size=64, steps=32, seed=0, batch=8)
    >>> results = run_job(jobs[0], model)      # one dict per channel: PNG bytes and objective values
"""
import hashlib
import json
from dataclasses import asdict, dataclass

import torch

from ..image import encode_png
from ..objectives import channel
from ..visualization import relu_input, visualize

CACHE_VERSION = 2   # bump when a job's results change for the same options (2: each tile's own start noise)
KINDS = ("positive", "negative")


@dataclass(frozen=True)
class Job:
    """One batch of one layer's channels, and everything its images depend on (so, its cache key)."""

    layer: str                  # the name asked for (alias or ONNX name)
    tensor: str                 # the tensor the channel objectives read (the ReLU's input, see relu_input)
    channels: tuple[int, ...]
    size: int
    steps: int
    seed: int
    model_sha256: str
    preprocess: str             # the model's preprocessing, as JSON ("null" when baked in)
    pool: str
    memory: int | None = None   # the budget (bytes) its batch was sized for; not in the key: it changes no image
    dtype: str = "float32"      # the compute dtype

    @property
    def key(self) -> str:
        """The batch's key: every field but the layer's spelling (an alias and its tensor give one key) and the
        budget; the dtype only when it is not float32, so the keys of float32 atlases stay what they were."""
        fields = {k: v for k, v in asdict(self).items()
                  if k not in ("layer", "memory") and not (k == "dtype" and v == "float32")}
        return hashlib.sha256(json.dumps([CACHE_VERSION, fields], sort_keys=True).encode()).hexdigest()

    def unit_key(self, c: int) -> str:
        return hashlib.sha256(f"{self.key}:{c}".encode()).hexdigest()[:32]

    @property
    def batch_seed(self) -> int:
        """The seed of this batch's run: from the seed and the batch, so batches start from different noise."""
        return int.from_bytes(hashlib.sha256(f"{self.seed}:{self.tensor}:{self.channels}".encode()).digest()[:4], "big")


def plan_jobs(model, channels: dict[str, list[int]], *, size: int, steps: int, seed: int,
              batch: int | dict[str, int], memory: int | None = None) -> list[Job]:
    """The jobs for `channels` (layer -> channel indices): each layer's channels in batches of `batch` (one
    number, or one per layer), each to run within `memory` bytes (None: what the device has free)."""
    pre = json.dumps(None if model.preprocess is None else asdict(model.preprocess), sort_keys=True)
    per = batch if isinstance(batch, dict) else dict.fromkeys(channels, batch)
    return [Job(layer, relu_input(model, layer), tuple(cs[i:i + per[layer]]), size, steps, seed, model.sha256, pre,
                model.pool, memory, model.dtype_name)
            for layer, cs in channels.items() for i in range(0, len(cs), per[layer])]


def run_job(job: Job, model) -> list[dict]:
    """Visualise a job's channels in one batched run: for each channel, the image that excites it most and
    the one that suppresses it most, as PNG bytes, with the channel's mean before and after."""
    wanted = [channel(job.layer, c, job.tensor) for c in job.channels]
    run = visualize(objectives=wanted + [-o for o in wanted], model=model, size=job.size, steps=job.steps,
                    seed=job.batch_seed, pool=job.pool, batch=2 * len(wanted), memory=job.memory, progress=False)
    n, metrics = len(job.channels), run.record["metrics"]
    start, final = metrics["objective_start"], metrics["objective_final"]
    return [{"channel": c,
             "positive": encode_png(run.tiles[i]), "negative": encode_png(run.tiles[n + i]),
             # each kind's channel mean (the negative tile minimised it), at the start and the end
             "objective": {"positive": [start[i], final[i]], "negative": [-start[n + i], -final[n + i]]},
             "device": run.record["device"], "threads": torch.get_num_threads(),
             "batch": list(job.channels), "batch_wall_time": run.record["wall_time"]}
            for i, c in enumerate(job.channels)]
