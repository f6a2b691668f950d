"""The ``ray`` executor: a real backend process on 127.0.0.1 running its jobs on a local Ray.

Ray runs with CPU resources only (``--ray-cpus-per-job 1``); the jobs are tiny so the whole
module takes about a minute on two cores.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("ray")

import ray.exceptions

from siren_recon.engine.errors import Cancelled, InputError
from siren_recon.protocol import JobCancelled, JobDone, JobFailed, MeshUpdate, Progress
from siren_recon.protocol.client import Client
from siren_recon.server.executors.ray import WorkerLost, _is_loopback_address, _task_error, cpus_per_job
from siren_recon.server.jobs import Job
from siren_recon.server.worker import run_in_process

from .live_backend import free_port, start_backend
from .shapes import SMALL, small_config, sphere_cloud
from .test_server import accepted, collect, finished

pytestmark = [pytest.mark.ray]

JOB = {
    **SMALL, "train.iterations": 80, "train.progress_every": 10, "train.threads": 1,
    "preview.enabled": True, "preview.first_iteration": 20, "preview.min_resolution": 16,
    "preview.max_resolution": 24, "mesh.resolution": 32,
}
LONG = {**JOB, "train.iterations": 100_000, "preview.enabled": False}


def stop(process) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except Exception:
        process.kill()
        raise


@pytest.fixture(scope="module")
def ray_backend(tmp_path_factory):
    """A backend whose jobs fail when their Ray worker dies; it also starts the local Ray cluster."""
    port = free_port()
    log = tmp_path_factory.mktemp("ray_backend") / "log.txt"
    process = start_backend(port, log, "--executor", "ray", "--ray-cpus-per-job", "1",
                            "--ray-on-worker-lost", "fail")
    yield f"tcp://127.0.0.1:{port}", log
    stop(process)


def ray_pid(log, job: str, timeout: float = 300.0, after: int = 0) -> int:
    """The pid of the Ray worker running ``job`` as the front end logged it (the ``after``-th such line)."""
    pattern = re.compile(rf"ray job {job} on pid (\d+)")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = pattern.findall(Path(log).read_text())
        if len(found) > after:
            return int(found[after])
        time.sleep(0.05)
    raise AssertionError(f"no Ray pid logged for job {job}")


def local_meshes(points: np.ndarray, normals: np.ndarray | None, overrides: dict = JOB,
                 colours: np.ndarray | None = None) -> list:
    """Every mesh (previews, then the final one) the ``local`` executor's runner makes of this job."""
    threads = torch.get_num_threads()
    config = small_config(**{k.replace(".", "__"): v for k, v in overrides.items()}, train__device="cpu")
    job = Job(id="local", client=b"", owner="", result_owner="", tag="", detached=False,
              points=points.astype(np.float32), normals=None if normals is None else normals.astype(np.float32),
              colours=colours, config=config)
    meshes: list = []
    try:
        run_in_process(job, lambda event: None, meshes.append, lambda: False)
    finally:
        torch.set_num_threads(threads)
    return meshes


@pytest.mark.live
@pytest.mark.slow
def test_two_clients_get_previews_and_the_local_mesh(ray_backend):
    address, log = ray_backend
    clouds = [sphere_cloud(800, radius=1.0, seed=1), sphere_cloud(800, radius=3.0, centre=(1.0, 0.0, -2.0), seed=2)]
    colours = [None, np.random.default_rng(3).random((800, 3)).astype(np.float32)]  # the second cloud has colours
    with Client(address=address) as a, Client(address=address) as b:
        requests = [a.submit(*clouds[0], colours[0], overrides=JOB, tag="a"),
                    b.submit(*clouds[1], colours[1], overrides=JOB, tag="b")]
        ea: list = []
        eb: list = []
        deadline = time.monotonic() + 600  # generous: a new Ray worker takes minutes to start on a loaded machine
        while not (finished(JobDone)(ea) and finished(JobDone)(eb)):
            ea += a.poll(20)
            eb += b.poll(20)
            assert not any(isinstance(e, JobFailed) for e in ea + eb), [e for e in ea + eb if isinstance(e, JobFailed)]
            assert time.monotonic() < deadline
    for events, request, (points, normals), cloud_colours in zip((ea, eb), requests, clouds, colours):
        job = accepted(events, request)
        assert {e.job for e in events if isinstance(e, (Progress, MeshUpdate, JobDone))} == {job}
        ray_pid(log, job)  # it really ran on a Ray worker
        meshes = [e for e in events if isinstance(e, MeshUpdate)]
        previews = [m for m in meshes if not m.final]
        assert len(previews) >= 2 and meshes[-1].final and meshes[-1].iteration == 80
        progress = [e for e in events if isinstance(e, Progress)]
        assert progress[-1].iteration == 80 and progress[-1].mode == "oriented"
        done = next(e for e in events if isinstance(e, JobDone))
        assert done.timings["train"] > 0 and done.stats["faces"] == len(meshes[-1].faces)
        # same cloud, settings and seed on the same device (CPU): bit for bit what the local
        # executor makes, previews included
        local = local_meshes(points, normals, colours=cloud_colours)
        assert [(m.iteration, m.resolution, m.final) for m in meshes] == [
            (m.iteration, m.resolution, m.final) for m in local]
        for remote, mine in zip(meshes, local):
            # the engine's float64 vertices travel as the protocol's float32
            np.testing.assert_array_equal(remote.vertices, mine.vertices.astype(np.float32))
            np.testing.assert_array_equal(remote.faces, mine.faces)
            if cloud_colours is None:
                assert remote.colours is None
            else:  # the cloud's colours, carried onto every mesh on the Ray worker as the local executor does
                np.testing.assert_array_equal(remote.colours, mine.colours.astype(np.float32))


@pytest.mark.live
@pytest.mark.slow
def test_an_engine_error_on_the_worker_keeps_its_code_and_message(ray_backend):
    """Mode ``oriented`` without normals passes the front end's checks and fails inside the engine."""
    address, _ = ray_backend
    points, _ = sphere_cloud(300)
    overrides = {**JOB, "mode": "oriented"}
    with pytest.raises(InputError) as local:
        local_meshes(points, None, overrides)
    with Client(address=address) as client:
        client.submit(points, None, overrides=overrides, tag="no normals")
        events = collect(client, finished(JobFailed), timeout=300)
    failed = next(e for e in events if isinstance(e, JobFailed))
    assert (failed.code, failed.message) == (local.value.code, str(local.value)) == (
        "missing_normals", "mode 'oriented' needs normals, and this cloud has none")


def test_ray_errors_are_told_apart():
    """Lost workers (also wrapped in a RayTaskError) are ``worker_lost``; other task crashes say their cause."""
    crashed = _task_error("job j1", ray.exceptions.WorkerCrashedError())
    assert isinstance(crashed, WorkerLost) and crashed.code == "worker_lost" and "j1" in str(crashed)
    died = ray.exceptions.NodeDiedError("node 7 died")
    wrapped = _task_error("job j2", ray.exceptions.RayTaskError("_run_job", "Traceback ...", died))
    assert isinstance(wrapped, WorkerLost) and "NodeDiedError: node 7 died" in str(wrapped)
    owner = _task_error("job j3", ray.exceptions.OwnerDiedError("00" * 28, None, "here"))
    assert isinstance(owner, WorkerLost)
    crash = _task_error(
        "job j4",
        ray.exceptions.RayTaskError(
            "_run_job", "Traceback\n  ...\nModuleNotFoundError", ModuleNotFoundError("No module named 'torch'")
        ),
    )
    assert crash.code == "internal_error"
    assert str(crash) == "the Ray task of job j4 failed: ModuleNotFoundError: No module named 'torch'"
    assert isinstance(_task_error("job j5", ray.exceptions.TaskCancelledError()), Cancelled)


def test_cpus_per_job_never_asks_for_more_than_a_node_has():
    # a task asking for more CPUs than any node has would wait in Ray forever
    assert cpus_per_job(4, 2) == 2
    assert cpus_per_job(1, 16) == 1
    assert cpus_per_job(0, 16) == 1
    assert cpus_per_job(3, 0) == 3  # node sizes unknown: as asked


@pytest.mark.parametrize(
    "address, loopback",
    [
        ("127.0.0.1:6379", True),
        ("localhost:6379", True),
        ("[::1]:6379", True),
        ("127.0.0.2:10001", True),
        ("10.0.0.7:6379", False),
        ("head.example:6379", False),
        ("", False),
    ],
)
def test_only_a_loopback_ray_address_joins_in_single_machine_mode(address, loopback):
    assert _is_loopback_address(address) is loopback


@pytest.mark.live
@pytest.mark.slow
def test_cancel_reaches_the_running_task(ray_backend):
    address, log = ray_backend
    points, normals = sphere_cloud(800)
    with Client(address=address) as client:
        request = client.submit(points, normals, overrides=LONG, tag="long")
        events = collect(client, lambda ev: any(isinstance(e, Progress) for e in ev), timeout=300)
        job = accepted(events, request)
        pid = ray_pid(log, job)
        sent = time.monotonic()
        client.cancel(job)
        events += collect(client, lambda ev: any(isinstance(e, JobCancelled) and e.job == job for e in ev), timeout=10)
        assert time.monotonic() - sent < 3.0
        # the task itself stops: no more progress of the job arrives, and its Ray worker (kept
        # alive by Ray for the next task) goes idle instead of training on
        time.sleep(1.5)
        events = client.poll(200)
        assert not any(isinstance(e, Progress) and e.job == job for e in events)
        before = cpu_seconds(pid)
        time.sleep(1.0)
        assert cpu_seconds(pid) - before < 0.3


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.live
@pytest.mark.slow
def test_a_killed_worker_fails_the_job_with_worker_lost(ray_backend):
    address, log = ray_backend
    points, normals = sphere_cloud(800)
    with Client(address=address) as client:
        request = client.submit(points, normals, overrides=LONG, tag="doomed")
        events = collect(client, lambda ev: any(isinstance(e, Progress) for e in ev), timeout=300)
        job = accepted(events, request)
        os.kill(ray_pid(log, job), signal.SIGKILL)
        events += collect(
            client, lambda ev: any(isinstance(e, (JobFailed, JobDone)) and e.job == job for e in ev), timeout=300
        )
    failed = next(e for e in events if isinstance(e, JobFailed))
    assert failed.code == "worker_lost"
    assert "died" in failed.message and job in failed.message


@pytest.mark.live
@pytest.mark.slow
def test_a_killed_worker_is_retried_with_retry(ray_backend, tmp_path, monkeypatch):
    """A second front end joins the first one's Ray cluster (``--ray-address``) and retries lost jobs."""
    # a local Ray made by ray.init() wants its token (~/.ray/auth_token) from every driver that joins
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    _, first_log = ray_backend
    cluster = re.search(r"ray cluster at (\S+)", Path(first_log).read_text()).group(1)
    assert cluster.startswith("127.0.0.1:")  # the backend's private Ray stays on loopback
    port = free_port()
    log = tmp_path / "log.txt"
    process = start_backend(
        port,
        log,
        "--executor",
        "ray",
        "--ray-address",
        cluster,
        "--ray-cpus-per-job",
        "1",
        "--ray-on-worker-lost",
        "retry",
        "--ray-retries",
        "1",
    )
    try:
        points, normals = sphere_cloud(800)
        slow = {**JOB, "train.iterations": 400, "preview.enabled": False}
        with Client(address=f"tcp://127.0.0.1:{port}") as client:
            request = client.submit(points, normals, overrides=slow, tag="retried")
            events = collect(client, lambda ev: any(isinstance(e, Progress) for e in ev), timeout=300)
            job = accepted(events, request)
            os.kill(ray_pid(log, job), signal.SIGKILL)
            events += collect(client, lambda ev: any(isinstance(e, (JobFailed, JobDone)) for e in ev), timeout=300)
        assert any(isinstance(e, JobDone) and e.job == job for e in events), [type(e).__name__ for e in events]
        assert ray_pid(log, job, after=1) > 0  # a second attempt started on another worker
        assert "retrying" in log.read_text()
        final = [e for e in events if isinstance(e, MeshUpdate) and e.final]
        assert len(final) == 1 and len(final[0].faces) > 0
    finally:
        stop(process)
