"""The ``ray`` executor: each job runs as a Ray task somewhere on a Ray cluster.

The front end keeps its queue, its sockets and its clients; only the training moves. Each job
becomes one *streaming generator* task that asks Ray for a GPU (or ``cpus_per_job`` cores on
a cluster without GPUs), so Ray decides where it runs and holds it until resources are free.
Inside the task :func:`reconstruct_points` runs in a thread; its progress and preview meshes go
through a :class:`queue.Queue` and the generator yields them in small batches between training
steps (each yield carries every event queued by then). The front-end side (:class:`RayExecutor`)
turns those batches back into
:class:`ProgressEvent` / :class:`MeshEvent` calls, so clients see exactly what the local executor
sends them.

Engine errors come back as records (code, message, class name) rather than as Ray's wrapped
exceptions, so a ``bad_input`` is still a ``bad_input``. A worker process or node that dies
mid-job shows up as one of Ray's system errors; the job then fails with ``worker_lost`` or, with
``on_worker_lost="retry"``, starts again (up to ``retries`` times).

A tiled job (more than one tile: ``tiles.size``, or ``mesh.voxel_size`` on a large cloud) runs
the same way, but its task trains none of the tiles itself: it hands each to Ray as a task of
its own (:mod:`.ray_tiles`), so several workers train its tiles at once, and blends and meshes
them when they are in.

Ray is imported here and in :mod:`.ray_tiles`, nowhere else: the engine and the local executor
never need it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import ray
import ray.exceptions
from ray._private import ray_constants  # see _loopback_only

from ...engine.config.reconstruction import ReconstructionConfig
from ...engine.errors import Cancelled, ReconstructionError
from ...engine.events import MeshEvent, ProgressEvent, ReconstructionResult
from ...engine.tiling.tiled_field import tile_count
from ..config import RayConfig, attempts
from ..jobs import Job
from ..security import is_loopback_host
from . import JobRunner

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2
"""How long the runner waits on the task's stream before it looks at ``should_cancel`` again."""
FORCE_CANCEL_AFTER = 10.0
"""Seconds a cancelled task may take to stop by itself before its worker process is killed."""

# Records yielded by the task: tuples whose first item names the kind.
STARTED, PROGRESS, MESH, RESULT, ERROR = "started", "progress", "mesh", "result", "error"
TILE = "tile"
"""A tiled job's record that one of its tiles started (its number, count, attempt and where it runs)."""


class WorkerLost(ReconstructionError):
    """The Ray worker process or node running a job went away before the job ended."""

    code = "worker_lost"


class RayTaskFailure(ReconstructionError):
    """An engine error raised inside a Ray task, with the code and message it had there."""

    def __init__(self, message: str, code: str, remote_class: str) -> None:
        super().__init__(message)
        self.code = code
        self.remote_class = remote_class


# -- the task (runs on a Ray worker) ---------------------------------------------------------

Record = tuple
"""One record of a task's stream: a tuple whose first item names its kind."""
Work = Callable[[Callable[[Record], None], Callable[[], bool]], Record]
"""Work done in a task's thread: ``work(put, should_stop)`` puts its records with ``put`` and
returns its last one (a ``RESULT``)."""


def _streamed(work: Work, name: str) -> Iterator[list[Record]]:
    """Run ``work`` in a thread of this task; yield the records it puts in batches, until (and
    including) its result or the ``ERROR`` record that replaces it when it raises.

    Each batch carries every record queued by then (nothing waits for more: latency). Closing the
    generator (Ray's cancel) makes ``should_stop()`` true, which stops a training at its next step.
    """
    events: queue.Queue[Record] = queue.Queue()
    stop = threading.Event()

    def run() -> None:
        try:
            last = work(events.put, stop.is_set)
        except ReconstructionError as exc:
            events.put((ERROR, exc.code, str(exc), type(exc).__name__))
        except Exception as exc:  # reported to the front end as the failure, not lost
            log.exception("%s crashed", name)
            events.put((ERROR, "internal_error", f"{type(exc).__name__}: {exc}", type(exc).__name__))
        else:
            events.put(last)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        while True:
            try:
                batch = [events.get(timeout=1.0)]
            except queue.Empty:
                continue
            while batch[-1][0] not in (RESULT, ERROR):
                try:
                    batch.append(events.get_nowait())
                except queue.Empty:
                    break
            yield batch
            if batch[-1][0] in (RESULT, ERROR):
                return
    finally:
        stop.set()
        thread.join(timeout=30)


def _started(threads: int) -> list[Record]:
    """The first batch of a task's stream: which process runs it (pid, node, whether it has CUDA).
    Sets the task's torch threads to ``threads`` on a CPU first (0: torch's choice)."""
    import torch

    if threads > 0 and not torch.cuda.is_available():
        torch.set_num_threads(threads)
    where = {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(), "cuda": torch.cuda.is_available()}
    return [(STARTED, where)]


def _run_job(
    points: np.ndarray, normals: np.ndarray | None, colours: np.ndarray | None, config: ReconstructionConfig,
    threads: int, tile_resources: dict[str, float] | None = None, tile_attempts: int = 1,
) -> Iterator[list[Record]]:
    """Train one job; yield lists of event records until (and including) the result or error.

    The first record says which process runs the job (operators and tests read it from the
    front end's log). Closing the generator (Ray's cancel) stops the training at its next step.
    With ``tile_resources`` (a tiled job's) the tiles train as Ray tasks of their own,
    each asking for those resources and tried up to ``tile_attempts`` times
    (:class:`~.ray_tiles.RayTileRunner`); a ``TILE`` record says where each tile attempt runs.
    """
    from ...engine.pipeline import reconstruct_points

    yield _started(threads)

    def train(put: Callable[[Record], None], should_stop: Callable[[], bool]) -> Record:
        def on_progress(event: ProgressEvent) -> None:
            put((PROGRESS, dataclasses.asdict(event)))

        def on_mesh(event: MeshEvent) -> None:
            put((MESH, event.iteration, event.resolution, event.vertices, event.faces, event.final, event.colours))

        options: dict[str, Any] = {}
        if tile_resources is not None:
            from .ray_tiles import RayTileRunner

            def on_tile(number: int, tiles: int, attempt: int, info: dict[str, Any]) -> None:
                put((TILE, number, tiles, attempt, info))

            options["tile_runner"] = RayTileRunner(tile_resources, threads, tile_attempts, on_tile)
        result = reconstruct_points(
            points, normals, config, on_progress=on_progress, on_mesh=on_mesh, should_cancel=should_stop,
            colours=colours, **options,
        )
        # the final mesh itself already went out as the last MESH record
        return (RESULT, result.mode, result.stats, result.timings)

    yield from _streamed(train, "siren-train")


# -- the front-end side --------------------------------------------------------------------------

SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray's own switch for a cluster of one machine; ``0`` makes every Ray process use 127.0.0.1."""


def _is_loopback_address(address: str) -> bool:
    """Whether a Ray address ``host:port`` is on this machine's loopback."""
    return is_loopback_host(address.rsplit(":", 1)[0].strip("[]") if address else "")


def _loopback_only() -> None:
    """Keep a one-machine Ray on 127.0.0.1.

    On Linux Ray otherwise advertises the machine's network address for every node, also for a
    private Ray started by this process (``ray.init(_node_ip_address="127.0.0.1")`` is turned
    back into that address), and its GCS, raylet and workers listen on all interfaces. Ray's
    single-machine mode (the default on macOS and Windows) binds and connects on loopback only;
    its switch is read from the environment when Ray is imported, so it is set both for the
    processes Ray starts from here and for this one.
    """
    os.environ[SINGLE_MACHINE_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def _init_ray(config: RayConfig) -> None:
    """Join ``address`` or start a private Ray on loopback, once per process.

    A loopback ``address`` (another backend's private Ray on this machine) is joined in the
    same single-machine mode, since a driver looks for its raylet at its own node address.
    """
    if ray.is_initialized():
        return
    if not config.address or _is_loopback_address(config.address):
        _loopback_only()
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
    ray.init(address=config.address or None, **kwargs)


def _cluster_gpus() -> int:
    return int(ray.cluster_resources().get("GPU", 0))


class RayExecutor:
    """Runs jobs as Ray tasks; :meth:`run` is a :data:`JobRunner` that any number of worker threads share."""

    def __init__(self, cpus_per_job: int, gpus_per_job: int, on_worker_lost: str = "fail", retries: int = 1) -> None:
        self.cpus_per_job = cpus_per_job
        self.gpus_per_job = gpus_per_job
        self.attempts = attempts(on_worker_lost, retries)
        options: dict[str, Any] = {"num_returns": "streaming", "max_retries": 0, "num_cpus": cpus_per_job}
        self.tile_resources: dict[str, float] = {"num_cpus": cpus_per_job}
        if gpus_per_job:
            options["num_gpus"] = gpus_per_job
            self.tile_resources["num_gpus"] = gpus_per_job
        # our own retry loop decides about lost workers; Ray must not re-run the task by itself
        self.task = ray.remote(_run_job).options(**options)
        # a tiled job's task hands out its tiles (each a task asking for the job's resources) and
        # meshes their blend once they are in: it reserves nothing, which it would hold while its
        # tiles wait for it (Ray lends a task's CPUs to others only while it blocks in ray.get,
        # not while it polls its tiles' streams)
        self.tiled_task = ray.remote(_run_job).options(**{**options, "num_cpus": 0, "num_gpus": 0})

    def run(
        self,
        job: Job,
        on_progress: Callable[[ProgressEvent], None],
        on_mesh: Callable[[MeshEvent], None],
        should_cancel: Callable[[], bool],
    ) -> ReconstructionResult:
        """Run ``job`` on the cluster, retrying on a lost worker as configured."""
        points = ray.put(job.points)
        normals = None if job.normals is None else ray.put(job.normals)
        colours = None if job.colours is None else ray.put(job.colours)
        attempt = 1
        while True:
            try:
                return self._attempt(job, points, normals, colours, job.config, on_progress, on_mesh, should_cancel)
            except WorkerLost as exc:
                if attempt >= self.attempts:
                    raise
                attempt += 1
                log.warning("ray job %s: %s; retrying (attempt %d of %d)", job.id, exc, attempt, self.attempts)

    def _attempt(
        self,
        job: Job,
        points: Any,
        normals: Any,
        colours: Any,
        config: ReconstructionConfig,
        on_progress: Callable[[ProgressEvent], None],
        on_mesh: Callable[[MeshEvent], None],
        should_cancel: Callable[[], bool],
    ) -> ReconstructionResult:
        threads = self.cpus_per_job if config.train.threads == 0 else config.train.threads
        if _is_tiled(job.points, config):
            stream: Any = self.tiled_task.remote(points, normals, colours, config, threads, self.tile_resources,
                                                 self.attempts)
        else:
            stream = self.task.remote(points, normals, colours, config, threads)  # an ObjectRefGenerator
        submitted = time.monotonic()
        final: MeshEvent | None = None
        while True:
            if should_cancel():
                self._cancel(job, stream)
                raise Cancelled("cancelled")
            ready, _ = ray.wait([stream], timeout=POLL_SECONDS)
            if not ready:
                continue
            try:
                ref = next(stream)
            except StopIteration:
                raise WorkerLost(f"the Ray task of job {job.id} ended without a result") from None
            try:
                batch = ray.get(ref)
            except ray.exceptions.RayError as exc:
                raise _task_error(f"job {job.id}", exc) from exc
            for record in batch:
                kind = record[0]
                if kind == STARTED:
                    info = record[1]
                    log.info(
                        "ray job %s on pid %d (node %s, %s), %.2f s after submit",
                        job.id,
                        info["pid"],
                        info["node"],
                        "GPU" if info["cuda"] else "CPU",
                        time.monotonic() - submitted,
                    )
                elif kind == TILE:
                    _, number, tiles, attempt, info = record
                    log.info(
                        "ray job %s tile %d of %d (attempt %d) on pid %d (node %s, %s)",
                        job.id, number + 1, tiles, attempt, info["pid"], info["node"], "GPU" if info["cuda"] else "CPU",
                    )
                elif kind == PROGRESS:
                    on_progress(ProgressEvent(**record[1]))
                elif kind == MESH:
                    _, iteration, resolution, vertices, faces, is_final, vertex_colours = record
                    event = MeshEvent(iteration, resolution, vertices, faces, is_final, vertex_colours)
                    if is_final:
                        # held until the result record: a worker lost in between (and the job
                        # retried) must not have sent a final mesh already
                        final = event
                    else:
                        on_mesh(event)
                elif kind == RESULT:
                    _, mode, stats, timings = record
                    if final is None:
                        raise WorkerLost(f"the Ray task of job {job.id} ended without its final mesh")
                    on_mesh(final)
                    return ReconstructionResult(final.vertices, final.faces, mode, stats, timings, None, final.colours)
                elif kind == ERROR:
                    _, code, message, remote_class = record
                    if code == Cancelled.code:
                        raise Cancelled(message)
                    raise RayTaskFailure(message, code, remote_class)

    def _cancel(self, job: Job, stream: Any) -> None:
        """Stop the task: politely first (it ends its training thread), by force if it lingers."""
        try:
            ray.cancel(stream)
        except (ray.exceptions.RayError, ValueError, TypeError) as exc:
            log.warning("ray job %s: cancel failed: %s", job.id, exc)
            return

        def make_sure() -> None:
            ready, _ = ray.wait([stream], timeout=FORCE_CANCEL_AFTER)
            deadline = time.monotonic() + FORCE_CANCEL_AFTER
            while ready and time.monotonic() < deadline:
                try:
                    ray.get(next(stream))
                except StopIteration:
                    return
                except ray.exceptions.RayError:
                    return
                ready, _ = ray.wait([stream], timeout=FORCE_CANCEL_AFTER)
            log.warning(
                "ray job %s did not stop within %.0f s of its cancel: killing its worker", job.id, FORCE_CANCEL_AFTER
            )
            try:
                ray.cancel(stream, force=True)
            except (ray.exceptions.RayError, ValueError, TypeError) as exc:
                log.warning("ray job %s: forced cancel failed: %s", job.id, exc)

        threading.Thread(target=make_sure, name=f"ray-cancel-{job.id[:8]}", daemon=True).start()


LOST_WORKER_ERRORS: tuple[type[BaseException], ...] = (
    ray.exceptions.WorkerCrashedError,
    ray.exceptions.NodeDiedError,
    ray.exceptions.ObjectLostError,
    ray.exceptions.LocalRayletDiedError,
    ray.exceptions.RaySystemError,
    ray.exceptions.RayActorError,
)
"""Ray's ways of saying the process or machine running a task went away (``OwnerDiedError`` and
``ObjectReconstructionFailedError`` are :class:`ObjectLostError` subclasses, ``ActorDiedError`` a
:class:`RayActorError`)."""


def _is_tiled(points: np.ndarray, config: ReconstructionConfig) -> bool:
    """Whether ``config`` fits ``points`` as more than one tile (points the engine refuses are not:
    the job's task reports the engine's error)."""
    try:
        return tile_count(points, config) > 1
    except ReconstructionError:
        return False


def _task_error(task: str, exc: BaseException) -> ReconstructionError:
    """What a Ray error raised while reading the stream of a task (``task`` names it: ``job <id>``)
    means for it.

    A lost worker or node becomes :class:`WorkerLost` (failed or retried by the caller), also
    when Ray hands it over wrapped in a :class:`RayTaskError`. Anything else the task raised
    outside the engine (say ``torch`` missing on a node) fails it with ``internal_error``
    and the first line of the real cause, not Ray's multi-line wrapper.
    """
    cause = exc
    if isinstance(exc, ray.exceptions.RayTaskError) and getattr(exc, "cause", None) is not None:
        cause = exc.cause
    if isinstance(cause, ray.exceptions.TaskCancelledError):
        return Cancelled("cancelled")
    if isinstance(cause, ReconstructionError):
        return RayTaskFailure(str(cause), cause.code, type(cause).__name__)
    if isinstance(cause, ray.exceptions.OutOfMemoryError):
        return WorkerLost(f"Ray killed the worker of {task} for lack of memory: {_first_line(cause)}")
    if isinstance(cause, LOST_WORKER_ERRORS):
        return WorkerLost(
            f"the Ray worker running {task} died mid-job ({type(cause).__name__}: {_first_line(cause)})"
        )
    return RayTaskFailure(
        f"the Ray task of {task} failed: {type(cause).__name__}: {_first_line(cause)}",
        "internal_error",
        type(cause).__name__,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _largest_node_cpus() -> int:
    """CPUs of the biggest live node: a task asking for more could never be placed (Ray would hold it forever)."""
    sizes = [int(node.get("Resources", {}).get("CPU", 0)) for node in ray.nodes() if node.get("Alive")]
    return max(sizes, default=0)


def cpus_per_job(requested: int, largest_node: int) -> int:
    """``requested`` cores, at least 1 and at most what the largest node has (when that is known)."""
    wanted = max(1, requested)
    return min(wanted, largest_node) if largest_node > 0 else wanted


def ray_runners(config: RayConfig) -> list[tuple[JobRunner, str]]:
    """Connect to (or start) Ray and return one runner per job the cluster can run at once.

    Jobs ask for one GPU each; a cluster without GPUs gives each ``cpus_per_job`` cores
    instead. ``concurrent_jobs`` overrides how many jobs the front end hands Ray at once
    (more than fit just queue inside Ray).
    """
    _init_ray(config)
    gpus = _cluster_gpus()
    cpus = int(ray.cluster_resources().get("CPU", 0))
    per_job = cpus_per_job(config.cpus_per_job, _largest_node_cpus())
    if not gpus and per_job != config.cpus_per_job:
        log.warning(
            "ray_cpus_per_job %d: no node of the cluster has that many CPUs; each job asks for %d",
            config.cpus_per_job,
            per_job,
        )
    if gpus:
        executor = RayExecutor(1, 1, config.on_worker_lost, config.retries)
        fits = gpus
    else:
        executor = RayExecutor(per_job, 0, config.on_worker_lost, config.retries)
        fits = max(1, cpus // per_job)
    count = config.concurrent_jobs if config.concurrent_jobs > 0 else fits
    log.info("ray cluster at %s", ray.get_runtime_context().gcs_address)
    log.info(
        "ray executor: cluster of %d CPUs and %d GPUs, each job asks for %s, %d jobs at once",
        cpus,
        gpus,
        "1 GPU" if gpus else f"{per_job} CPUs",
        count,
    )
    return [(executor.run, f"ray-worker-{index}") for index in range(count)]
