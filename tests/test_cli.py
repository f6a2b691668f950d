"""The command line end to end, as a user runs it: a real process, real files."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import open3d as o3d
import pytest

from .paths import REPO
from .shapes import SMALL, sphere_cloud

pytestmark = [pytest.mark.live, pytest.mark.slow]

FAST = [
    item
    for key, value in SMALL.items()
    if key not in ("train.iterations", "mesh.resolution", "preview.enabled")
    for item in ("--set", f"{key}={value}")
]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "siren_recon.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def sphere_file(tmp_path_factory) -> Path:
    points, normals = sphere_cloud(1500, radius=3.0, centre=(1.0, 2.0, 3.0))
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    cloud.normals = o3d.utility.Vector3dVector(normals)
    path = tmp_path_factory.mktemp("cli") / "sphere.ply"
    o3d.io.write_point_cloud(str(path), cloud)
    return path


def test_reconstruct_then_remesh_the_checkpoint(sphere_file, tmp_path):
    out = tmp_path / "mesh.obj"
    ckpt = tmp_path / "field.pt"
    png = tmp_path / "mesh.png"
    previews = tmp_path / "previews"
    done = run_cli(
        "reconstruct",
        str(sphere_file),
        "-o",
        str(out),
        "--iterations",
        "120",
        "--resolution",
        "40",
        "--checkpoint",
        str(ckpt),
        "--render",
        str(png),
        "--previews",
        str(previews),
        "--set",
        "preview.enabled=true",
        "--set",
        "preview.first_iteration=40",
        *FAST,
    )
    assert done.returncode == 0, done.stderr
    mesh = o3d.io.read_triangle_mesh(str(out))
    radii = np.linalg.norm(np.asarray(mesh.vertices) - [1.0, 2.0, 3.0], axis=1)
    assert abs(np.median(radii) - 3.0) < 0.12
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    assert len(list(previews.glob("preview_*.ply"))) == 2
    assert "mode oriented" in done.stderr

    remeshed = tmp_path / "fine.stl"
    again = run_cli("mesh", str(ckpt), "-o", str(remeshed), "--resolution", "64")
    assert again.returncode == 0, again.stderr
    fine = o3d.io.read_triangle_mesh(str(remeshed))
    assert len(fine.triangles) > len(mesh.triangles)


@pytest.mark.parametrize(
    "make_input, message",
    [
        (lambda d: d / "missing.ply", "does not exist"),
        (lambda d: d / "cloud.abc", "unknown point cloud format"),
        (lambda d: (d / "junk.ply").write_text("not a ply") and d / "junk.ply", "could not be read"),
        (lambda d: (d / "few.xyz").write_text("0 0 0\n1 0 0\n0 1 0\n") and d / "few.xyz", "at least 16 are needed"),
        (
            lambda d: (
                (d / "nan.xyz").write_text("nan 0 0\n" + "\n".join(f"{i} {i % 7} {i % 5}" for i in range(40)))
                and d / "nan.xyz"
            ),
            "NaN",
        ),
    ],
)
def test_bad_input_prints_one_line_and_exits_2(tmp_path, make_input, message):
    done = run_cli("reconstruct", str(make_input(tmp_path)), "-o", str(tmp_path / "out.ply"), "--iterations", "5")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("siren-recon: error:") and message in lines[0]
    assert "Traceback" not in done.stderr


def test_bad_output_format_and_bad_setting_exit_2(sphere_file, tmp_path):
    done = run_cli("reconstruct", str(sphere_file), "-o", str(tmp_path / "out.xyz"))
    assert done.returncode == 2 and "unknown mesh format" in done.stderr
    done = run_cli("reconstruct", str(sphere_file), "-o", str(tmp_path / "out.ply"), "--set", "train.iterationz=5")
    assert done.returncode == 2 and "unknown config key 'train.iterationz'" in done.stderr
    done = run_cli("mesh", str(tmp_path / "none.pt"), "-o", str(tmp_path / "out.ply"), "--resolution", "32")
    assert done.returncode == 2 and "does not exist" in done.stderr


def test_unoriented_cloud_with_direction_flags(tmp_path):
    """An .xyz file has no normals: auto mode goes unoriented, and says so."""
    points, _ = sphere_cloud(1500, radius=1.0)
    upper = points[points[:, 2] > -0.5]
    source = tmp_path / "cap.xyz"
    np.savetxt(source, upper)
    out = tmp_path / "cap.ply"
    done = run_cli(
        "reconstruct", str(source), "-o", str(out), "--iterations", "300", "--resolution", "40", *FAST
    )
    assert done.returncode == 0, done.stderr
    assert "mode unoriented, noise 0.0" in done.stderr  # a clean sample: far below noise.free_ratio
    assert re.search(r"trimmed \d+\.\d% of the area", done.stderr)  # by default: the cloud covers part of it
    mesh = o3d.io.read_triangle_mesh(str(out))
    vertices = np.asarray(mesh.vertices)
    assert vertices[:, 2].min() > -0.6  # trimmed: no cap closes the unscanned bottom
    bad = run_cli("reconstruct", str(source), "-o", str(out), "--trim", "sometimes")
    assert bad.returncode == 2 and "--trim: expects auto, off or a share of the diagonal" in bad.stderr
    assert abs(np.median(np.linalg.norm(vertices, axis=1)) - 1.0) < 0.05


def test_a_scene_in_tiles_names_its_tile_on_the_bar_keeps_its_colours_and_meshes_at_the_voxel_size(tmp_path):
    left, left_normals = sphere_cloud(700, radius=0.8, centre=(-1.5, 0.0, 0.0))
    right, right_normals = sphere_cloud(700, radius=0.8, centre=(1.5, 0.0, 0.0), seed=1)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.concatenate([left, right])))
    cloud.normals = o3d.utility.Vector3dVector(np.concatenate([left_normals, right_normals]))
    cloud.colors = o3d.utility.Vector3dVector(np.repeat([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], 700, axis=0))
    source, out = tmp_path / "pair.ply", tmp_path / "pair_mesh.ply"
    o3d.io.write_point_cloud(str(source), cloud)
    # a detail of 0.04 over a box 5 long is finer than 65 voxels a network: tiles of 2.6, by themselves
    done = run_cli("reconstruct", str(source), "-o", str(out), "--iterations", "80", "--voxel-size", "0.04",
                   "--set", "tiles.voxels=65", *FAST)
    assert done.returncode == 0, done.stderr
    assert "tile=2/2" in done.stderr  # the bar names the tile it trains
    mesh = o3d.io.read_triangle_mesh(str(out))
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.triangles)
    for centre in (-1.5, 1.5):  # both spheres, each from its own tile
        near = vertices[np.abs(vertices[:, 0] - centre) < 1.0]
        assert abs(np.median(np.linalg.norm(near - [centre, 0.0, 0.0], axis=1)) - 0.8) < 0.05
    edges = np.linalg.norm(vertices[faces[:, 0]] - vertices[faces[:, 1]], axis=1)
    assert 0.7 < np.median(edges) / 0.04 < 1.3  # the grid as fine as asked, in the cloud's units
    colours = np.asarray(mesh.vertex_colors)  # each sphere's colour came through its tile
    assert colours[vertices[:, 0] < -0.5, 0].min() > 0.9 and colours[vertices[:, 0] > 0.5, 2].min() > 0.9
    refused = run_cli("reconstruct", str(source), "-o", str(out), "--tile-size", "-1")
    assert refused.returncode == 2 and "tiles.size" in refused.stderr


@pytest.mark.ray
def test_ray_trains_the_tiles_side_by_side_and_gives_the_mesh_of_tiles_in_turn(tmp_path):
    pytest.importorskip("ray")
    left, left_normals = sphere_cloud(600, radius=0.8, centre=(-1.5, 0.0, 0.0))
    right, right_normals = sphere_cloud(600, radius=0.8, centre=(1.5, 0.0, 0.0), seed=1)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.concatenate([left, right])))
    cloud.normals = o3d.utility.Vector3dVector(np.concatenate([left_normals, right_normals]))
    source = tmp_path / "pair.ply"
    o3d.io.write_point_cloud(str(source), cloud)
    common = ["--iterations", "60", "--tile-size", "2.6", "--voxel-size", "0.05", "--set", "train.threads=1",
              "--no-progress", *FAST]
    in_turn = run_cli("reconstruct", str(source), "-o", str(tmp_path / "in_turn.ply"), *common)
    assert in_turn.returncode == 0, in_turn.stderr
    on_ray = run_cli("reconstruct", str(source), "-o", str(tmp_path / "on_ray.ply"), "--ray",
                     "--ray-cpus-per-tile", "1", *common)
    assert on_ray.returncode == 0, on_ray.stderr
    meshes = [o3d.io.read_triangle_mesh(str(tmp_path / name)) for name in ("in_turn.ply", "on_ray.ply")]
    np.testing.assert_array_equal(np.asarray(meshes[0].vertices), np.asarray(meshes[1].vertices))
    np.testing.assert_array_equal(np.asarray(meshes[0].triangles), np.asarray(meshes[1].triangles))
    refused = run_cli("reconstruct", str(source), "-o", str(tmp_path / "x.ply"), "--ray")
    assert refused.returncode == 2 and "--tile-size" in refused.stderr.strip().splitlines()[-1]
