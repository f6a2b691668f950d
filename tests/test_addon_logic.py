"""The add-on's plain logic (no Blender): geometry, presets, the session against a real backend.

They run twice: here on NumPy 1.26, and in the Blender 5.2 environment on NumPy 2 with the very
pyzmq/msgpack wheels the extension bundles (``test_addon_in_blender_5_2.py``).
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from .addon_build import vendor_in_place
from .live_backend import BACKEND_PYTHON, free_port, start_backend
from .paths import REPO
from .shapes import SMALL, sphere_cloud

vendor_in_place()

from blender_addon import state  # noqa: E402
from blender_addon.backend_process import (  # noqa: E402
    Launch,
    LaunchError,
    LocalBackend,
    RunRecord,
    backend_environment,
    plan_launch,
    read_run_file,
    write_run_file,
)
from blender_addon.geometry import (  # noqa: E402
    blender_mesh_arrays,
    corner_to_point,
    normals_to_world,
    sample_triangles,
    to_world,
    wire_cloud,
)
from blender_addon.link_checks import LinkError, address_problem  # noqa: E402
from blender_addon.pids import command_line, pid_alive  # noqa: E402
from blender_addon.protocol import JobAccepted, JobCancelled, Progress  # noqa: E402
from blender_addon.redraw import RedrawGate  # noqa: E402
from blender_addon.session import JobState, Session, trim_note  # noqa: E402
from blender_addon.settings import PRESETS, job_overrides  # noqa: E402


def trs(translation, angles, scale) -> np.ndarray:
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    m = np.eye(4)
    m[:3, :3] = rz @ ry @ rx @ np.diag(scale)
    m[:3, 3] = translation
    return m


def test_points_and_normals_go_to_world_space():
    matrix = trs([1.0, -2.0, 3.0], [0.3, -0.2, 1.1], [2.0, 0.5, 1.5])
    points, normals = sphere_cloud(200)
    world = to_world(points, matrix)
    np.testing.assert_allclose(world, points @ matrix[:3, :3].T + matrix[:3, 3])
    # a normal stays perpendicular to the surface: on the transformed ellipsoid it must be the
    # gradient of |M^-1 (x - t)|^2, i.e. along M^-T M^-1 (x - t)
    world_normals = normals_to_world(normals, matrix)
    inverse = np.linalg.inv(matrix[:3, :3])
    expected = (world - matrix[:3, 3]) @ inverse.T @ inverse
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(world_normals, expected, atol=1e-9)


def test_triangle_sampling_is_on_the_surface_with_outward_normals_and_colours():
    vertices = np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0], [0, 0, 2]], dtype=float)
    triangles = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    colours = np.eye(4)[:, :3]
    points, normals, sampled = sample_triangles(vertices, triangles, 4000, colours)
    assert points.shape == (4000, 3) and np.all(points >= -1e-12) and np.all(points.sum(axis=1) <= 2 + 1e-9)
    outward = points - vertices.mean(axis=0)
    assert np.all(np.einsum("ij,ij->i", normals, outward) > 0)
    # colours are interpolated like positions: vertex colours red, green, blue, black at
    # the origin, x, y and z corners make each colour channel a linear function of position
    np.testing.assert_allclose(sampled[:, 1], points[:, 0] / 2, atol=1e-9)
    np.testing.assert_allclose(sampled[:, 2], points[:, 1] / 2, atol=1e-9)
    np.testing.assert_allclose(sampled[:, 0], 1 - points.sum(axis=1) / 2, atol=1e-9)
    # the big slanted face has sqrt(3) times the area of each small one: it gets that share
    slanted = np.isclose(points.sum(axis=1), 2.0)
    assert abs(slanted.mean() - np.sqrt(3) / (3 + np.sqrt(3))) < 0.03


def test_corner_colours_average_onto_vertices_and_mesh_arrays_are_flat():
    values = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    np.testing.assert_allclose(corner_to_point(values, np.array([0, 0, 1]), 3), [[0.5, 0.5, 0], [0, 0, 1], [0, 0, 0]])
    arrays = blender_mesh_arrays(np.zeros((4, 3)), np.array([[0, 1, 2], [0, 2, 3]]))
    assert arrays["co"].shape == (12,) and arrays["co"].dtype == np.float32
    np.testing.assert_array_equal(arrays["vertex_index"], [0, 1, 2, 0, 2, 3])
    np.testing.assert_array_equal(arrays["loop_start"], [0, 3])


def test_quality_presets_and_advanced_fields_become_overrides():
    assert job_overrides("auto", "standard") == {"mode": "auto"}
    high = job_overrides("unoriented", "high", iterations=123, resolution=64, seed=7)
    assert high == {
        **PRESETS["high"],
        "mode": "unoriented",
        "train.iterations": 123,
        "train.until": "iterations",  # the Iterations field means exactly that many steps,
        "tiles.iteration_share": 1.0,  # for every field, a tile's too
        "mesh.resolution": 64,
        "train.seed": 7,
    }
    with pytest.raises(ValueError, match="preset"):
        job_overrides("auto", "ultra")
    scene = job_overrides("auto", "standard", tile_size=20.0, detail_size=0.05)
    assert scene == {"mode": "auto", "tiles.size": 20.0, "mesh.voxel_size": 0.05}


def test_a_tiled_job_says_which_tile_it_is_training():
    job = JobState(request="r", source="Street", preview="Street_siren", status="running", iteration=300,
                   total=1200, loss=0.5, eta=30.0, mode="unoriented", tile=2, tiles=4)
    assert job.describe() == "tile 2 of 4, 300/1200, loss 0.5, ETA 30 s (unoriented)"
    job.tile = job.tiles = 0
    assert job.describe() == "300/1200, loss 0.5, ETA 30 s (unoriented)"


def test_the_trim_choice_becomes_the_engines_setting():
    assert "mesh.trim" not in job_overrides("auto", "standard", trim="auto")  # the engine's default
    assert job_overrides("auto", "standard", trim="off")["mesh.trim"] == "off"
    cut = job_overrides("auto", "preview", trim="distance", trim_distance=0.05)
    assert cut["mesh.trim"] == "distance" and cut["mesh.trim_distance"] == 0.05
    with pytest.raises(ValueError, match="trim"):
        job_overrides("auto", "standard", trim="sometimes")
    assert trim_note({"trimmed": 1.0, "trimmed_area_share": 0.413}) == ", open: trimmed 41%"
    assert trim_note({"trimmed": 0.0, "trimmed_area_share": 0.0}) == ""


@pytest.mark.live
@pytest.mark.slow
def test_session_tracks_a_job_and_keeps_only_the_newest_mesh(tmp_path):
    port = free_port()
    process = start_backend(port, tmp_path / "backend.txt")
    try:
        session = Session(address=f"tcp://127.0.0.1:{port}")
        assert session.wait_connected()
        assert session.status == "connected" and "cpu" in session.message
        points, normals = sphere_cloud(800, radius=1.5)
        overrides = {**SMALL, "train.iterations": 120, "preview.enabled": True, "preview.first_iteration": 20}
        job = session.submit("Sphere", points, normals, None, overrides)
        assert job.preview == "Sphere_siren" and job.status == "submitting"
        seen_running = False
        deadline = time.monotonic() + 120
        while job.active:
            session.tick(budget=0.005)
            seen_running |= job.status == "running" and job.iteration > 0
            assert time.monotonic() < deadline
        assert seen_running and job.status == "done" and job.mode == "oriented"
        session.tick()
        mesh = session.take_mesh(job)  # previews came first, but only the newest (final) is kept
        assert mesh is not None and mesh.final and mesh.iteration == 120
        assert session.take_mesh(job) is None
        assert job.describe().startswith("done")
        session.disconnect()
        assert session.client is None and session.status == "disconnected"
    finally:
        process.kill()
        process.wait()


@pytest.mark.live
@pytest.mark.slow
def test_session_shows_which_tile_of_a_tiled_job_is_training(tmp_path):
    port = free_port()
    process = start_backend(port, tmp_path / "backend.txt")
    try:
        session = Session(address=f"tcp://127.0.0.1:{port}")
        assert session.wait_connected()
        left, left_normals = sphere_cloud(600, radius=0.8, centre=(-1.5, 0.0, 0.0))
        right, right_normals = sphere_cloud(600, radius=0.8, centre=(1.5, 0.0, 0.0), seed=1)
        points = np.concatenate([left, right])
        normals = np.concatenate([left_normals, right_normals])
        overrides = {**SMALL, **job_overrides("oriented", "standard", iterations=60, tile_size=2.6, detail_size=0.04)}
        job = session.submit("Pair", points, normals, None, overrides)
        seen: list[tuple[int, int, str]] = []
        deadline = time.monotonic() + 120
        while job.active:
            session.tick(budget=0.005)
            if job.status == "running" and job.tiles:
                seen.append((job.tile, job.tiles, job.describe()))
            assert time.monotonic() < deadline
        assert job.status == "done", job.describe()
        assert {(tile, tiles) for tile, tiles, _ in seen} <= {(1, 2), (2, 2)} and seen[-1][:2] == (2, 2)
        assert seen[-1][2].startswith("tile 2 of 2, ")
        session.tick()
        mesh = session.take_mesh(job)
        assert mesh is not None and mesh.final and mesh.iteration == 120  # both tiles' steps
        # one lattice of the detail size over the whole box: both spheres, the grid as fine as asked
        assert mesh.vertices[:, 0].min() < -2.0 and mesh.vertices[:, 0].max() > 2.0
        edges = np.linalg.norm(mesh.vertices[mesh.faces[:, 0]] - mesh.vertices[mesh.faces[:, 1]], axis=1)
        assert 0.7 < np.median(edges) / 0.04 < 1.3
        session.disconnect()
    finally:
        process.kill()
        process.wait()


@pytest.mark.live
def test_unreachable_backend_is_reported_within_the_connect_timeout():
    session = Session(address=f"tcp://127.0.0.1:{free_port()}", connect_timeout=1.0)
    started = time.monotonic()
    assert not session.wait_connected()
    assert time.monotonic() - started < 2.0
    assert session.status == "unreachable" and "no backend answers" in session.message
    session.disconnect()


def test_a_local_backend_gets_no_python_path_meant_for_blender():
    environ = {"PATH": "/usr/bin", "PYTHONPATH": "/blender/site-packages", "PYTHONHOME": "/blender", "HOME": "/home/a"}
    assert backend_environment(environ) == {"PATH": "/usr/bin", "HOME": "/home/a"}
    assert environ["PYTHONPATH"] == "/blender/site-packages"  # the caller's own is left alone


@pytest.mark.live
@pytest.mark.slow
def test_local_backend_starts_and_stops(tmp_path):
    backend = LocalBackend()
    launch = plan_launch(BACKEND_PYTHON, None)
    address = backend.start(Launch([*launch.args, "--device", "cpu", "--results-dir", str(tmp_path / "kept")],
                                   launch.env), tmp_path)
    assert backend.running and address.startswith("tcp://127.0.0.1:")
    assert read_run_file(tmp_path) == RunRecord(backend.pid, address, BACKEND_PYTHON)
    session = Session(address=address, connect_timeout=60.0)
    try:
        assert session.wait_connected()
    finally:
        session.disconnect()
        process = backend.process
        backend.stop()
    assert not backend.running and process.returncode == 0  # it shut down cleanly on SIGTERM
    assert read_run_file(tmp_path) is None
    with pytest.raises(LaunchError, match="could not start"):
        backend.start(plan_launch("/nonexistent/python", None), tmp_path)


def test_bad_addresses_and_key_files_are_one_line_and_leave_the_session_free_to_retry(tmp_path):
    import zmq.auth

    public, secret = zmq.auth.create_certificates(str(tmp_path), "server")
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key\n")
    assert address_problem("tcp://127.0.0.1:5555") is None and address_problem("tcp://[::1]:7") is None
    assert address_problem("tcp://gpu-box.local:5555") is None
    cases = [
        ({"address": "127.0.0.1:5555"}, "tcp://127.0.0.1:5555"),
        ({"address": "tcp://127.0.0.1"}, "tcp://HOST:PORT"),
        ({"address": "tcp://127.0.0.1:99999"}, "between 1 and 65535"),
        ({"address": "udp://127.0.0.1:5555"}, "must start with tcp://"),
        ({"address": ""}, "no backend address"),
        ({"server_key_file": str(tmp_path / "missing.key")}, "Backend Public Key: cannot read the key file"),
        ({"server_key_file": str(garbage)}, "Backend Public Key: cannot read"),
        ({"server_key_file": public, "client_key_file": public}, "holds no secret key"),
        ({"client_key_file": secret}, "set both, or neither"),
    ]
    for fields, expected in cases:
        session = Session(**{"address": "tcp://127.0.0.1:5555", **fields})
        with pytest.raises(LinkError, match=expected.replace("[", r"\[")) as raised:
            session.connect()
        assert "\n" not in str(raised.value) and session.message == str(raised.value)
        assert session.client is None and session.status == "invalid"  # nothing half-made is kept
        session.address, session.server_key_file, session.client_key_file = f"tcp://127.0.0.1:{free_port()}", "", ""
        session.connect()  # fixed: the same session connects
        assert session.client is not None and session.status == "connecting"
        session.disconnect()


class FakeClient:
    """Stands in for ``protocol.client.Client``: records what is sent, returns queued events."""

    def __init__(self) -> None:
        self.submitted: list[str] = []
        self.cancelled: list[str] = []
        self.events: list = []
        self.unfinished: dict = {}

    def submit(self, points, normals, colours, overrides, tag="") -> str:
        request = f"request-{len(self.submitted)}"
        self.submitted.append(request)
        return request

    def cancel(self, job_id: str) -> str:
        self.cancelled.append(job_id)
        return f"cancel-{job_id}"

    def poll(self, timeout_ms: int = 0) -> list:
        events, self.events = self.events, []
        return events

    def close(self) -> None:
        pass


def fake_session() -> tuple[Session, FakeClient]:
    session = Session(address="tcp://127.0.0.1:1")
    session.client = client = FakeClient()
    session.status = "connected"
    return session, client


def cloud() -> tuple:
    points, normals = sphere_cloud(100)
    return wire_cloud(points, normals, None, np.eye(4))


def test_cancel_stops_jobs_still_preparing_or_not_yet_accepted():
    session, client = fake_session()
    release = threading.Event()

    def slow():
        assert release.wait(10)
        return cloud()

    preparing = session.submit_prepared("A", slow, SMALL)
    sent = session.submit_prepared("B", cloud, SMALL)
    deadline = time.monotonic() + 10
    while sent.status == "preparing":
        session.tick()
        assert time.monotonic() < deadline
    assert sent.status == "submitting" and client.submitted == [sent.request]
    for job in session.active_jobs():
        session.cancel(job)
    assert preparing.status == "cancelled" and sent.status == "cancelling" and sent.describe() == "cancelling"
    release.set()
    deadline = time.monotonic() + 10
    while session._prepared.empty() and session.jobs and time.monotonic() < deadline:
        time.sleep(0.01)
    session.tick()
    assert client.submitted == [sent.request]  # the cancelled cloud was dropped, never sent
    # the backend accepts the sent one: it is cancelled at once, and progress does not revive it
    client.events = [JobAccepted(parent=sent.request, job="j1", queue_position=0),
                     Progress(job="j1", iteration=3, total=100)]
    session.tick()
    assert client.cancelled == ["j1"] and sent.status == "cancelling"
    client.events = [JobCancelled(job="j1", reason="cancelled by the client")]
    session.tick()
    assert sent.status == "cancelled" and preparing.status == "cancelled" and not session.active_jobs()


def test_clear_forgets_ended_jobs_and_keeps_active_and_resubmittable_ones():
    session, _ = fake_session()
    for status in ("done", "failed", "cancelled", "interrupted", "running", "preparing"):
        session.jobs[status] = JobState(request=status, source=status, preview=f"{status}_siren", status=status)
    assert session.clear_finished() == 3
    assert sorted(session.jobs) == ["interrupted", "preparing", "running"]
    session.forget(session.jobs["interrupted"])
    assert sorted(session.jobs) == ["preparing", "running"]


def test_the_views_are_drawn_again_only_on_a_change_or_while_busy():
    gate = RedrawGate()
    session, client = fake_session()
    session.jobs["a"] = job = JobState(request="a", source="A", preview="A_siren", job="j", status="done")
    assert gate.due(session.signature(), False)  # first look
    assert not any(gate.due(session.signature(), False) for _ in range(20))  # idle: never
    job.status, job.message = "failed", "boom"
    assert gate.due(session.signature(), False) and not gate.due(session.signature(), False)
    assert gate.due(session.signature(), True) and gate.due(session.signature(), True)  # busy: every tick


def test_the_launch_is_an_argument_list_and_windows_paths_survive():
    chosen = plan_launch(r"C:\Users\me\My Envs\siren\Scripts\python.exe", None)
    assert chosen.args == [r"C:\Users\me\My Envs\siren\Scripts\python.exe", "-m", "siren_recon", "serve"]
    assert "PYTHONPATH" not in chosen.env  # its own environment finds siren-recon
    site = Path("/home/me/.config/blender/extensions/.user/user_default/siren_recon/site")
    launch = plan_launch("", site, python="/blender/python/bin/python3.11")
    assert launch.args == ["/blender/python/bin/python3.11", "-m", "siren_recon", "serve"]
    assert launch.env["PYTHONPATH"] == str(site) and launch.env["PYTHONNOUSERSITE"] == "1"
    assert plan_launch("/envs/siren/bin/python", site).args[0] == "/envs/siren/bin/python"  # a chosen one wins
    with pytest.raises(LaunchError, match="no local backend is installed"):
        plan_launch("", None)


@pytest.fixture
def local_state():
    """The add-on's running state, emptied before and after (its local backend stopped)."""
    state.shutdown()
    state.local_backend = LocalBackend()
    yield state
    state.shutdown()


def installed_launch(tmp_path) -> Launch:
    """The installed backend's launch, with the project's Python standing in for Blender's and the
    repository for the install folder."""
    launch = plan_launch("", REPO, python=BACKEND_PYTHON)
    return Launch([*launch.args, "--device", "cpu", "--results-dir", str(tmp_path / "kept")], launch.env)


def pump_state(condition, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        state.tick()
        time.sleep(0.02)
        assert time.monotonic() < deadline, (state.session.status, state.session.message)


@pytest.mark.live
@pytest.mark.slow
def test_the_local_backend_starts_without_waiting_and_its_exit_is_reported_with_its_log(local_state, tmp_path):
    folder = tmp_path / "user"
    started = time.monotonic()
    session = local_state.start_local(installed_launch(tmp_path), folder)
    assert time.monotonic() - started < 1.0  # no waiting for the backend to load
    assert session.status == "connecting" and "starting the local backend" in session.message
    assert session.server_key_file == "" and session.address == local_state.local_backend.address
    job = session.submit_prepared("Sphere", cloud, {**SMALL, "train.iterations": 100_000})
    pump_state(lambda: session.status == "connected")
    pump_state(lambda: job.status == "running")  # the cloud waited for the welcome, then went
    process = local_state.local_backend.process
    assert (folder / "backend.log").read_text().count("listening on") == 1
    process.send_signal(signal.SIGKILL)
    process.wait()
    local_state.tick()  # the next tick notices
    assert session.status == "exited" and job.status == "interrupted"  # accepted: its cloud is kept
    report = local_state.exit_report
    assert report[0].startswith(f"the local backend exited with status {-signal.SIGKILL}")
    assert "backend.log" in report[0]
    assert any("listening on" in line for line in report[1:])
    assert session.message == report[0] and "no backend answers" not in session.message
    assert read_run_file(folder) is None
    # Resubmit starts it again where it listened, and the job runs there again
    address, killed = session.address, process.pid
    assert "starting the local backend again" in local_state.resubmit(installed_launch(tmp_path), folder)
    assert local_state.session is session and local_state.local_backend.address == address
    assert local_state.local_backend.pid not in (0, killed)
    pump_state(lambda: job.status == "running" and job.iteration > 0)
    assert not session.interrupted_jobs()


@pytest.mark.live
@pytest.mark.slow
def test_a_backend_left_by_a_crashed_blender_is_reused_or_stopped(local_state, tmp_path, monkeypatch):
    folder = tmp_path / "user"
    folder.mkdir()
    # a leftover that does not answer (hung): its command line names its address, as the backend's does
    silent = f"tcp://127.0.0.1:{free_port()}"
    hung = subprocess.Popen([BACKEND_PYTHON, "-c", "import time; time.sleep(300)", "--bind", silent])
    # Popen returns inside the child's exec, before Linux shows its arguments: a leftover has long run
    deadline = time.monotonic() + 10
    while silent not in (command_line(hung.pid) or "") and time.monotonic() < deadline:
        time.sleep(0.01)
    write_run_file(folder, RunRecord(hung.pid, silent, BACKEND_PYTHON))
    monkeypatch.setattr(state, "ADOPT_TIMEOUT", 1.0)
    session = local_state.start_local(installed_launch(tmp_path), folder)
    assert session.address == silent and "left running" in session.message
    pump_state(lambda: local_state.session.address != silent, 10)
    assert hung.wait(5) is not None  # it was stopped, and a fresh backend started in its place
    fresh = local_state.local_backend.process
    pump_state(lambda: local_state.session.status == "connected")
    record = read_run_file(folder)
    assert record.pid == fresh.pid and record.address == local_state.session.address
    # Blender crashes: the backend runs on, only its run file knows it; the next Blender reuses it
    local_state.session.client.close()
    local_state.session, local_state.local_backend = None, LocalBackend()
    again = local_state.start_local(installed_launch(tmp_path), folder)
    assert again.address == record.address and local_state.local_backend.pid == fresh.pid
    pump_state(lambda: again.status == "connected", 10)
    assert "left running" in again.message and fresh.poll() is None
    local_state.stop_local()  # Stop: the adopted process ends, its run file goes
    assert fresh.wait(10) is not None and not pid_alive(fresh.pid) and read_run_file(folder) is None
    assert again.status == "disconnected"
    # a run file whose process is long gone is removed, and a fresh backend started
    write_run_file(folder, RunRecord(fresh.pid, record.address, BACKEND_PYTHON))
    assert local_state.local_backend.adopt(folder) is None and read_run_file(folder) is None


def run_until(session: Session, condition, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        session.tick(budget=0.005, wait_ms=20)
        assert time.monotonic() < deadline, [j.status for j in session.jobs.values()]


@pytest.mark.live
@pytest.mark.slow
def test_a_restarted_backend_offers_resubmit_and_a_kept_result_can_be_fetched(tmp_path):
    port = free_port()
    first = start_backend(port, tmp_path / "first.txt")
    points, normals = sphere_cloud(600, radius=1.5)
    session = Session(address=f"tcp://127.0.0.1:{port}", heartbeat_timeout=1.5)
    second = None
    try:
        assert session.wait_connected(20)
        job = session.submit("Sphere", points, normals, None, {**SMALL, "train.iterations": 100_000})
        run_until(session, lambda: job.status == "running" and job.iteration > 0)
        first.kill()
        first.wait()
        second = start_backend(port, tmp_path / "second.txt", "--results-dir", str(tmp_path / "kept"))
        run_until(session, lambda: job.status == "interrupted", 30)
        assert session.interrupted_jobs() == [job] and "resubmit" in session.message
        session.client.unfinished[job.job].overrides["train.iterations"] = 60  # shorter the second time
        assert session.resubmit() == [job]
        run_until(session, lambda: job.status == "done")
        assert job.preview == "Sphere_siren" and job.job
        finished_id, faces = job.job, len(session.take_mesh(job).faces)
        session.disconnect()
        # "the .blend is reopened": a new session asks for the result by the id the object kept
        again = Session(address=f"tcp://127.0.0.1:{port}")
        assert again.wait_connected(20)
        fetched = again.fetch("Sphere", "Sphere_siren", finished_id)
        run_until(again, lambda: not fetched.active, 30)
        mesh = again.take_mesh(fetched)
        assert fetched.status == "done" and mesh.final and len(mesh.faces) == faces
        missing = again.fetch("Other", "Other_siren", "f" * 32)
        run_until(again, lambda: not missing.active, 30)
        assert missing.status == "failed" and "unknown_job" in missing.message
        again.disconnect()
    finally:
        session.disconnect()
        for process in (first, second):
            if process is not None:
                process.kill()
                process.wait()


def test_a_cloud_goes_to_the_wire_in_world_space_as_contiguous_float32_chunk_by_chunk():
    matrix = trs([5.0, 0.0, -1.0], [0.1, 0.7, -0.4], [3.0, 1.0, 0.5])
    points, normals = sphere_cloud(1001)
    rgba = np.random.default_rng(0).random((1001, 4))
    world, turned, rgb = wire_cloud(points, normals, rgba, matrix, chunk=100)
    for array in (world, turned, rgb):
        assert array.dtype == np.float32 and array.flags.c_contiguous and array.shape == (1001, 3)
    np.testing.assert_allclose(world, to_world(points, matrix), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(turned, normals_to_world(normals, matrix), atol=1e-6)
    np.testing.assert_array_equal(rgb, rgba[:, :3].astype(np.float32))
    assert wire_cloud(points, None, None, np.eye(4))[1:] == (None, None)


@pytest.mark.live
def test_a_cloud_is_prepared_off_the_callers_thread_and_sent_by_the_tick(tmp_path):
    port = free_port()
    process = start_backend(port, tmp_path / "backend.txt")
    session = Session(address=f"tcp://127.0.0.1:{port}")
    release = threading.Event()
    points, normals = sphere_cloud(600, radius=1.5)

    def slow_preparation():
        assert release.wait(30)
        return wire_cloud(points, normals, None, np.eye(4))

    def broken_preparation():
        raise ValueError("no position attribute")

    try:
        assert session.wait_connected(20)
        job = session.submit_prepared("Sphere", slow_preparation, {**SMALL, "train.iterations": 100_000})
        broken = session.submit_prepared("Cube", broken_preparation, SMALL)
        assert job.status == "preparing" and job.active  # returned while the preparation still waits
        run_until(session, lambda: not broken.active, 10)
        assert broken.status == "failed" and "no position attribute" in broken.message
        session.tick()
        assert job.status == "preparing" and not job.job  # nothing sent before it is ready
        release.set()
        run_until(session, lambda: job.status == "running")
        assert job.job and session.jobs[job.request] is job and not job.request.startswith("preparing")
        session.cancel(job)
        run_until(session, lambda: job.status == "cancelled", 30)
    finally:
        release.set()
        session.disconnect()
        process.kill()
        process.wait()
