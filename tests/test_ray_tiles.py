"""A tiled job through the ``ray`` executor: its tiles train as Ray tasks of their own, side by side.

This module drives :class:`RayExecutor` in the test process on a private Ray of two CPUs on
127.0.0.1 (each tile asks for one CPU; a tiled job's own task reserves none while its tiles
train), so the tests see the engine's events and the executor's log directly. The
capsule of ``test_tiling`` spans two tiles; tiny networks keep the module near a minute.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np
import pytest
import torch

pytest.importorskip("ray")

import ray

from siren_recon.engine.events import MeshEvent, ProgressEvent, ReconstructionResult
from siren_recon.engine.pipeline import reconstruct_points
from siren_recon.engine.tiling.block_meshing import mesh_in_turn
from siren_recon.engine.tiling.runs import FieldState, TileProgress
from siren_recon.engine.tiling.tiled_field import TiledField
from siren_recon.server.executors.ray import SINGLE_MACHINE_ENV, RayExecutor, _loopback_only
from siren_recon.server.executors.ray_tiles import Feed, RayTileRunner, tasks_at_once
from siren_recon.server.jobs import Job

from .shapes import small_config
from .test_tiling import capsule_cloud

pytestmark = [pytest.mark.ray]

TILED = {"train.iterations": 200, "tiles.iteration_share": 1.0, "train.threads": 1, "tiles.size": 2.3,
         "mesh.resolution": 32,
         "preview.enabled": True, "preview.min_resolution": 16, "preview.max_resolution": 24,
         "train.device": "cpu"}
"""Two tiles of 200 steps each, one thread each: a few seconds a tile on one core."""
TILE_LINE = re.compile(r"ray job (\S+) tile (\d+) of (\d+) \(attempt (\d+)\) on pid (\d+)")


def config_of(overrides: dict):
    return small_config(**{key.replace(".", "__"): value for key, value in overrides.items()})


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """A private Ray on loopback with two CPUs and no GPU, for this module only."""
    saved = {name: os.environ.get(name) for name in (SINGLE_MACHINE_ENV, "CUDA_VISIBLE_DEVICES")}
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    _loopback_only()
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_job(executor: RayExecutor, points: np.ndarray, normals: np.ndarray, overrides: dict,
            on_progress=None, should_cancel=None) -> tuple[ReconstructionResult, list[ProgressEvent], list[MeshEvent]]:
    """``executor`` running one job of this cloud to its end, and the events it reported."""
    job = Job(id=f"tiled-{time.monotonic_ns()}", client=b"", owner="", result_owner="", tag="", detached=False,
              points=points.astype(np.float32), normals=normals.astype(np.float32), colours=None,
              config=config_of(overrides))
    progress: list[ProgressEvent] = []
    meshes: list[MeshEvent] = []

    def report(event: ProgressEvent) -> None:
        progress.append(event)
        if on_progress is not None:
            on_progress(event)

    result = executor.run(job, report, meshes.append, should_cancel or (lambda: False))
    return result, progress, meshes


def local_run(points: np.ndarray, normals: np.ndarray, overrides: dict) -> ReconstructionResult:
    """The same job in this process, tiles in turn (the cloud as the job carries it: float32)."""
    threads = torch.get_num_threads()
    try:
        return reconstruct_points(points.astype(np.float32), normals.astype(np.float32), config_of(overrides))
    finally:
        torch.set_num_threads(threads)


def tile_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, int, int, int]]:
    """(tile, tiles, attempt, pid) of every tile start the executor logged."""
    found = [TILE_LINE.search(record.getMessage()) for record in caplog.records]
    return [(int(m[2]), int(m[3]), int(m[4]), int(m[5])) for m in found if m]


def test_tile_progress_counts_all_tiles_steps_never_backwards():
    seen: list[ProgressEvent] = []
    progress = TileProgress(seen.append, tiles=2, steps=10)

    def event(step: int) -> ProgressEvent:
        return ProgressEvent(step, 10, {"total": 1.0}, 5.0, 1.0, "oriented")

    first, second = progress.tile(0), progress.tile(1)
    assert first is not None and second is not None
    first(event(4))
    second(event(3))
    second(event(1))  # the tile trained again from the start (its worker died): the count holds
    first(event(10))
    progress.finished(0)
    second(event(10))
    assert [(e.iteration, e.total, e.tile, e.tiles) for e in seen] == [
        (4, 20, 1, 2), (7, 20, 2, 2), (7, 20, 2, 2), (13, 20, 1, 2), (20, 20, 2, 2)]
    assert seen[1].eta_seconds == pytest.approx(13 / (5.0 * 2))  # two tiles training: twice the speed


def test_a_field_state_rebuilds_the_same_field():
    points, normals = capsule_cloud(1500)
    field = local_run(points, normals, {**TILED, "tiles.size": 0, "train.iterations": 20}).field
    rebuilt = FieldState.of(field).field()
    probe = np.random.default_rng(0).uniform(-2, 2, (500, 3))
    np.testing.assert_array_equal(rebuilt.sdf(probe), field.sdf(probe))
    assert (rebuilt.normalization, rebuilt.config, rebuilt.mode, rebuilt.bounds, rebuilt.noise_ratio) == (
        field.normalization, field.config, field.mode, field.bounds, field.noise_ratio)
    np.testing.assert_array_equal(rebuilt.support, field.support)


@pytest.mark.live
@pytest.mark.slow
def test_two_workers_train_the_tiles_and_the_mesh_is_the_local_one(ray_cluster, caplog):
    caplog.set_level(logging.INFO, logger="siren_recon.server.executors")
    points, normals = capsule_cloud(3000)
    executor = RayExecutor(cpus_per_job=1, gpus_per_job=0)
    result, progress, meshes = run_job(executor, points, normals, TILED)
    local = local_run(points, normals, TILED)
    assert isinstance(local.field, TiledField) and len(local.field.tiles) == 2
    # same cloud, settings, seeds and threads on the same CPU: the tiles' fields come back bit for bit
    np.testing.assert_array_equal(result.vertices, local.vertices)
    np.testing.assert_array_equal(result.faces, local.faces)
    starts = tile_lines(caplog)
    assert sorted(tile for tile, _, _, _ in starts) == [1, 2] and {tiles for _, tiles, _, _ in starts} == {2}
    assert len({pid for _, _, _, pid in starts}) == 2, starts  # two Ray workers, one tile each
    # progress: every event names its tile; the count over both tiles never goes back nor past the total
    assert progress and all(e.tiles == 2 and e.tile in (1, 2) for e in progress)
    counts = [e.iteration for e in progress]
    assert counts == sorted(counts) and all(e.total == 400 for e in progress) and counts[-1] == 400
    assert {e.tile for e in progress} == {1, 2}
    # a preview as each tile ends (in the order they end), then the final mesh
    assert [m.final for m in meshes] == [False, False, True]
    assert meshes[0].iteration <= meshes[1].iteration == 400 and len(meshes[0].faces) < len(meshes[1].faces)
    np.testing.assert_array_equal(meshes[-1].vertices, local.vertices)
    assert result.stats["faces"] == len(local.faces)


@pytest.mark.live
@pytest.mark.slow
def test_the_blend_is_meshed_block_by_block_as_ray_tasks_as_in_this_process(ray_cluster):
    points, normals = capsule_cloud(3000)
    field = local_run(points, normals, {**TILED, "train.iterations": 50, "mesh.resolution": 80}).field
    assert isinstance(field, TiledField)
    blocks = field.lattice_blocks()
    assert len(blocks) >= 3
    runner = RayTileRunner({"num_cpus": 1}, threads=1, attempts=1)
    remote = sorted(runner.mesh_blocks(blocks), key=lambda piece: piece.number)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        here = list(mesh_in_turn(blocks, torch.device("cpu")))
    finally:
        torch.set_num_threads(threads)
    assert [piece.number for piece in remote] == [piece.number for piece in here] == list(range(len(blocks)))
    assert sum(len(piece.faces) > 0 for piece in here) >= 2
    for there, local in zip(remote, here):  # the same networks and threads on the same CPU: the same bits
        np.testing.assert_array_equal(there.points, local.points)
        np.testing.assert_array_equal(there.faces, local.faces)
    # a job cancelled while its mesh is being made stops there, on Ray and in this process
    from siren_recon.engine.errors import Cancelled

    with pytest.raises(Cancelled, match="cancelled while meshing"):
        list(runner.mesh_blocks(blocks, should_cancel=lambda: True))
    asked: list[int] = []
    with pytest.raises(Cancelled, match="before block 2 of"):
        list(mesh_in_turn(blocks, torch.device("cpu"), lambda: bool(asked.append(1)) or len(asked) > 1))


def test_tasks_at_once_is_what_the_scarcest_resource_fits():
    assert tasks_at_once({"CPU": 16.0, "GPU": 8.0}, {"num_cpus": 1, "num_gpus": 1}) == 8
    assert tasks_at_once({"CPU": 6.0, "GPU": 8.0}, {"num_cpus": 4, "num_gpus": 1}) == 1
    assert tasks_at_once({"CPU": 16.0, "GPU": 2.0}, {"num_cpus": 1, "num_gpus": 0.5}) == 4
    assert tasks_at_once({"CPU": 12.0}, {"num_cpus": 4}) == 3
    assert tasks_at_once({"CPU": 0.9 * 3}, {"num_cpus": 0.9}) == 3  # no float rounding below
    assert tasks_at_once({"CPU": 2.0}, {"num_cpus": 4}) == 1  # none fits now: one waits for room
    assert tasks_at_once({"CPU": 8.0}, {"num_cpus": 2, "num_gpus": 1}) == 1  # no GPU yet: one waits


def test_a_feed_hands_out_each_item_once_in_order_within_its_limit():
    limits = iter([3, 5, 1])
    asked: list[int] = []

    def limit() -> int:
        asked.append(1)
        return next(limits)

    feed = Feed(list("abcdefg"), limit)
    assert feed.take(0) == ["a", "b", "c"]
    assert feed.take(3) == [] and len(asked) == 1  # all three still out: nothing more, nothing asked
    assert feed.take(1) == ["d", "e", "f", "g"]  # the limit grew to 5 with one out
    assert feed.take(0) == [] and len(asked) == 2  # nothing left: the limit is not asked again


class Recorded(Sequence):
    """``items`` that note ``("made", number)`` in ``log`` when one is taken."""

    def __init__(self, items: Sequence, log: list[tuple[str, int]]) -> None:
        self.items, self.log = items, log

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, number):  # type: ignore[override]
        self.log.append(("made", number))
        return self.items[number]


class LoggedRunner(RayTileRunner):
    """A :class:`RayTileRunner` whose tiles and blocks note when each is made and when it is done."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.tiles: list[tuple[str, int]] = []
        self.blocks: list[tuple[str, int]] = []

    def __call__(self, tiles, trainer, progress, should_cancel):
        for finished in super().__call__(Recorded(tiles, self.tiles), trainer, progress, should_cancel):
            self.tiles.append(("done", finished.number))
            yield finished

    def mesh_blocks(self, blocks, device=None, should_cancel=None):
        for piece in super().mesh_blocks(Recorded(blocks, self.blocks), device, should_cancel):
            self.blocks.append(("done", piece.number))
            yield piece


def most_outstanding(log: list[tuple[str, int]]) -> int:
    """The most items made and not yet done at any point of ``log``."""
    outstanding = [sum(1 if kind == "made" else -1 for kind, _ in log[:end]) for end in range(len(log) + 1)]
    return max(outstanding)


@pytest.mark.live
@pytest.mark.slow
def test_tiles_and_blocks_are_submitted_as_the_cluster_has_room_and_the_mesh_is_the_local_one(ray_cluster):
    points, normals = capsule_cloud(3000)
    overrides = {**TILED, "train.iterations": 60, "mesh.resolution": 80, "preview.enabled": False}
    # each task asks for both CPUs, so the cluster runs one at a time; one is submitted at a time
    runner = LoggedRunner({"num_cpus": 2}, threads=1, attempts=1, in_flight_per_slot=1)
    threads = torch.get_num_threads()
    try:
        result = reconstruct_points(points.astype(np.float32), normals.astype(np.float32), config_of(overrides),
                                    tile_runner=runner)
    finally:
        torch.set_num_threads(threads)
    local = local_run(points, normals, overrides)
    assert isinstance(local.field, TiledField) and len(local.field.tiles) == 2
    assert runner.tiles == [("made", 0), ("done", 0), ("made", 1), ("done", 1)]
    blocks = len(local.field.lattice_blocks())
    assert blocks >= 3
    assert sorted(number for kind, number in runner.blocks if kind == "made") == list(range(blocks))
    assert len(runner.blocks) == 2 * blocks and most_outstanding(runner.blocks) == 1
    np.testing.assert_array_equal(result.vertices, local.vertices)
    np.testing.assert_array_equal(result.faces, local.faces)
    # a task for one CPU: the two-CPU cluster runs two at a time, and twice that are out at a time
    runner = LoggedRunner({"num_cpus": 1}, threads=1, attempts=1)
    assert runner.in_flight() == 4
    pieces = list(runner.mesh_blocks(local.field.lattice_blocks()))
    assert len(pieces) == blocks and 1 < most_outstanding(runner.blocks) <= 4


@pytest.mark.live
@pytest.mark.slow
def test_a_tile_whose_worker_is_killed_is_trained_again_and_the_job_completes(ray_cluster, caplog):
    caplog.set_level(logging.INFO, logger="siren_recon.server.executors")
    points, normals = capsule_cloud(3000)
    overrides = {**TILED, "train.iterations": 800, "preview.enabled": False}
    executor = RayExecutor(cpus_per_job=1, gpus_per_job=0, on_worker_lost="retry", retries=1)
    killed: dict[str, int] = {}
    lock = threading.Lock()

    def kill_once(event: ProgressEvent) -> None:
        # tile 2's first progress: kill the worker training it, mid-tile
        with lock:
            if killed or event.tile != 2:
                return
            pids = [pid for tile, _, attempt, pid in tile_lines(caplog) if tile == 2 and attempt == 1]
            if pids:
                killed["pid"] = pids[0]
                os.kill(pids[0], signal.SIGKILL)

    started = time.monotonic()
    result, progress, meshes = run_job(executor, points, normals, overrides, on_progress=kill_once)
    assert killed, "tile 2 never reported progress"
    starts = tile_lines(caplog)
    again = [pid for tile, _, attempt, pid in starts if tile == 2 and attempt == 2]
    assert len(again) == 1 and again[0] != killed["pid"]  # tile 2 alone was tried again, elsewhere
    assert [attempt for tile, _, attempt, _ in starts if tile == 1] == [1]
    assert not any("retrying (attempt" in record.getMessage() for record in caplog.records)  # not the whole job
    assert len(result.faces) > 0 and meshes[-1].final
    counts = [e.iteration for e in progress]
    assert counts == sorted(counts) and counts[-1] == 2 * 800
    assert time.monotonic() - started < 300


@pytest.mark.live
@pytest.mark.slow
def test_a_cancelled_tiled_job_stops_its_tiles(ray_cluster, caplog):
    from siren_recon.engine.errors import Cancelled

    caplog.set_level(logging.INFO, logger="siren_recon.server.executors")
    points, normals = capsule_cloud(3000)
    overrides = {**TILED, "train.iterations": 100_000, "preview.enabled": False}
    executor = RayExecutor(cpus_per_job=1, gpus_per_job=0)
    seen: set[int] = set()
    with pytest.raises(Cancelled):
        run_job(executor, points, normals, overrides, on_progress=lambda e: seen.add(e.tile),
                should_cancel=lambda: seen == {1, 2})
    pids = [pid for _, _, _, pid in tile_lines(caplog)]
    assert len(pids) == 2
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(busy(pid) for pid in pids):
        time.sleep(0.5)
    assert not any(busy(pid) for pid in pids)  # both tile workers idle (or gone): no training goes on


def busy(pid: int) -> bool:
    """Whether process ``pid`` used more than 0.3 s of CPU in the last second."""
    from .test_ray_executor import cpu_seconds

    try:
        before = cpu_seconds(pid)
        time.sleep(1.0)
        return cpu_seconds(pid) - before > 0.3
    except FileNotFoundError:
        return False
