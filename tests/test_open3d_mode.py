"""Open3D script mode: PointCloud in, TriangleMesh out, files both ways."""

from __future__ import annotations

import numpy as np
import open3d as o3d
import pytest

import siren_recon
from siren_recon.engine.errors import Cancelled, InputError
from siren_recon.engine.pipeline import reconstruct_points
from siren_recon.open3d_mode import read_point_cloud, reconstruct, write_mesh

from .shapes import small_config, sphere_cloud

RED, BLUE = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])


def two_colour_sphere(count: int = 1500) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A unit sphere's points and normals, red above the equator and blue below."""
    points, normals = sphere_cloud(count)
    return points, normals, np.where((points[:, 2] > 0)[:, None], RED, BLUE)


def assert_red_above_blue_below(vertices: np.ndarray, colours: np.ndarray) -> None:
    assert colours.shape == (len(vertices), 3)
    top, bottom = vertices[:, 2] > 0.2, vertices[:, 2] < -0.2
    assert top.any() and bottom.any()
    np.testing.assert_allclose(colours[top], np.tile(RED, (int(top.sum()), 1)), atol=1e-6)
    np.testing.assert_allclose(colours[bottom], np.tile(BLUE, (int(bottom.sum()), 1)), atol=1e-6)


def test_reconstruct_point_cloud_to_triangle_mesh_with_progress():
    points, normals = sphere_cloud(1500, radius=0.25, centre=(0.1, -0.2, 0.3))
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    pcd.normals = o3d.utility.Vector3dVector(normals)
    seen = []
    mesh = reconstruct(pcd, small_config(train__iterations=150), on_progress=seen.append)
    assert isinstance(mesh, o3d.geometry.TriangleMesh)
    assert mesh.has_vertex_normals() and len(mesh.triangles) > 100
    radii = np.linalg.norm(np.asarray(mesh.vertices) - [0.1, -0.2, 0.3], axis=1)
    assert abs(np.median(radii) - 0.25) < 0.01
    assert seen and seen[-1].iteration == 150


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".stl", ".glb", ".off"])
def test_written_meshes_read_back(tmp_path, suffix):
    box = o3d.geometry.TriangleMesh.create_box()
    verts, faces = np.asarray(box.vertices), np.asarray(box.triangles)
    path = tmp_path / f"box{suffix}"
    write_mesh(path, verts, faces)
    back = o3d.io.read_triangle_mesh(str(path))
    assert len(back.triangles) == 12


@pytest.mark.parametrize("suffix", [".xyz", ".xyzn", ".pcd", ".ply", ".pts"])
def test_point_formats_read_back(tmp_path, suffix):
    points, normals = sphere_cloud(100)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    cloud.normals = o3d.utility.Vector3dVector(normals)
    path = tmp_path / f"cloud{suffix}"
    assert o3d.io.write_point_cloud(str(path), cloud)
    got, got_normals, _ = read_point_cloud(path)
    np.testing.assert_allclose(got, points, atol=1e-5)
    if suffix in (".xyzn", ".pcd", ".ply"):
        np.testing.assert_allclose(got_normals, normals, atol=1e-5)


def test_unknown_formats_are_named(tmp_path):
    with pytest.raises(InputError, match="unknown mesh format '.fbx'"):
        write_mesh(tmp_path / "x.fbx", np.zeros((3, 3)), np.array([[0, 1, 2]]))
    with pytest.raises(InputError, match="unknown point cloud format '.rcp'"):
        read_point_cloud(tmp_path / "x.rcp")


@pytest.mark.slow
def test_the_clouds_colours_reach_every_mesh_of_reconstruct_points():
    points, normals, colours = two_colour_sphere()
    config = small_config(train__iterations=60, preview__enabled=True, preview__first_iteration=20,
                          preview__min_resolution=16, preview__max_resolution=16, mesh__resolution=32)
    events = []
    result = reconstruct_points(points, normals, config, on_mesh=events.append, colours=colours)
    assert result.colours is not None
    assert_red_above_blue_below(result.vertices, result.colours)
    previews, final = [e for e in events if not e.final], events[-1]
    assert previews and final.final
    for preview in previews:
        assert preview.colours is not None
        assert_red_above_blue_below(preview.vertices, preview.colours)
    np.testing.assert_array_equal(final.colours, result.colours)
    assert reconstruct_points(points, normals, config).colours is None


def test_colours_of_another_length_than_the_points_are_refused():
    points, normals, colours = two_colour_sphere(100)
    with pytest.raises(InputError, match="99 colours for 100 points"):
        reconstruct_points(points, normals, small_config(), colours=colours[:99])


@pytest.mark.slow
def test_reconstruct_carries_the_clouds_colours_and_gives_the_runs_result():
    points, normals, colours = two_colour_sphere()
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    pcd.normals = o3d.utility.Vector3dVector(normals)
    pcd.colors = o3d.utility.Vector3dVector(colours)
    config = small_config(train__iterations=60, mesh__resolution=32)
    mesh = reconstruct(pcd, config)
    assert mesh.has_vertex_colors()
    assert_red_above_blue_below(np.asarray(mesh.vertices), np.asarray(mesh.vertex_colors))

    mesh, result = siren_recon.reconstruct_with_result(pcd, config)
    assert isinstance(mesh, o3d.geometry.TriangleMesh)
    assert result.mode == "oriented" and result.stats["faces"] == len(mesh.triangles)
    assert result.stats["points"] == len(points) and result.timings["train"] > 0
    np.testing.assert_allclose(np.asarray(mesh.vertex_colors), result.colours, atol=1e-6)
    assert result.field is not None


def test_should_cancel_stops_reconstruct():
    points, normals = sphere_cloud(1000)
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    pcd.normals = o3d.utility.Vector3dVector(normals)
    seen = []
    config = small_config(train__iterations=1000, train__progress_every=1)
    with pytest.raises(Cancelled):
        reconstruct(pcd, config, on_progress=seen.append, should_cancel=lambda: len(seen) >= 3)
    assert 3 <= seen[-1].iteration < 100
