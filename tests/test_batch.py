"""``siren-recon batch`` against a real local-executor backend on 127.0.0.1."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from .live_backend import free_port, start_backend
from .paths import REPO
from .shapes import sphere_cloud

o3d = pytest.importorskip("open3d")

pytestmark = [pytest.mark.live, pytest.mark.slow]

SETTINGS = {
    "model.hidden_features": 64, "model.hidden_layers": 2, "sampling.surface_points": 1500,
    "sampling.box_points": 1000, "sampling.near_points": 500, "mesh.resolution": 32, "preview.enabled": False,
}


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    port = free_port()
    process = start_backend(port, tmp_path_factory.mktemp("batch_backend") / "log.txt")
    yield f"tcp://127.0.0.1:{port}"
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def write_cloud(path, points: np.ndarray, normals: np.ndarray) -> None:
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    cloud.normals = o3d.utility.Vector3dVector(normals)
    o3d.io.write_point_cloud(str(path), cloud)


def batch_command(inputs, output, backend: str, *extra: str) -> list[str]:
    settings = [arg for key, value in SETTINGS.items() for arg in ("--set", f"{key}={value}")]
    return [sys.executable, "-m", "siren_recon.cli", "batch", str(inputs), "-o", str(output), "--backend", backend,
            "--no-progress", *settings, *extra]


def default_sigint() -> None:
    """In the child before exec: SIGINT at its default and unblocked.

    A child inherits an ignored or blocked SIGINT, and Python then installs no KeyboardInterrupt
    handler. In the full suite (after the add-on tests ran Blender in this process) the batch
    child ignored Ctrl-C and finished all its jobs: a test artefact, not the command's behaviour.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_an_interrupted_batch_keeps_its_finished_meshes_and_a_rerun_does_the_rest(backend, tmp_path):
    inputs, output = tmp_path / "clouds", tmp_path / "meshes"
    inputs.mkdir()
    for index, radius in enumerate((1.0, 2.0, 3.0)):
        write_cloud(inputs / f"sphere{index}.ply", *sphere_cloud(600, radius=radius, seed=index))
    (inputs / "notes.txt").write_text("not a cloud")

    # long enough jobs that the two after the first are still running when Ctrl-C lands, even on a
    # loaded machine where this loop may look at the folder only every few seconds
    first = subprocess.Popen(batch_command(inputs, output, backend, "--iterations", "500"), cwd=REPO,
                             stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    deadline = time.monotonic() + 180
    while not (output.exists() and any(output.glob("sphere*.ply"))):
        assert first.poll() is None, first.stderr.read()
        assert time.monotonic() < deadline, "no mesh appeared"
        time.sleep(0.05)
    first.send_signal(signal.SIGINT)
    _, log = first.communicate(timeout=30)
    assert first.returncode == 130, log
    kept = sorted(p.name for p in output.glob("sphere*.ply"))
    assert 1 <= len(kept) < 3, log
    assert "cancelled" in log
    assert not [p for p in output.iterdir() if p.name.startswith(".")]  # no half-written files

    second = subprocess.run(batch_command(inputs, output, backend, "--iterations", "40"), cwd=REPO,
                            stderr=subprocess.PIPE, text=True, check=False, timeout=180)
    assert second.returncode == 0, second.stderr
    assert f"{len(kept)} skipped" in second.stderr
    assert sorted(p.name for p in output.iterdir()) == ["sphere0.ply", "sphere1.ply", "sphere2.ply"]
    for index, radius in enumerate((1.0, 2.0, 3.0)):
        mesh = o3d.io.read_triangle_mesh(str(output / f"sphere{index}.ply"))
        assert len(mesh.triangles) > 100
        assert abs(np.median(np.linalg.norm(np.asarray(mesh.vertices), axis=1)) - radius) < 0.1 * radius
    rows = [line.split() for line in second.stderr.splitlines() if line.startswith("sphere")]
    assert sorted(row[1] for row in rows) == sorted(["skipped"] * len(kept) + ["done"] * (3 - len(kept)))


def test_a_failed_input_gives_status_2_and_names_the_problem(backend, tmp_path):
    inputs = tmp_path / "clouds"
    inputs.mkdir()
    (inputs / "broken.xyz").write_text("1 2\nthree four five\n")
    result = subprocess.run(batch_command(inputs, tmp_path / "meshes", backend), cwd=REPO,
                            stderr=subprocess.PIPE, text=True, check=False, timeout=60)
    assert result.returncode == 2, result.stderr
    row = next(line for line in result.stderr.splitlines() if line.startswith("broken.xyz"))
    assert "failed" in row
    assert not (tmp_path / "meshes" / "broken.ply").exists()


def test_format_sets_the_extension_and_a_rerun_skips_it(backend, tmp_path):
    inputs, output = tmp_path / "clouds", tmp_path / "meshes"
    inputs.mkdir()
    write_cloud(inputs / "ball.ply", *sphere_cloud(400, radius=1.5))
    first = subprocess.run(batch_command(inputs, output, backend, "--iterations", "30", "--format", "off"), cwd=REPO,
                           stderr=subprocess.PIPE, text=True, check=False, timeout=120)
    assert first.returncode == 0, first.stderr
    assert [p.name for p in output.iterdir()] == ["ball.off"]
    assert len(o3d.io.read_triangle_mesh(str(output / "ball.off")).triangles) > 100
    again = subprocess.run(batch_command(inputs, output, backend, "--format", "off"), cwd=REPO,
                           stderr=subprocess.PIPE, text=True, check=False, timeout=60)
    assert again.returncode == 0 and "1 point clouds, 1 skipped" in again.stderr, again.stderr


def test_a_coloured_las_at_utm_offsets_comes_back_coloured_in_its_own_coordinates(backend, tmp_path):
    """The cloud travels to the backend as float32 relative to its centre and its mesh is moved back,
    so the glTF lands on the sphere 500,000 m out, coloured red above and blue below."""
    from .scan_files import UTM, read_coloured_mesh, write_las

    inputs, output = tmp_path / "clouds", tmp_path / "meshes"
    inputs.mkdir()
    points, _ = sphere_cloud(600, radius=5.0, centre=tuple(UTM))
    rgb = np.where((points[:, 2] > UTM[2])[:, None], [65535, 0, 0], [0, 0, 65535])
    write_las(inputs / "ball.laz", points, rgb)
    done = subprocess.run(batch_command(inputs, output, backend, "--iterations", "40", "--format", "gltf"), cwd=REPO,
                          stderr=subprocess.PIPE, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    vertices, colours = read_coloured_mesh(output / "ball.gltf")
    assert abs(np.median(np.linalg.norm(vertices - UTM, axis=1)) - 5.0) < 0.25
    assert colours is not None
    top, bottom = vertices[:, 2] > UTM[2] + 1.5, vertices[:, 2] < UTM[2] - 1.5
    assert colours[top, 0].mean() > 0.95 and colours[bottom, 2].mean() > 0.95
