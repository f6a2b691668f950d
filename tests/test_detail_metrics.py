"""Errors by curvature band and roughness give the known answers on simple shapes."""

from __future__ import annotations

import numpy as np
import open3d as o3d
import pytest

from evaluation.detail_metrics import BANDS, curvature_bands, detail_metrics, error_colours
from evaluation.metrics import sample_both_ways, sample_surface


def grid_plate(size: int = 300, ripple: float = 0.0, wavelength: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """A unit square in z = 0, optionally rippled along x (amplitude ``ripple``)."""
    u, v = np.meshgrid(np.linspace(0, 1, size + 1), np.linspace(0, 1, size + 1), indexing="ij")
    z = ripple * np.sin(2 * np.pi * u / wavelength)
    vertices = np.stack([u.ravel(), v.ravel(), z.ravel()], axis=1)
    index = np.arange((size + 1) ** 2).reshape(size + 1, size + 1)
    a, b, c, d = index[:-1, :-1].ravel(), index[1:, :-1].ravel(), index[1:, 1:].ravel(), index[:-1, 1:].ravel()
    return vertices, np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])


def o3d_mesh(mesh: o3d.geometry.TriangleMesh) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(mesh.vertices), np.asarray(mesh.triangles)


def bands_of(vertices: np.ndarray, faces: np.ndarray, count: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    points, normals = sample_surface(vertices, faces, count, np.random.default_rng(1))
    diagonal = np.linalg.norm(np.ptp(vertices, axis=0))
    return points, curvature_bands(vertices, faces, points, normals, 0.01 * diagonal)


def test_a_cube_is_flat_on_its_faces_and_sharp_along_its_edges():
    points, bands = bands_of(*o3d_mesh(o3d.geometry.TriangleMesh.create_box()))
    # distance of each sample to the nearest edge of the unit cube: the second smallest distance to a face plane
    to_planes = np.sort(np.minimum(points, 1.0 - points), axis=1)
    near_edge, mid_face = to_planes[:, 1] < 0.003, to_planes[:, 1] > 0.05
    assert (bands[near_edge] == BANDS.index("sharp")).all()
    assert (bands[mid_face] == BANDS.index("flat")).all()


def test_a_thin_sheet_is_sharp_and_a_thin_tube_is_curved():
    sheet = o3d.geometry.TriangleMesh.create_box(1.0, 1.0, 0.004)
    _, bands = bands_of(*o3d_mesh(sheet))
    assert (bands == BANDS.index("sharp")).mean() > 0.95  # the other side lies within the ball
    torus = o3d.geometry.TriangleMesh.create_torus(torus_radius=1.0, tube_radius=0.05, radial_resolution=200,
                                                   tubular_resolution=60)
    _, bands = bands_of(*o3d_mesh(torus))
    assert (bands == BANDS.index("curved")).mean() > 0.95


def test_ripples_on_a_flat_surface_count_as_roughness():
    truth = grid_plate()
    rippled = grid_plate(ripple=0.004)
    same = detail_metrics(*sample_both_ways(*truth, *truth, samples=20_000), *truth)
    rough = detail_metrics(*sample_both_ways(*rippled, *truth, samples=20_000), *truth)
    assert same.area_flat == 1.0 and same.roughness_flat < 0.01 and same.median_error < 1e-6
    # slope 2 pi a / wavelength = 0.25 at most: the mean angle of a sine is about 9 degrees
    # (samples are area-uniform, so steeper parts weigh a little more)
    assert rough.roughness_flat == pytest.approx(np.degrees(np.mean(np.arctan(0.25 * np.abs(np.cos(
        np.linspace(0, 2 * np.pi, 10_001)))))), rel=0.06)
    # while the distance barely moves: the mean of |a sin| over the diagonal
    assert rough.chamfer_flat == pytest.approx(0.004 * 2 / np.pi / np.sqrt(2), rel=0.1)


def test_an_offset_surface_has_its_gap_in_every_band_and_as_its_median():
    box = o3d.geometry.TriangleMesh.create_box()
    inflated = o3d.geometry.TriangleMesh.create_box(1.02, 1.02, 1.02).translate((-0.01, -0.01, -0.01))
    scores = detail_metrics(*sample_both_ways(*o3d_mesh(inflated), *o3d_mesh(box), samples=50_000), *o3d_mesh(box))
    gap = 0.01 / np.sqrt(3)
    assert scores.median_error == pytest.approx(gap, rel=0.01)
    assert scores.chamfer_flat == pytest.approx(gap, rel=0.02)
    assert scores.chamfer_sharp > scores.chamfer_flat  # at the edges the corners are farther
    assert scores.area_flat + scores.area_curved + scores.area_sharp == pytest.approx(1.0)
    assert scores.roughness_flat < 0.01


def test_error_colours_run_from_white_to_dark_red():
    colours = error_colours(np.array([0.0, 0.25, 0.5, 1.0, 3.0]), scale=1.0)
    assert colours.shape == (5, 3) and (colours >= 0).all() and (colours <= 1).all()
    assert colours[0].min() > 0.9
    assert np.allclose(colours[3], colours[4])
    assert (np.diff(colours[:, 2]) <= 0).all()  # blue fades as the error grows
