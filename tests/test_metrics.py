"""Metrics give the analytic answers on spheres."""

from __future__ import annotations

import numpy as np
import open3d as o3d
import pytest

from evaluation.metrics import compare_meshes, count_components, far_area_fraction, sample_surface
from siren_recon.engine.errors import InputError


def sphere(radius: float, centre=(0.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    mesh = o3d.geometry.TriangleMesh.create_sphere(radius=radius, resolution=120)
    return np.asarray(mesh.vertices) + centre, np.asarray(mesh.triangles)


def test_concentric_spheres_give_the_gap():
    gt = sphere(1.0)
    pred = sphere(1.1)
    diagonal = 2 * np.sqrt(3)
    m = compare_meshes(*pred, *gt, samples=50_000, fscore_threshold=0.01)
    gap = 0.1 / diagonal
    assert m.accuracy == pytest.approx(gap, rel=0.005)
    assert m.completeness == pytest.approx(gap, rel=0.005)
    assert m.chamfer_l1 == pytest.approx(gap, rel=0.005)
    assert m.hausdorff == pytest.approx(gap, rel=0.01)
    assert m.normal_consistency > 0.999
    assert m.fscore == 0.0  # every point is 2.9% of the diagonal away, beyond 1%
    assert compare_meshes(*pred, *gt, samples=20_000, fscore_threshold=0.04).fscore == 1.0


def test_identical_meshes_score_perfectly():
    mesh = sphere(0.7, (3.0, -1.0, 2.0))
    m = compare_meshes(*mesh, *mesh, samples=50_000)
    assert m.chamfer_l1 < 1e-6  # distances are to the triangles, so no sampling floor
    assert m.fscore == 1.0 and m.normal_consistency > 0.99


def test_far_from_the_origin_keeps_its_precision():
    # a scan in georeferenced coordinates: float32 alone would round away ~1e-3 of the diagonal
    vertices, faces = sphere(0.7)
    moved = vertices + (4.0e5, 5.5e6, 120.0)
    m = compare_meshes(moved, faces, moved, faces, samples=20_000)
    assert m.chamfer_l1 < 1e-5 and m.hausdorff < 1e-4


def test_unused_vertices_are_not_pieces():
    vertices, faces = sphere(1.0)
    assert count_components(np.concatenate([vertices, [[9.0, 9.0, 9.0]]]), faces) == 1
    assert count_components(vertices, np.zeros((0, 3), int)) == 0


def test_component_count_and_far_area():
    a, b = sphere(1.0), sphere(0.5, (5.0, 0.0, 0.0))
    vertices = np.concatenate([a[0], b[0]])
    faces = np.concatenate([a[1], b[1] + len(a[0])])
    assert count_components(vertices, faces) == 2
    points, _ = sample_surface(*a, 20_000, np.random.default_rng(1))
    upper = points[points[:, 2] > 0]
    assert far_area_fraction(*a, upper, 0.05) == pytest.approx(0.5, abs=0.03)
    assert far_area_fraction(*a, points, 0.05) == 0.0


def test_empty_mesh_is_an_error():
    with pytest.raises(InputError, match="empty"):
        compare_meshes(np.zeros((0, 3)), np.zeros((0, 3), int), *sphere(1.0))
