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

from backend.engine.metrics import compare_meshes
from backend.engine.pipeline import reconstruct_points
from protocol import JobCancelled, JobDone, JobFailed, MeshUpdate, Progress
from protocol.client import Client

from .live_backend import free_port, start_backend
from .shapes import SMALL, small_config, sphere_cloud
from .test_server import accepted, collect, finished

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


def ray_pid(log, job: str, timeout: float = 60.0, after: int = 0) -> int:
    """The pid of the Ray worker running ``job`` as the front end logged it (the ``after``-th such line)."""
    pattern = re.compile(rf"ray job {job} on pid (\d+)")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = pattern.findall(Path(log).read_text())
        if len(found) > after:
            return int(found[after])
        time.sleep(0.05)
    raise AssertionError(f"no Ray pid logged for job {job}")


def local_mesh(points: np.ndarray, normals: np.ndarray):
    threads = torch.get_num_threads()
    try:
        config = small_config(**{k.replace(".", "__"): v for k, v in JOB.items()})
        return reconstruct_points(points.astype(np.float32), normals.astype(np.float32), config)
    finally:
        torch.set_num_threads(threads)


def test_two_clients_get_previews_and_the_local_mesh(ray_backend):
    address, log = ray_backend
    clouds = [sphere_cloud(800, radius=1.0, seed=1), sphere_cloud(800, radius=3.0, centre=(1.0, 0.0, -2.0), seed=2)]
    with Client(address=address) as a, Client(address=address) as b:
        requests = [a.submit(*clouds[0], overrides=JOB, tag="a"), b.submit(*clouds[1], overrides=JOB, tag="b")]
        ea: list = []
        eb: list = []
        deadline = time.monotonic() + 180
        while not (finished(JobDone)(ea) and finished(JobDone)(eb)):
            ea += a.poll(20)
            eb += b.poll(20)
            assert not any(isinstance(e, JobFailed) for e in ea + eb), [e for e in ea + eb if isinstance(e, JobFailed)]
            assert time.monotonic() < deadline
    for events, request, (points, normals) in zip((ea, eb), requests, clouds):
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
        local = local_mesh(points, normals)
        if not (np.array_equal(local.vertices, meshes[-1].vertices) and np.array_equal(local.faces, meshes[-1].faces)):
            score = compare_meshes(meshes[-1].vertices, meshes[-1].faces, local.vertices, local.faces, samples=20_000)
            assert score.chamfer_l1 < 1e-3


def test_cancel_reaches_the_running_task(ray_backend):
    address, log = ray_backend
    points, normals = sphere_cloud(800)
    with Client(address=address) as client:
        request = client.submit(points, normals, overrides=LONG, tag="long")
        events = collect(client, lambda ev: any(isinstance(e, Progress) for e in ev), timeout=60)
        job = accepted(events, request)
        pid = ray_pid(log, job)
        sent = time.monotonic()
        client.cancel(job)
        events += collect(client, lambda ev: any(isinstance(e, JobCancelled) and e.job == job for e in ev), timeout=10)
        assert time.monotonic() - sent < 3.0
        # the task itself stops: no more progress of the job arrives
        time.sleep(1.5)
        events = client.poll(200)
        assert not any(isinstance(e, Progress) and e.job == job for e in events)
    assert pid > 0


def test_a_killed_worker_fails_the_job_with_worker_lost(ray_backend):
    address, log = ray_backend
    points, normals = sphere_cloud(800)
    with Client(address=address) as client:
        request = client.submit(points, normals, overrides=LONG, tag="doomed")
        events = collect(client, lambda ev: any(isinstance(e, Progress) for e in ev), timeout=60)
        job = accepted(events, request)
        os.kill(ray_pid(log, job), signal.SIGKILL)
        events += collect(client, lambda ev: any(isinstance(e, (JobFailed, JobDone)) and e.job == job for e in ev),
                          timeout=60)
    failed = next(e for e in events if isinstance(e, JobFailed))
    assert failed.code == "worker_lost"
    assert "died" in failed.message and job in failed.message


def test_a_killed_worker_is_retried_with_retry(ray_backend, tmp_path, monkeypatch):
    """A second front end joins the first one's Ray cluster (``--ray-address``) and retries lost jobs."""
    # a local Ray made by ray.init() wants its token (~/.ray/auth_token) from every driver that joins
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    _, first_log = ray_backend
    cluster = re.search(r"ray cluster at (\S+)", Path(first_log).read_text()).group(1)
    port = free_port()
    log = tmp_path / "log.txt"
    process = start_backend(port, log, "--executor", "ray", "--ray-address", cluster, "--ray-cpus-per-job", "1",
                            "--ray-on-worker-lost", "retry", "--ray-retries", "1")
    try:
        points, normals = sphere_cloud(800)
        slow = {**JOB, "train.iterations": 400, "preview.enabled": False}
        with Client(address=f"tcp://127.0.0.1:{port}") as client:
            request = client.submit(points, normals, overrides=slow, tag="retried")
            events = collect(client, lambda ev: any(isinstance(e, Progress) for e in ev), timeout=60)
            job = accepted(events, request)
            os.kill(ray_pid(log, job), signal.SIGKILL)
            events += collect(client, lambda ev: any(isinstance(e, (JobFailed, JobDone)) for e in ev), timeout=120)
        assert any(isinstance(e, JobDone) and e.job == job for e in events), [type(e).__name__ for e in events]
        assert ray_pid(log, job, after=1) > 0  # a second attempt started on another worker
        assert "retrying" in log.read_text()
        final = [e for e in events if isinstance(e, MeshUpdate) and e.final]
        assert len(final) == 1 and len(final[0].faces) > 0
    finally:
        stop(process)
