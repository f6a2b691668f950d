"""The add-on's plain logic (no Blender): geometry, presets, the session against a real backend.

They run twice: here on NumPy 1.26, and in the Blender 5.2 environment on NumPy 2 with the very
pyzmq/msgpack wheels the extension bundles (``test_addon_in_blender_5_2.py``).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from .addon_build import vendor_in_place
from .live_backend import BACKEND_PYTHON, free_port, start_backend
from .shapes import SMALL, sphere_cloud

vendor_in_place()

from blender_addon.backend_process import LocalBackend, backend_environment  # noqa: E402
from blender_addon.geometry import (  # noqa: E402
    blender_mesh_arrays,
    corner_to_point,
    normals_to_world,
    sample_triangles,
    to_world,
    wire_cloud,
)
from blender_addon.session import Session, trim_note  # noqa: E402
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
        "mesh.resolution": 64,
        "train.seed": 7,
    }
    with pytest.raises(ValueError, match="preset"):
        job_overrides("auto", "ultra")


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
    port = free_port()
    backend.start(f"{BACKEND_PYTHON} -m siren_recon.cli serve --device cpu", f"tcp://127.0.0.1:{port}")
    assert backend.running
    session = Session(address=f"tcp://127.0.0.1:{port}", connect_timeout=60.0)
    try:
        assert session.wait_connected()
    finally:
        session.disconnect()
        process = backend.process
        backend.stop()
    assert not backend.running and process.returncode == 0  # it shut down cleanly on SIGTERM
    with pytest.raises(ValueError, match="could not start"):
        backend.start("/nonexistent/siren-recon serve", "tcp://127.0.0.1:1")


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
