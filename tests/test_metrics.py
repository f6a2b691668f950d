"""Metrics give the analytic answers on spheres."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import open3d as o3d
import pytest

from evaluation.closest_point import closest_on_mesh_numpy
from evaluation.metrics import closest_on_mesh, compare_meshes, count_components, far_area_fraction, sample_surface
from siren_recon.engine.errors import InputError
from siren_recon.io.text_meshes import read_obj


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


def test_without_open3d_the_closest_points_are_open3ds(monkeypatch: pytest.MonkeyPatch):
    """Spot, plus a plane of two triangles far larger than the rest and a triangle of no area:
    the NumPy search finds Open3D's distances for points on, near and far from the mesh, and
    compare_meshes scores the same with Open3D unimportable."""
    v, f = read_obj(Path(__file__).resolve().parents[1] / "data" / "spot.obj")
    extra_v = np.array([[-5.0, -5.0, -0.9], [5.0, -5.0, -0.9], [5.0, 5.0, -0.9], [-5.0, 5.0, -0.9],
                        [0.0, 0.0, 2.0], [0.5, 0.0, 2.0]])
    extra_f = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 5]]) + len(v)
    v, f = np.vstack([v, extra_v]), np.vstack([f, extra_f])
    rng = np.random.default_rng(3)
    points, _ = sample_surface(v[:-6], f[:-3], 6_000, rng)
    queries = np.vstack([points + rng.normal(size=points.shape) * scale for scale in (0.0, 0.003, 0.03, 0.3)]
                        + [[[0.25, 0.0, 2.1], [9.0, 0.0, 0.0]]])
    expected, _, _ = closest_on_mesh(v, f, queries)
    distance, _ = closest_on_mesh_numpy(v, f, queries)
    np.testing.assert_allclose(distance, expected, atol=2e-6)
    assert distance[-2] == pytest.approx(0.1) and distance[-1] == pytest.approx(np.hypot(4.0, 0.9))
    pred, pred_f = sphere(0.5)
    with_open3d = compare_meshes(pred, pred_f, v, f, samples=20_000)
    monkeypatch.setitem(sys.modules, "open3d", None)  # `import open3d` now raises ImportError
    without = compare_meshes(pred, pred_f, v, f, samples=20_000)
    assert without.chamfer_l1 == pytest.approx(with_open3d.chamfer_l1, rel=1e-5)
    assert without.hausdorff == pytest.approx(with_open3d.hausdorff, rel=1e-5)
    assert without.fscore == pytest.approx(with_open3d.fscore, abs=1e-3)


def test_without_open3d_a_long_triangle_beats_nearer_centroids():
    """Three hundred slivers 10 long and a patch of small triangles just above one of them: the
    query's 16 nearest centroids are all the patch's, yet the closest triangle is the sliver.
    (Open3D 0.20's float32 query puts the first one 0.024 away.)"""
    slivers_v = np.array([[[0.0, y, 0.0], [10.0, y, 0.0], [10.0, y + 0.01, 0.0]] for y in np.arange(300) * 0.1])
    xs, ys = np.meshgrid(np.linspace(0.45, 0.55, 6), np.linspace(1.95, 2.05, 6))
    grid = np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, 0.05)], axis=1)
    cells = np.array([[r * 6 + c, r * 6 + c + 1, r * 6 + c + 7] for r in range(5) for c in range(5)])
    v = np.vstack([slivers_v.reshape(-1, 3), grid])
    f = np.vstack([np.arange(900).reshape(300, 3), cells + 900])
    queries = np.array([[0.5, 2.0003, 0.001], [3.0, 10.0002, -0.002], [0.5, 2.0, 0.06]])
    distance, triangle = closest_on_mesh_numpy(v, f, queries)
    assert distance == pytest.approx([0.001, 0.002, 0.01]) and triangle[:2].tolist() == [20, 100]
    assert triangle[2] >= 300  # the patch
