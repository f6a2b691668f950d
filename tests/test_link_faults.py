"""Faults of the link, injected into real processes: kills, freezes, restarts, a client that
never reads; and results kept on disk for clients that come back."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest
import zmq

from siren_recon.protocol import (
    Error,
    FetchResult,
    JobAccepted,
    JobCancelled,
    JobDone,
    MeshUpdate,
    Ping,
    Progress,
    SubmitJob,
    decode,
    encode,
)
from siren_recon.protocol.client import Client, ConnectionEvent

from .live_backend import HEARTBEAT_TIMEOUT, free_port, start_backend, wait_for_log
from .shapes import SMALL, sphere_cloud
from .test_server import accepted, collect, finished

pytestmark = [pytest.mark.live, pytest.mark.slow]

JOB = {**SMALL, "train.iterations": 120, "preview.enabled": False, "train.progress_every": 10}


def event(kind: str):
    return lambda events: any(isinstance(e, ConnectionEvent) and e.kind == kind for e in events)


def test_backend_killed_mid_job_then_restarted_and_the_client_resubmits(tmp_path):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    first = start_backend(port, tmp_path / "first.txt")
    points, normals = sphere_cloud(600, radius=2.0)
    with Client(address=address, heartbeat_interval=0.2, heartbeat_timeout=1.5) as client:
        request = client.submit(points, normals, overrides={**JOB, "train.iterations": 100_000}, tag="long")
        events = collect(client, finished(Progress))
        old_job = accepted(events, request)
        first.kill()
        first.wait()
        collect(client, event("lost"), timeout=10)
        assert set(client.unfinished) == {old_job}
        second = start_backend(port, tmp_path / "second.txt")
        try:
            collect(client, event("restarted"), timeout=20)
            # the user says "resubmit": the same cloud goes to the new backend, shorter this time
            client.unfinished[old_job] = SubmitJob(
                tag="long", points=points, normals=normals, overrides={**JOB, "train.iterations": 60})
            mapping = client.resubmit()
            assert list(mapping.values()) == [old_job]
            events = collect(client, finished(JobDone), timeout=120)
            new_job = accepted(events, next(iter(mapping)))
            assert new_job != old_job
            final = [e for e in events if isinstance(e, MeshUpdate) and e.final]
            assert final and final[0].job == new_job and len(final[0].faces) > 0
            assert client.unfinished == {}
        finally:
            second.kill()
            second.wait()


def test_backend_frozen_past_the_heartbeat_timeout_resumes_the_job(tmp_path):
    port = free_port()
    log_path = tmp_path / "backend.txt"
    backend = start_backend(port, log_path)
    points, normals = sphere_cloud(500)
    try:
        with Client(address=f"tcp://127.0.0.1:{port}", heartbeat_interval=0.2, heartbeat_timeout=1.5) as client:
            request = client.submit(points, normals, overrides={**JOB, "train.iterations": 400})
            events = collect(client, finished(Progress))
            job = accepted(events, request)
            backend.send_signal(signal.SIGSTOP)
            try:
                events = collect(client, event("lost"), timeout=10)
                time.sleep(HEARTBEAT_TIMEOUT + 1.0)  # frozen for longer than the backend's own timeout
            finally:
                backend.send_signal(signal.SIGCONT)
            events = collect(client, finished(JobDone), timeout=180)
        assert any(isinstance(e, ConnectionEvent) and e.kind == "restored" for e in events)
        assert not any(isinstance(e, (JobCancelled, ConnectionEvent)) and getattr(e, "kind", "") == "restarted"
                       for e in events)
        assert not any(isinstance(e, JobCancelled) for e in events)
        done = next(e for e in events if isinstance(e, JobDone))
        assert done.job == job
        assert "stalled" in open(log_path).read()
    finally:
        backend.kill()
        backend.wait()


def test_a_client_that_never_reads_gets_every_progress_and_the_final_mesh_later(tmp_path):
    """Previews pile up for a client that stops reading: the backend keeps only the newest."""
    port = free_port()
    backend = start_backend(port, tmp_path / "backend.txt")
    points, normals = sphere_cloud(1500)
    iterations = 200
    preview = {"first_iteration": 2, "growth": 1.04, "min_resolution": 64, "max_resolution": 64}
    overrides = {**SMALL, "train.iterations": iterations, "train.progress_every": 10, "preview.enabled": True,
                 **{f"preview.{k}": v for k, v in preview.items()}}
    from siren_recon.engine.config.reconstruction import PreviewConfig
    from siren_recon.engine.fitting.trainer import preview_schedule

    produced = len(preview_schedule(PreviewConfig(**preview), iterations))
    log_path = tmp_path / "backend.txt"
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 1)
    sock.setsockopt(zmq.RCVBUF, 64 * 1024)
    sock.connect(f"tcp://127.0.0.1:{port}")
    try:
        sock.send_multipart(encode(SubmitJob(points=points, normals=normals, overrides=overrides)))
        deadline = time.monotonic() + 400
        while "done in" not in open(log_path).read():  # nobody reads, but the link is kept alive
            assert time.monotonic() < deadline
            sock.send_multipart(encode(Ping()))
            time.sleep(0.25)
        received = []
        while sock.poll(3000):
            received.append(decode(sock.recv_multipart()))
    finally:
        sock.close()
        backend.kill()
        backend.wait()
    previews = [m for m in received if isinstance(m, MeshUpdate) and not m.final]
    finals = [m for m in received if isinstance(m, MeshUpdate) and m.final]
    progress = [m.iteration for m in received if isinstance(m, Progress)]
    assert progress == list(range(10, iterations + 1, 10))  # every progress message, in order
    assert len(finals) == 1 and isinstance(received[-1], JobDone)
    assert len(previews) < produced // 2  # the others were replaced by newer ones while held back
    largest = max(m.vertices.nbytes + m.faces.nbytes for m in previews + finals)
    held = max(int(line.split("at most ")[1].split()[0]) for line in open(log_path) if "slow readers" in line)
    # what waits for the client is about one preview (plus small progress messages), not all of them
    assert held < 3 * largest + 100_000, (held, largest, produced)


def test_a_finished_result_can_be_fetched_by_another_connection(tmp_path):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    backend = start_backend(port, tmp_path / "backend.txt")
    points, normals = sphere_cloud(500)
    try:
        # a detached job runs on after its client has gone
        with Client(address=address) as first:
            request = first.submit(points, normals, overrides=JOB, detached=True)
            job = accepted(collect(first, finished(JobAccepted)), request)
        wait_for_log(tmp_path / "backend.txt", f"job {job} done", 120)
        with Client(address=address) as second:  # a new routing id, like a reopened .blend
            asked = second.fetch_result(job)
            events = collect(second, finished(JobDone), timeout=20)
            mesh = next(e for e in events if isinstance(e, MeshUpdate))
            assert mesh.final and mesh.job == job and mesh.parent == asked and len(mesh.faces) > 0
            radius = np.linalg.norm(mesh.vertices, axis=1)
            assert abs(np.median(radius) - 1.0) < 0.1
            second.send(FetchResult(job="0" * 32))
            error = next(e for e in collect(second, finished(Error), timeout=10) if isinstance(e, Error))
            assert error.code == "unknown_job"
        # kept on disk: a restarted backend still has it
        backend.kill()
        backend.wait()
        backend = start_backend(port, tmp_path / "again.txt", "--results-dir", str(tmp_path / "results"))
        with Client(address=address) as third:
            third.fetch_result(job)
            events = collect(third, finished(JobDone), timeout=20)
            assert any(isinstance(e, MeshUpdate) and e.final and len(e.faces) == len(mesh.faces) for e in events)
    finally:
        backend.kill()
        backend.wait()


def test_limits_are_refused_with_an_error_naming_them(tmp_path):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    backend = start_backend(port, tmp_path / "backend.txt", "--max-points", "1000", "--max-queued-jobs", "2",
                            "--max-message-mb", "0.5")
    points, normals = sphere_cloud(800)
    try:
        with Client(address=address) as client:
            collect(client, event("connected"), timeout=20)
            assert client.welcome.max_points == 1000 and client.welcome.max_queued_jobs == 2
            big = np.random.default_rng(0).normal(size=(1500, 3)).astype(np.float32)
            request = client.submit(big)
            error = next(e for e in collect(client, finished(Error)) if isinstance(e, Error))
            assert error.code == "too_many_points" and error.parent == request and "1000" in error.message
            long = {**JOB, "train.iterations": 100_000}
            first = client.submit(points, normals, overrides=long)
            second = client.submit(points, normals, overrides=long)
            third = client.submit(points, normals, overrides=long)
            events = collect(client, lambda ev: any(isinstance(e, Error) and e.parent == third for e in ev))
            error = next(e for e in events if isinstance(e, Error) and e.parent == third)
            assert error.code == "too_many_jobs" and "max-queued-jobs" in error.message
            jobs = [accepted(events, r) for r in (first, second)]
            # a message over the decoder's 0.5 MiB (but under the socket's hard limit) gets too_large
            raw = zmq.Context.instance().socket(zmq.DEALER)
            raw.setsockopt(zmq.LINGER, 0)
            raw.connect(address)
            cloud = np.zeros((60_000, 3), np.float32)
            raw.send_multipart(encode(SubmitJob(points=cloud)))
            assert raw.poll(10_000)
            answer = decode(raw.recv_multipart())
            raw.close()
            assert isinstance(answer, Error) and answer.code == "too_large" and str(2**19) in answer.message
            for job in jobs:
                client.cancel(job)
            collect(client, lambda ev: sum(isinstance(e, JobCancelled) for e in ev) == 2, timeout=10)
        assert backend.poll() is None
    finally:
        backend.kill()
        backend.wait()


def test_determinism_same_cloud_config_and_seed_give_the_same_mesh_on_cpu():
    from siren_recon.engine.pipeline import reconstruct_points

    from .shapes import small_config

    points, normals = sphere_cloud(800, seed=3)
    config = small_config(train__iterations=80)
    first = reconstruct_points(points, normals, config)
    second = reconstruct_points(points, normals, config)
    assert np.array_equal(first.vertices, second.vertices) and np.array_equal(first.faces, second.faces)
    other = reconstruct_points(points, normals, small_config(train__iterations=80, train__seed=1))
    assert len(other.vertices) != len(first.vertices) or not np.array_equal(other.vertices, first.vertices)


def test_reconstruct_remote_waits_out_a_frozen_backend(tmp_path):
    import threading

    from siren_recon.protocol.client import reconstruct_remote

    port = free_port()
    backend = start_backend(port, tmp_path / "backend.txt")
    points, normals = sphere_cloud(500)
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = reconstruct_remote(
                points,
                normals,
                address=f"tcp://127.0.0.1:{port}",
                overrides={**JOB, "train.iterations": 150},
                timeout=200,
                connect_timeout=2.0,
                lost_grace=30.0,
            )
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    try:
        thread.start()
        wait_for_log(tmp_path / "backend.txt", "started:", 60)
        backend.send_signal(signal.SIGSTOP)
        time.sleep(7.0)  # past the client's 5 s timeout: it reports the backend lost, and waits
        backend.send_signal(signal.SIGCONT)
        thread.join(timeout=200)
    finally:
        backend.kill()
        backend.wait()
    assert "error" not in outcome, outcome.get("error")
    assert len(outcome["result"].faces) > 0


def test_a_backend_that_starts_late_is_awaited_not_reported_lost(tmp_path):
    """Before the first welcome the backend may still be importing torch: no ``lost`` for that."""
    port = free_port()
    with Client(address=f"tcp://127.0.0.1:{port}", heartbeat_interval=0.2, heartbeat_timeout=0.5) as client:
        silent: list = []
        deadline = time.monotonic() + 1.5  # three heartbeat timeouts with nobody listening
        while time.monotonic() < deadline:
            silent.extend(client.poll(50))
        assert not any(isinstance(e, ConnectionEvent) for e in silent) and not client.lost
        process = start_backend(port, tmp_path / "backend.txt")
        try:
            events = collect(client, event("connected"), timeout=30)
            assert not event("lost")(events)
        finally:
            process.terminate()
            process.wait(timeout=30)
