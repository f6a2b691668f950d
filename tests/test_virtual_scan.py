"""Virtual range scans see what a scanner at the cameras would, and the terrain is a height field."""

from __future__ import annotations

import numpy as np
import open3d as o3d
import pytest

from evaluation.metrics import compare_meshes
from evaluation.terrain import height, terrain_mesh
from evaluation.virtual_scan import camera_positions, range_scan, subdivide, visible_truth
from siren_recon.engine.errors import InputError

FRONT = np.array([[0.0, 0.0, 1.0]])


def sphere() -> tuple[np.ndarray, np.ndarray]:
    mesh = o3d.geometry.TriangleMesh.create_sphere(radius=1.0, resolution=40)
    return np.asarray(mesh.vertices), np.asarray(mesh.triangles)


def edge_uses(faces: np.ndarray) -> np.ndarray:
    """How many faces use each distinct edge."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    return np.unique(edges, axis=0, return_counts=True)[1]


def test_one_camera_sees_only_the_near_hemisphere():
    v, f = sphere()
    cameras = camera_positions(v, FRONT)
    assert cameras[0] == pytest.approx([0, 0, 1.5 * 2 * np.sqrt(3)], rel=0.01)
    scan = range_scan(v, f, cameras, 5000, np.random.default_rng(0), resolution=200, noise_share=0.0, lateral_share=0.0)
    assert len(scan.points) == 5000
    assert scan.clean[:, 2].min() > -0.02  # first hits only: nothing of the far side
    assert np.linalg.norm(scan.clean, axis=1) == pytest.approx(1.0, abs=0.01)
    assert scan.points == pytest.approx(scan.clean)
    assert set(np.unique(scan.views)) == {0}


def test_two_opposite_views_cover_both_sides():
    v, f = sphere()
    cameras = camera_positions(v, np.concatenate([FRONT, -FRONT]))
    scan = range_scan(v, f, cameras, 4000, np.random.default_rng(0), resolution=150)
    front, back = scan.clean[scan.views == 0], scan.clean[scan.views == 1]
    assert len(front) > 1500 and len(back) > 1500
    assert front[:, 2].min() > -0.02 and back[:, 2].max() < 0.02


def scan_offsets(count: int, seed: int, resolution: int, noise_share: float, lateral_share: float):
    """A front scan of the sphere: the camera, the clean hits, each point's offset and unit ray."""
    v, f = sphere()
    cameras = camera_positions(v, FRONT)
    scan = range_scan(v, f, cameras, count, np.random.default_rng(seed), resolution=resolution,
                      noise_share=noise_share, lateral_share=lateral_share)
    rays = scan.clean - cameras[0]
    return cameras, scan, scan.points - scan.clean, rays / np.linalg.norm(rays, axis=1, keepdims=True)


def test_noise_is_along_the_ray_at_the_asked_level():
    diagonal = 2 * np.sqrt(3)
    cameras, scan, offset, rays = scan_offsets(20_000, 1, 300, 0.003, 0.0)
    along = np.einsum("ij,ij->i", offset, rays)
    assert np.linalg.norm(offset - along[:, None] * rays, axis=1).max() < 1e-9
    # the sphere's near side is about one radius nearer than the centre: sigma shrinks with range
    ranges = np.linalg.norm(scan.clean - cameras[0], axis=1)
    expected = 0.003 * diagonal * ranges / np.linalg.norm(cameras[0])
    assert np.std(along / expected) == pytest.approx(1.0, abs=0.03)
    assert np.std(along) / diagonal == pytest.approx(0.003, rel=0.25)


def test_lateral_jitter_is_across_the_ray():
    _, _, offset, rays = scan_offsets(10_000, 2, 200, 0.0, 0.001)
    assert np.abs(np.einsum("ij,ij->i", offset, rays)).max() < 1e-9
    assert np.sqrt((offset**2).sum(axis=1).mean() / 2) / (2 * np.sqrt(3)) == pytest.approx(0.001, rel=0.05)


def test_visible_truth_is_the_seen_half():
    v, f = sphere()
    truth_v, truth_f = visible_truth(v, f, camera_positions(v, FRONT), max_edge_share=0.02)
    centroids = truth_v[truth_f].mean(axis=1)
    assert centroids[:, 2].min() > -0.05
    area = 0.5 * np.linalg.norm(np.cross(*(truth_v[truth_f[:, i]] - truth_v[truth_f[:, 0]] for i in (1, 2))), axis=1)
    # a camera at distance d sees the cap above z = 1/d of the unit sphere: area 2 pi (1 - 1/d)
    d = 1.5 * 2 * np.sqrt(3)
    # a triangle is kept whole where the seen edge crosses it: a strip of about half an edge more
    assert 2 * np.pi * (1 - 1 / d) < area.sum() < 1.06 * 2 * np.pi * (1 - 1 / d)
    assert compare_meshes(truth_v, truth_f, truth_v, truth_f, samples=5000).chamfer_l1 < 1e-6
    both_v, both_f = visible_truth(v, f, camera_positions(v, np.concatenate([FRONT, -FRONT])), max_edge_share=0.02)
    assert len(both_f) > 1.8 * len(truth_f)


def test_subdivision_keeps_the_surface_and_bounds_the_edges():
    v, f = sphere()
    fine_v, fine_f = subdivide(v, f, 0.05)
    edges = np.concatenate([np.linalg.norm(fine_v[fine_f[:, i]] - fine_v[fine_f[:, (i + 1) % 3]], axis=1)
                            for i in range(3)])
    assert edges.max() <= 0.05
    assert compare_meshes(fine_v, fine_f, v, f, samples=5000).chamfer_l1 < 1e-6
    assert (edge_uses(fine_f) == 2).all()  # still closed, no T-junctions


def test_bad_cameras_are_refused():
    v, f = sphere()
    with pytest.raises(InputError, match="camera"):
        camera_positions(v, np.zeros((1, 3)))
    with pytest.raises(InputError, match="inside"):
        range_scan(v, f, np.array([[0.0, 0.0, 1.2]]), 10, np.random.default_rng(0))


def test_terrain_is_an_open_height_field():
    v, f = terrain_mesh(resolution=50, seed=3)
    assert v.shape == (2500, 3) and f.shape == (2 * 49 * 49, 3)
    assert v[:, 2] == pytest.approx(height(v[:, 0], v[:, 1], seed=3))
    assert 0.05 < np.ptp(v[:, 2]) < 0.6
    normals = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    assert (normals[:, 2] > 0).all()  # every face looks up: one height per (x, y)
    uses = edge_uses(f)
    assert uses.max() == 2 and (uses == 1).sum() == 4 * 49  # open: the square's rim is its boundary
    assert not np.allclose(terrain_mesh(resolution=50, seed=4)[0][:, 2], v[:, 2])
