"""The tiles of one tiled job as Ray tasks of their own, so that several workers train them at once.

A tiled job's task (:func:`~.ray._run_job`) gives :func:`~siren_recon.engine.pipeline.reconstruct_points`
a :class:`RayTileRunner`: it submits each tile as a streaming generator task (:func:`_train_tile`)
asking for the job's resources, and Ray runs as many at once as the cluster has room for (the
job's task itself reserves nothing: see :class:`~.ray.RayExecutor`). Only
:data:`IN_FLIGHT_PER_SLOT` times that many tiles are submitted at a time, the next as one ends, so
the job's node makes (and Ray's object store holds) the inputs of those tiles, not of the scene's.
Each tile task streams its progress and, at its end, its field as a
:class:`~siren_recon.engine.tiling.runs.FieldState` (NumPy weights, the frozen config, the
normalisation), which the job's task turns back into a field on its CPU and adds to the preview.
Once all are in, the blend's lattice is meshed in blocks of about a tile's edge, each block a Ray
task of its own with the same resources (:meth:`RayTileRunner.mesh_blocks`, as many at a time as
the tiles), and the job's task welds the blocks' surfaces and cleans the mesh. A tile whose worker
or node dies is submitted again (up to the job's attempts) while the others train on, and so is a
block; a cancelled job cancels its tiles still running.

Ray is imported here and in :mod:`.ray` only: the engine knows only the tile-runner hook.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import ray
import ray.exceptions

from ...engine.errors import Cancelled
from ...engine.events import ProgressEvent
from ...engine.fitting.trainer import ProgressCallback
from ...engine.tiling.block_meshing import BlockInput, BlockPiece
from ...engine.tiling.runs import FieldState, FinishedTile, TileInput, Trainer
from ..config import RayConfig
from .ray import (
    ERROR,
    POLL_SECONDS,
    PROGRESS,
    RESULT,
    STARTED,
    RayTaskFailure,
    Record,
    WorkerLost,
    _cluster_gpus,
    _init_ray,
    _largest_node_cpus,
    _started,
    _streamed,
    _task_error,
    cpus_per_job,
)

log = logging.getLogger(__name__)

IN_FLIGHT_PER_SLOT = 2
"""Tasks of a tiled job submitted at a time (tiles, then mesh blocks), per task the cluster can run
at once: one running and one waiting in each slot keeps the workers busy while the job's node
makes the next input, and bounds the inputs held to what the cluster runs, not the scene's."""

Item = TypeVar("Item")

TileStarted = Callable[[int, int, int, dict[str, Any]], None]
"""Told ``(number, tiles, attempt, where)`` as a tile's task starts: the tile from 0, how many the
job has, the attempt from 1, and ``pid``, ``node`` and ``cuda`` of the process running it."""


def _train_tile(tile: TileInput, trainer: Trainer, threads: int) -> Iterator[list[Record]]:
    """Train one tile; yield lists of records: where it runs, its progress (in the tile's own
    steps), then its field's :class:`FieldState` and losses, or the error."""
    yield _started(threads)

    def train(put: Callable[[Record], None], should_stop: Callable[[], bool]) -> Record:
        def on_progress(event: ProgressEvent) -> None:
            put((PROGRESS, dataclasses.asdict(event)))

        field, losses = tile.train(trainer, on_progress, should_stop)
        return (RESULT, FieldState.of(field), losses)

    yield from _streamed(train, f"siren-tile-{tile.number}")


def _mesh_block(block: BlockInput, threads: int) -> BlockPiece:
    """Mesh one block of a tiled field's lattice where the task runs (its GPU, else its CPU with
    ``threads`` torch threads)."""
    import torch

    cuda = torch.cuda.is_available()
    if threads > 0 and not cuda:
        torch.set_num_threads(threads)
    return block.mesh(torch.device("cuda" if cuda else "cpu"))


class RayTileRunner:
    """A :class:`~siren_recon.engine.tiling.runs.TileRunner` that trains each tile as a Ray task.

    ``resources`` are the Ray options each tile task asks for (``num_cpus``, ``num_gpus``),
    ``threads`` the torch threads it trains with on a CPU (0: torch's choice), ``attempts`` how
    many times a tile is tried when its worker dies, ``on_started`` is told where each
    attempt runs, and ``in_flight_per_slot`` is how many tasks are submitted at a time per task
    the cluster can run at once.
    """

    def __init__(self, resources: dict[str, float], threads: int, attempts: int,
                 on_started: TileStarted | None = None, in_flight_per_slot: int = IN_FLIGHT_PER_SLOT) -> None:
        self.resources = dict(resources)
        self.threads = threads
        self.attempts = max(1, attempts)
        self.on_started = on_started
        self.in_flight_per_slot = max(1, in_flight_per_slot)

    def __call__(self, tiles: Sequence[TileInput], trainer: Trainer,
                 progress: Callable[[int], ProgressCallback | None],
                 should_cancel: Callable[[], bool] | None) -> Iterator[FinishedTile]:
        """Submit the tiles, :meth:`in_flight` at a time; yield each one's field as it arrives (see
        the class)."""
        # Ray re-running a streaming task by itself would replay its stream: the loop below retries
        task = ray.remote(_train_tile).options(num_returns="streaming", max_retries=0, **self.resources)
        running: dict[Any, tuple[TileInput, int]] = {}  # ObjectRefGenerator -> (tile, attempt)
        unsent = Feed(tiles, self.in_flight)

        def submit(tile: TileInput, attempt: int) -> None:
            running[task.remote(tile, trainer, self.threads)] = (tile, attempt)

        try:
            while True:
                for tile in unsent.take(len(running)):
                    submit(tile, 1)
                if not running:
                    break
                if should_cancel is not None and should_cancel():
                    raise Cancelled("cancelled")
                ready: list[Any] = ray.wait(list(running), num_returns=1, timeout=POLL_SECONDS)[0]
                for stream in ready:
                    tile, attempt = running[stream]
                    what = f"tile {tile.number + 1} of {len(tiles)}"
                    try:
                        batch = ray.get(next(stream))
                    except StopIteration:
                        error: Exception = WorkerLost(f"the Ray task of {what} ended without its field")
                    except ray.exceptions.RayError as exc:
                        error = _task_error(what, exc)
                    else:
                        finished = self._read(batch, tile, attempt, len(tiles), progress)
                        if finished is not None:
                            del running[stream]
                            yield finished
                        continue
                    del running[stream]
                    if not isinstance(error, WorkerLost) or attempt >= self.attempts:
                        raise error
                    log.warning("%s: %s; retrying it (attempt %d of %d)", what, error, attempt + 1, self.attempts)
                    submit(tile, attempt + 1)
        finally:
            _cancel(running, "a tile's task")

    def mesh_blocks(self, blocks: Sequence[BlockInput], device: object = None,
                    should_cancel: Callable[[], bool] | None = None) -> Iterator[BlockPiece]:
        """A :class:`~siren_recon.engine.tiling.block_meshing.BlockMesher`: each block of the tiled
        field's lattice meshed as a Ray task asking for the tiles' resources (``device``, where
        the fields are in this process, is not used: each task meshes on what it has); yields
        each block's surface as it arrives. A block whose worker dies is tried again, as a tile
        is (up to ``attempts`` in all); once ``should_cancel()`` is true the blocks still running
        are cancelled and :class:`~siren_recon.engine.errors.Cancelled` is raised."""
        task = ray.remote(_mesh_block).options(max_retries=self.attempts - 1, **self.resources)
        waiting: dict[Any, BlockInput] = {}
        unsent = Feed(blocks, self.in_flight)
        try:
            while True:
                for block in unsent.take(len(waiting)):
                    waiting[task.remote(block, self.threads)] = block
                if not waiting:
                    break
                if should_cancel is not None and should_cancel():
                    raise Cancelled("cancelled while meshing")
                ready: list[Any] = ray.wait(list(waiting), num_returns=1, timeout=POLL_SECONDS)[0]
                for ref in ready:
                    block = waiting.pop(ref)
                    try:
                        piece = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        raise _task_error(f"block {block.number + 1} of {len(blocks)} of the mesh", exc) from exc
                    yield piece
        finally:
            _cancel(waiting, "a mesh block's task")

    def in_flight(self) -> int:
        """How many of a job's tasks to have submitted at a time: ``in_flight_per_slot`` times what
        the cluster (as it is now) can run at once (:func:`tasks_at_once`)."""
        return self.in_flight_per_slot * tasks_at_once(ray.cluster_resources(), self.resources)

    def _read(self, batch: list[Record], tile: TileInput, attempt: int, tiles: int,
              progress: Callable[[int], ProgressCallback | None]) -> FinishedTile | None:
        """Pass on one batch of a tile task's records; the tile's field when the batch ends with it."""
        report = progress(tile.number)
        for record in batch:
            kind = record[0]
            if kind == STARTED and self.on_started is not None:
                self.on_started(tile.number, tiles, attempt, record[1])
            elif kind == PROGRESS and report is not None:
                report(ProgressEvent(**record[1]))
            elif kind == RESULT:
                _, state, losses = record
                return FinishedTile(tile.number, state.field("cpu"), losses)
            elif kind == ERROR:
                _, code, message, remote_class = record
                if code == Cancelled.code:
                    raise Cancelled(message)
                raise RayTaskFailure(message, code, remote_class)
        return None


class Feed(Generic[Item]):
    """``items`` handed out in order so that at most ``limit()`` are outstanding at a time;
    ``limit`` is asked at the first hand-out and then only when one has ended since the last
    and items are left (a runner's loop calls :meth:`take` at every poll)."""

    def __init__(self, items: Sequence[Item], limit: Callable[[], int]) -> None:
        self.items = items
        self.limit = limit
        self.sent = 0
        self.out_after = -1
        """Outstanding right after the last hand-out (-1: none yet): fewer now means one ended."""

    def take(self, outstanding: int) -> list[Item]:
        """The next items to submit, given ``outstanding`` submitted and not yet done."""
        if self.sent >= len(self.items) or outstanding >= self.out_after >= 0:
            return []
        end = min(len(self.items), self.sent + max(0, self.limit() - outstanding))
        taken = [self.items[number] for number in range(self.sent, end)]
        self.sent = end
        self.out_after = outstanding + len(taken)
        return taken


def tasks_at_once(cluster: dict[str, float], resources: dict[str, float]) -> int:
    """How many tasks each asking for ``resources`` (Ray's ``num_cpus``, ``num_gpus``) fit in
    ``cluster`` (Ray's ``cluster_resources()``: ``CPU``, ``GPU``) at once; at least 1."""
    fits = [int(cluster.get(name, 0.0) / resources[option] + 1e-9)
            for option, name in (("num_cpus", "CPU"), ("num_gpus", "GPU")) if resources.get(option, 0) > 0]
    return max(1, min(fits, default=1))


def _cancel(tasks: Iterable[Any], what: str) -> None:
    """Cancel Ray tasks still running (``what`` names them in the warning when one cannot be)."""
    for task in tasks:
        try:
            ray.cancel(task)
        except (ray.exceptions.RayError, ValueError, TypeError) as exc:
            log.warning("cancelling %s failed: %s", what, exc)


def cluster_tile_runner(config: RayConfig, threads: int = 0) -> RayTileRunner:
    """A :class:`RayTileRunner` on the Ray cluster at ``config.address`` (``""``: a private Ray on
    this machine's loopback), for a tiled run outside a backend (the CLI's ``--ray``, a script).

    Each tile asks for one GPU where the cluster has GPUs, else ``config.cpus_per_job`` cores (at
    most a node's), and trains with ``threads`` torch threads on a CPU (0: as many as it asked
    cores for); a tile whose worker dies is tried as often as ``config.attempts`` allows.
    """
    _init_ray(config)
    if _cluster_gpus():
        resources: dict[str, float] = {"num_cpus": 1, "num_gpus": 1}
    else:
        resources = {"num_cpus": cpus_per_job(config.cpus_per_job, _largest_node_cpus())}
    return RayTileRunner(resources, threads or int(resources["num_cpus"]), config.attempts)
