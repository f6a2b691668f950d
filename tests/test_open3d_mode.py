"""Open3D script mode: PointCloud in, TriangleMesh out, files both ways."""

from __future__ import annotations

import numpy as np
import open3d as o3d
import pytest

from siren_recon.engine.errors import InputError
from siren_recon.open3d_mode import read_point_cloud, reconstruct, write_mesh

from .shapes import small_config, sphere_cloud


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
