"""The backend as a real process on 127.0.0.1, driven by real clients over ZeroMQ."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import msgpack
import numpy as np
import pytest
import zmq

from siren_recon.engine.pipeline import reconstruct_points
from siren_recon.protocol import (
    CancelJob,
    Error,
    JobAccepted,
    JobCancelled,
    JobDone,
    JobList,
    MeshUpdate,
    Ping,
    Pong,
    Progress,
    SubmitJob,
    decode,
    encode,
)
from siren_recon.protocol.client import Client, ConnectionEvent, reconstruct_remote

from .live_backend import HEARTBEAT_TIMEOUT, free_port, start_backend, wait_for_log
from .paths import REPO
from .shapes import SMALL, small_config, sphere_cloud

pytestmark = [pytest.mark.live, pytest.mark.slow]

JOB = {
    **SMALL,
    "train.iterations": 150,
    "preview.enabled": True,
    "preview.first_iteration": 30,
    "train.progress_every": 10,
}


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    port = free_port()
    process = start_backend(port, tmp_path_factory.mktemp("backend") / "log.txt")
    yield f"tcp://127.0.0.1:{port}", process
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def collect(client: Client, until, timeout: float = 120.0) -> list:
    """Poll until ``until(events)`` is true; return every event seen."""
    events: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events.extend(client.poll(50))
        if until(events):
            return events
    raise AssertionError(f"timed out; saw {[type(e).__name__ for e in events]}")


def accepted(events, request: str) -> str:
    return next(e.job for e in events if isinstance(e, JobAccepted) and e.parent == request)


def finished(job_kind):
    return lambda events: any(isinstance(e, job_kind) for e in events)


def test_submit_streams_previews_then_the_final_mesh(backend):
    address, _ = backend
    points, normals = sphere_cloud(1500, radius=2.0, centre=(1.0, -1.0, 0.5))
    with Client(address=address) as client:
        request = client.submit(points, normals, overrides=JOB, tag="sphere")
        events = collect(client, finished(JobDone))
    assert any(isinstance(e, ConnectionEvent) and e.kind == "connected" for e in events)
    job = accepted(events, request)
    meshes = [e for e in events if isinstance(e, MeshUpdate)]
    assert all(m.job == job for m in meshes)
    previews = [m for m in meshes if not m.final]
    assert len(previews) >= 2
    assert [m.iteration for m in previews] == sorted({m.iteration for m in previews})
    assert meshes[-1].final and meshes[-1].iteration == 150
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress and progress[-1].iteration == 150 and progress[-1].mode == "oriented"
    done = next(e for e in events if isinstance(e, JobDone))
    assert done.mode == "oriented" and done.timings["train"] > 0
    # the same training run here, on the float32 cloud that crossed the wire, gives the same mesh
    config = small_config(**{k.replace(".", "__"): v for k, v in JOB.items()})
    local = reconstruct_points(points.astype(np.float32), normals.astype(np.float32), config)
    # the backend's mesh is the local one (usually bit for bit; CPU thread scheduling can
    # perturb a float reduction, so the check is on the surface: within 0.5% of the diagonal)
    from evaluation.metrics import compare_meshes

    score = compare_meshes(meshes[-1].vertices, meshes[-1].faces, local.vertices, local.faces, samples=20_000)
    assert score.chamfer_l1 < 5e-3


def test_two_clients_each_get_only_their_own_results(backend):
    address, _ = backend
    a_points, a_normals = sphere_cloud(800, radius=1.0, seed=1)
    b_points, b_normals = sphere_cloud(800, radius=5.0, seed=2)
    short = {**JOB, "train.iterations": 60, "preview.enabled": False}
    with Client(address=address) as a, Client(address=address) as b:
        ra = a.submit(a_points, a_normals, overrides=short, tag="a")
        rb = b.submit(b_points, b_normals, overrides=short, tag="b")
        ea, eb = [], []
        deadline = time.monotonic() + 240
        while not (finished(JobDone)(ea) and finished(JobDone)(eb)):  # both keep polling, as real clients do
            ea += a.poll(20)
            eb += b.poll(20)
            assert time.monotonic() < deadline
    job_a, job_b = accepted(ea, ra), accepted(eb, rb)
    assert job_a != job_b
    assert {e.job for e in ea if isinstance(e, (Progress, MeshUpdate, JobDone))} == {job_a}
    assert {e.job for e in eb if isinstance(e, (Progress, MeshUpdate, JobDone))} == {job_b}
    radius_a = np.median(np.linalg.norm(next(e for e in ea if isinstance(e, MeshUpdate)).vertices, axis=1))
    radius_b = np.median(np.linalg.norm(next(e for e in eb if isinstance(e, MeshUpdate)).vertices, axis=1))
    assert abs(radius_a - 1.0) < 0.1 and abs(radius_b - 5.0) < 0.5


def test_cancel_mid_job_answers_within_a_second_and_the_next_job_runs(backend):
    address, _ = backend
    points, normals = sphere_cloud(800)
    with Client(address=address) as client:
        long_request = client.submit(points, normals, overrides={**JOB, "train.iterations": 100_000}, tag="long")
        next_request = client.submit(points, normals, overrides={**JOB, "train.iterations": 40}, tag="next")
        events = collect(client, lambda ev: any(isinstance(e, Progress) for e in ev))
        long_job = accepted(events, long_request)
        sent = time.monotonic()
        client.cancel(long_job)
        events += collect(
            client, lambda ev: any(isinstance(e, JobCancelled) and e.job == long_job for e in ev), timeout=5
        )
        assert time.monotonic() - sent < 1.0
        events += collect(client, lambda ev: any(isinstance(e, JobDone) for e in ev))
        next_job = accepted(events, next_request)
        assert next(e for e in events if isinstance(e, JobDone)).job == next_job
        client.list_jobs()
        listing = next(e for e in collect(client, finished(JobList)) if isinstance(e, JobList))
    states = {row.job: row.state for row in listing.jobs}
    assert states[long_job] == "cancelled" and states[next_job] == "done"


def test_a_tiled_jobs_listing_counts_the_steps_of_all_its_tiles(backend):
    address, _ = backend
    points, normals = sphere_cloud(1600)
    # 8 tiles (the padded sphere, 2.2 a side, cut in 2 along each axis), a quarter of 40 steps each
    tiled = {**JOB, "train.iterations": 40, "tiles.size": 1.2, "tiles.iteration_share": 0.25,
             "preview.enabled": False}
    with Client(address=address) as client:
        request = client.submit(points, normals, overrides=tiled, tag="tiled")
        events = collect(client, finished(JobDone))
        job = accepted(events, request)
        client.list_jobs()
        listing = next(e for e in collect(client, finished(JobList)) if isinstance(e, JobList))
    progress = [e for e in events if isinstance(e, Progress) and e.job == job]
    tiles = progress[-1].tiles
    assert tiles > 1 and progress[-1].total == tiles * 10 == progress[-1].iteration
    row = next(row for row in listing.jobs if row.job == job)
    assert (row.state, row.iteration, row.total) == ("done", tiles * 10, tiles * 10)


def raw_dealer(address: str):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(address)
    return sock


def reply(sock, timeout_ms: int = 5000):
    from siren_recon.protocol import decode

    assert sock.poll(timeout_ms), "no reply"
    return decode(sock.recv_multipart())


def tampered(message, **changes) -> list[bytes]:
    frames = [bytes(f) for f in encode(message)]
    head = msgpack.unpackb(frames[0], raw=False)
    head.update(changes)
    return [msgpack.packb(head, use_bin_type=True)] + frames[1:]


def test_bad_messages_get_named_errors_and_a_valid_job_still_completes(backend):
    address, process = backend
    points, normals = sphere_cloud(300)
    good = SubmitJob(
        points=points, normals=normals, overrides={**JOB, "train.iterations": 20, "preview.enabled": False}
    )
    frames = [bytes(f) for f in encode(good)]
    nan_points = points.astype(np.float32)
    nan_points[4, 0] = np.nan
    cases = {
        "unknown_type": tampered(Ping(), type="explode"),
        "unsupported_version": tampered(Ping(), v="9.0"),
        "missing_field": tampered(good, body={}),
        "bad_field_type": tampered(good, body={**msgpack.unpackb(frames[0], raw=False)["body"], "detached": "no"}),
        "bad_dtype": [
            msgpack.packb(
                {
                    **msgpack.unpackb(frames[0], raw=False),
                    "arrays": [{**a, "dtype": "float64"} for a in msgpack.unpackb(frames[0], raw=False)["arrays"]],
                }
            )
        ]
        + frames[1:],
        "buffer_length": [frames[0], frames[1][:-1], frames[2]],
        "non_finite": [frames[0], nan_points.tobytes(), frames[2]],
        "malformed": [b"\xc1\xc1 definitely not msgpack"],
        "bad_config": [bytes(f) for f in encode(SubmitJob(points=points, overrides={"train.iterationz": 5}))],
        "too_few_points": [bytes(f) for f in encode(SubmitJob(points=points[:5]))],
        "unknown_job": [bytes(f) for f in encode(CancelJob(job="nope"))],
    }
    sock = raw_dealer(address)
    try:
        for code, message in cases.items():
            sock.send_multipart(message)
            answer = reply(sock)
            assert isinstance(answer, Error) and answer.code == code, (code, answer)
        rng = np.random.default_rng(0)
        for _ in range(200):  # random bytes and truncated frames
            junk = [rng.bytes(int(rng.integers(0, 40))) for _ in range(int(rng.integers(1, 4)))]
            sock.send_multipart(junk)
        for cut in range(0, len(frames[0]), 7):
            sock.send_multipart([frames[0][:cut]] + frames[1:])
        errors = 0
        while sock.poll(2000):
            assert isinstance(decode(sock.recv_multipart()), Error)
            errors += 1
        assert errors == 200 + len(range(0, len(frames[0]), 7))
    finally:
        sock.close()
    assert process.poll() is None
    # a deprecated setting name is still accepted; the cloud's colours come back on the mesh
    overrides = {**good.overrides, "unoriented.noise_free_ratio": 0.25}
    orange = np.tile(np.float32([1.0, 0.5, 0.0]), (len(points), 1))
    result = reconstruct_remote(points, normals, orange, address=address, overrides=overrides, timeout=120)
    assert len(result.faces) > 0 and result.done.mode == "oriented"
    assert result.colours is not None and result.colours.shape == result.vertices.shape
    np.testing.assert_allclose(result.colours, np.broadcast_to(orange[0], result.colours.shape), atol=1e-6)


CLIENT_SCRIPT = textwrap.dedent(
    """
    import sys, time, numpy as np
    from siren_recon.protocol.client import Client
    from siren_recon.protocol import JobAccepted, Progress
    rng = np.random.default_rng(0)
    n = rng.normal(size=(500, 3)); n /= np.linalg.norm(n, axis=1, keepdims=True)
    c = Client(address=sys.argv[1]); c.connect()
    c.submit(n, n, overrides={"train.iterations": 100000, "model.hidden_features": 32, "preview.enabled": False})
    job = None
    while True:
        for e in c.poll(50):
            if isinstance(e, JobAccepted): job = e.job
            if isinstance(e, Progress) and job:
                print(job, flush=True)
                time.sleep(3600)
    """
)


def test_a_killed_clients_job_is_cancelled_after_the_heartbeat_timeout(tmp_path):
    port = free_port()
    log_path = tmp_path / "backend.txt"
    process = start_backend(port, log_path)
    address = f"tcp://127.0.0.1:{port}"
    try:
        script = tmp_path / "client.py"
        script.write_text(CLIENT_SCRIPT)
        client = subprocess.Popen(
            [sys.executable, str(script), address],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        job = client.stdout.readline().strip()
        assert job
        client.kill()
        waited = wait_for_log(log_path, f"cancelling job {job}", HEARTBEAT_TIMEOUT + 10)
        assert waited >= HEARTBEAT_TIMEOUT - 1.0
        # the worker is free again: a new job runs to the end
        points, normals = sphere_cloud(300)
        result = reconstruct_remote(
            points,
            normals,
            address=address,
            overrides={**JOB, "train.iterations": 20, "preview.enabled": False},
            timeout=120,
        )
        assert len(result.faces) > 0
    finally:
        process.kill()
        process.wait()


def test_a_killed_backend_is_reported_lost_within_the_heartbeat_timeout(tmp_path):
    port = free_port()
    process = start_backend(port, tmp_path / "first.txt")
    with Client(address=f"tcp://127.0.0.1:{port}", heartbeat_interval=0.2, heartbeat_timeout=1.5) as client:
        collect(client, lambda ev: any(isinstance(e, Pong) for e in ev), timeout=10)
        process.kill()
        process.wait()
        killed = time.monotonic()
        events = collect(
            client, lambda ev: any(isinstance(e, ConnectionEvent) and e.kind == "lost" for e in ev), timeout=10
        )
        assert time.monotonic() - killed <= 1.5 + 0.5
        # a new backend on the same port is recognised by its new session id
        restarted = start_backend(port, tmp_path / "second.txt")
        try:
            events = collect(
                client, lambda ev: any(isinstance(e, ConnectionEvent) and e.kind == "restarted" for e in ev), timeout=15
            )
            assert any(isinstance(e, ConnectionEvent) and e.kind == "restarted" for e in events)
        finally:
            restarted.kill()
            restarted.wait()


def test_sigterm_tells_clients_their_jobs_are_cancelled(tmp_path):
    port = free_port()
    process = start_backend(port, tmp_path / "backend.txt")
    points, normals = sphere_cloud(500)
    with Client(address=f"tcp://127.0.0.1:{port}") as client:
        client.submit(points, normals, overrides={**JOB, "train.iterations": 100_000})
        collect(client, lambda ev: any(isinstance(e, Progress) for e in ev))
        process.send_signal(signal.SIGTERM)
        events = collect(client, finished(JobCancelled), timeout=10)
    cancelled = next(e for e in events if isinstance(e, JobCancelled))
    assert "shutting down" in cancelled.reason
    assert process.wait(timeout=20) == 0
