"""CURVE security of the backend link, with real key files, a real backend and real clients."""

from __future__ import annotations

import subprocess
import sys

import pytest
import zmq

from siren_recon.cli import main
from siren_recon.protocol import JobDone, Welcome
from siren_recon.protocol.client import Client, reconstruct_remote

from .live_backend import free_port, start_backend, wait_for_log
from .paths import REPO
from .shapes import SMALL, sphere_cloud
from .test_server import collect, finished

JOB = {**SMALL, "train.iterations": 40, "preview.enabled": False}


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys")
    for name in ("server", "impostor_server"):
        assert main(["keys", "generate", str(root / "server_side"), "--name", name]) == 0
    for name in ("alice", "mallory"):
        assert main(["keys", "generate", str(root / name), "--name", name]) == 0
    allowed = root / "allowed"
    allowed.mkdir()
    (allowed / "alice.key").write_bytes((root / "alice" / "alice.key").read_bytes())
    return root


@pytest.fixture(scope="module")
def curve_backend(keys, tmp_path_factory):
    port = free_port()
    log_path = tmp_path_factory.mktemp("curve") / "log.txt"
    process = start_backend(port, log_path, "--curve-secret-key", str(keys / "server_side" / "server.key_secret"),
                            "--allowed-clients", str(keys / "allowed"))
    yield f"tcp://127.0.0.1:{port}", process, log_path
    process.kill()
    process.wait()


def welcomed(client: Client, seconds: float) -> bool:
    return any(isinstance(e, Welcome) for e in collect_until(client, seconds))


def collect_until(client: Client, seconds: float) -> list:
    import time

    events: list = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        events += client.poll(50)
        if any(isinstance(e, Welcome) for e in events):
            break
    return events


def test_key_files_are_written_with_a_private_secret(keys):
    secret = keys / "alice" / "alice.key_secret"
    assert (keys / "alice" / "alice.key").exists() and secret.exists()
    assert secret.stat().st_mode & 0o077 == 0
    assert "secret-key" in secret.read_text() and "secret-key" not in (keys / "alice" / "alice.key").read_text()
    assert main(["keys", "generate", str(keys / "alice"), "--name", "alice"]) == 2  # never overwritten


@pytest.mark.live
@pytest.mark.slow
def test_strangers_are_refused_and_the_allowed_client_is_served(keys, curve_backend):
    address, process, log_path = curve_backend
    server_key = str(keys / "server_side" / "server.key")
    strangers = {
        "unlisted key": Client(address=address, server_key_file=server_key,
                               client_key_file=str(keys / "mallory" / "mallory.key_secret")),
        "fresh key": Client(address=address, server_key_file=server_key),
        "wrong server key": Client(address=address, server_key_file=str(keys / "server_side" / "impostor_server.key"),
                                   client_key_file=str(keys / "alice" / "alice.key_secret")),
        "plain text": Client(address=address),
    }
    for name, client in strangers.items():
        with client:
            assert not welcomed(client, 3.0), f"{name} was let in"
    assert process.poll() is None
    points, normals = sphere_cloud(400)
    result = reconstruct_remote(points, normals, address=address, overrides=JOB, timeout=120,
                                server_key_file=server_key, client_key_file=str(keys / "alice" / "alice.key_secret"))
    assert len(result.faces) > 0
    log = open(log_path).read()
    assert "CURVE on: 1 client keys allowed" in log


@pytest.mark.live
@pytest.mark.slow
def test_results_are_bound_to_the_client_key(keys, curve_backend):
    address, _, log_path = curve_backend
    server_key = str(keys / "server_side" / "server.key")
    alice = str(keys / "alice" / "alice.key_secret")
    points, normals = sphere_cloud(400)
    result = reconstruct_remote(points, normals, address=address, overrides=JOB, timeout=120,
                                server_key_file=server_key, client_key_file=alice)
    # alice again, from a new connection: her result is hers to fetch
    with Client(address=address, server_key_file=server_key, client_key_file=alice) as again:
        again.fetch_result(result.job)
        events = collect(again, finished(JobDone), timeout=20)
        assert any(getattr(e, "final", False) and len(e.faces) == len(result.faces) for e in events)


@pytest.mark.live
@pytest.mark.slow
def test_a_public_bind_without_curve_is_refused_unless_insecure(tmp_path):
    port = free_port()
    refused = subprocess.run(
        [sys.executable, "-m", "siren_recon.cli", "serve", "--bind", f"tcp://0.0.0.0:{port}", "--device", "cpu"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert refused.returncode == 2 and "without CURVE" in refused.stderr and "--insecure" in refused.stderr
    log_path = tmp_path / "insecure.txt"
    process = subprocess.Popen(
        [sys.executable, "-m", "siren_recon.cli", "serve", "--bind", f"tcp://0.0.0.0:{port}", "--device", "cpu",
         "--insecure", "--results-dir", str(tmp_path / "results")],
        cwd=REPO, stderr=open(log_path, "w"),
    )
    try:
        wait_for_log(log_path, "listening on", 60)
        assert "INSECURE" in open(log_path).read()
    finally:
        process.kill()
        process.wait()


def test_curve_is_available_in_this_pyzmq():
    assert zmq.has("curve")
