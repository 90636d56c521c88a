"""Running the atlas's jobs: in this process, or as Ray tasks on a local Ray or an existing cluster.

The runner knows nothing of the site. It takes jobs (`units.Job`) and calls `on_result(job, units)` in
the driver as each one finishes, so the driver caches every unit at once and an interrupted run keeps
what was done.

Ray is an optional extra (`pip install 'invtool[ray]'`). One Ray task per job; the model's bytes go into
the object store once and each worker process loads the model once; a task asks for one CPU, and for
one GPU when the cluster has GPUs. `workers=N` starts a local Ray with N CPUs (so N tasks at a time);
`address` joins a running cluster, after checking within `CONNECT_TIMEOUT` seconds that it answers.

Example:
    >>> with Runner(workers=2) as runner:
    ...     runner.run(jobs, model, lambda job, units: print(job.channels, len(units)))
"""
import os
import socket
import time

import onnx

from ..errors import InvtoolError
from .units import Job, run_job

CONNECT_TIMEOUT = 5.0   # seconds an --address gets to answer
TASK_CPUS = 1           # CPUs (and torch threads) per Ray task: N workers on N cores, none oversubscribed
RAY_EXTRA = "pip install 'invtool[ray]'"


class Runner:
    """Where jobs run: in process (`workers=1`, no `address`) or on Ray; connects on creation, so a bad
    address or a missing Ray is an error before any job starts. `startup_seconds`: Ray's start or join."""

    def __init__(self, workers: int = 1, address: str | None = None):
        if workers < 1:
            raise InvtoolError(f"--workers {workers}: give at least 1")
        self.workers, self.address, self.ray, self.startup_seconds = workers, address, None, 0.0
        if workers == 1 and address is None:
            return
        try:
            import ray
        except ImportError:
            raise InvtoolError(f"--workers {workers}{' --address ' + address if address else ''} runs on Ray, "
                               f"which is not installed; {RAY_EXTRA} (or use --workers 1)") from None
        t0 = time.perf_counter()
        _connect(ray, workers, address)
        self.ray, self.startup_seconds = ray, time.perf_counter() - t0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        if self.ray is not None and self.ray.is_initialized():
            self.ray.shutdown()

    @property
    def description(self) -> dict:
        return {"workers": self.workers, "address": self.address, "ray": self.ray is not None,
                "ray_startup_seconds": round(self.startup_seconds, 2)}

    def run(self, jobs: list[Job], model, on_result, work=None) -> None:
        """Run every job; `on_result(job, results)` in this process as each one finishes. `work(job, model)` does
        a job (the atlas's `run_job` unless told; on Ray, a module-level function, which Ray sends by name)."""
        work = work or run_job
        if self.ray is None:
            for job in jobs:
                on_result(job, work(job, model))
            return
        ray = self.ray
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        task = ray.remote(_ray_job).options(num_cpus=TASK_CPUS, num_gpus=gpus, max_retries=0)
        model_bytes = ray.put(model.proto.SerializeToString())   # a top-level argument: Ray resolves it
        spec = {"path": model.path, "sha256": model.sha256, "preprocess": model.preprocess, "pool": model.pool,
                "device": None if gpus else "cpu", "dtype": model.dtype}
        pending = {task.remote(model_bytes, spec, job, work): job for job in jobs}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(done[0])
                try:
                    units = ray.get(done[0])
                except ray.exceptions.RayTaskError as e:   # the task's own error, one line as in process
                    if isinstance(e.cause, InvtoolError):
                        raise e.cause from None
                    raise
                on_result(job, units)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)


def _connect(ray, workers: int, address: str | None) -> None:
    """Start a local Ray with `workers` CPUs, or join the cluster at `address` once it has answered."""
    if address is None:
        ray.init(num_cpus=workers, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        return
    if address != "auto":
        host, _, port = address.removeprefix("ray://").rpartition(":")
        if not port.isdigit():
            raise InvtoolError(f"--address {address!r} is not HOST:PORT; give the address `ray start --head` prints")
        if problem := _grpc_problem(host or "127.0.0.1", int(port)):
            raise InvtoolError(f"no Ray cluster answers at {address} ({problem}); start one with `ray start --head` "
                               "and pass the address it prints, or use --workers N for a local Ray")
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    except Exception as e:   # Ray >= 2.59's `ray start` turns token authentication on; a client without it is refused
        hint = ("" if os.environ.get("RAY_AUTH_MODE") else
                "; a cluster with token authentication (the default of `ray start` since Ray 2.59) needs "
                "RAY_AUTH_MODE=token in this shell, and RAY_AUTH_TOKEN unless its token file is on this machine")
        raise InvtoolError(f"could not join the Ray cluster at {address}: {str(e).splitlines()[0]}{hint}") from None


# an HTTP/2 client preface and an empty SETTINGS frame: a gRPC server (Ray's GCS, its client server) answers
# with a SETTINGS frame of its own
_H2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _grpc_problem(host: str, port: int) -> str | None:
    """Why `host:port` is not a gRPC server answering within CONNECT_TIMEOUT, or None when it is. ray.init
    itself retries a silent address for minutes; this answers in seconds."""
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT) as s:
            s.settimeout(CONNECT_TIMEOUT)
            s.sendall(_H2_HELLO)
            head = s.recv(9)
    except socket.timeout:
        return f"no answer within {CONNECT_TIMEOUT:g} s"
    except OSError as e:
        return e.strerror or type(e).__name__
    if len(head) < 9 or head[3] != 4:
        return "it answers, but not as a Ray cluster does (gRPC)"
    return None


_MODELS: dict[tuple, object] = {}   # in each Ray worker process: the models it has loaded


def _ray_job(model_bytes: bytes, spec: dict, job, work=run_job) -> list[dict]:
    """A Ray task: `work(job, model)` (the atlas's units), on the model of these bytes (loaded once per worker
    process)."""
    import torch

    torch.set_num_threads(TASK_CPUS)   # Ray sets OMP_NUM_THREADS for its workers only where it was not set
    return work(job, worker_model(model_bytes, spec))


def worker_model(model_bytes: bytes, spec: dict):
    """The model of these bytes as `spec` says (preprocessing, pooling, device, compute dtype), loaded once per
    worker process: every field that changes what it computes is in the cache key."""
    from ..model import FeatureModel

    key = (spec["sha256"], spec["preprocess"], spec["pool"], spec["device"], spec["dtype"])
    if key not in _MODELS:
        _MODELS[key] = FeatureModel(onnx.load_from_string(model_bytes), path=spec["path"], sha256=spec["sha256"],
                                    preprocess=spec["preprocess"], pool=spec["pool"], device=spec["device"],
                                    dtype=spec["dtype"])
    return _MODELS[key]
