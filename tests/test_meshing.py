"""Marching cubes on analytic fields: position, orientation, memory bound, component removal."""

from __future__ import annotations

import numpy as np
import torch

from backend.engine.meshing import (
    component_labels,
    drop_unsupported_components,
    extract_mesh,
    face_areas,
    remove_small_components,
)


def sphere(radius: float, centre=(0.0, 0.0, 0.0)):
    c = torch.tensor(centre, dtype=torch.float32)
    return lambda x: (x - c).norm(dim=-1) - radius


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def test_sphere_mesh_lies_on_the_sphere_and_faces_outward():
    lo, hi = np.array([-1.0, -1.0, -1.0]), np.array([1.0, 1.0, 1.0])
    verts, faces = extract_mesh(sphere(0.6), lo, hi, 64, 4096, torch.device("cpu"))
    radii = np.linalg.norm(verts, axis=1)
    voxel = 2.0 / 63
    assert np.abs(radii - 0.6).max() < 0.1 * voxel
    assert abs(signed_volume(verts, faces) - 4 / 3 * np.pi * 0.6**3) < 0.01
    assert component_labels(len(verts), faces)[0] == 1


def test_chunk_size_changes_memory_not_result():
    lo, hi = np.array([-1.0, -0.5, -0.8]), np.array([0.9, 1.0, 0.7])
    field = sphere(0.5, (0.1, 0.2, 0.0))
    small = extract_mesh(field, lo, hi, 40, 1024, torch.device("cpu"))
    large = extract_mesh(field, lo, hi, 40, 1 << 20, torch.device("cpu"))
    np.testing.assert_allclose(small[0], large[0], atol=1e-6)
    np.testing.assert_array_equal(small[1], large[1])


def test_field_without_zero_crossing_gives_an_empty_mesh():
    verts, faces = extract_mesh(lambda x: x[:, 0] * 0 + 1.0, np.zeros(3) - 1, np.ones(3), 16, 4096, torch.device("cpu"))
    assert verts.shape == (0, 3) and faces.shape == (0, 3)


def test_small_components_are_removed_and_large_kept():
    lo, hi = np.array([-1.0, -1.0, -1.0]), np.array([1.0, 1.0, 1.0])
    big, small = sphere(0.5, (-0.3, 0, 0)), sphere(0.06, (0.75, 0.75, 0.75))
    verts, faces = extract_mesh(lambda x: torch.minimum(big(x), small(x)), lo, hi, 64, 8192, torch.device("cpu"))
    assert component_labels(len(verts), faces)[0] == 2
    kept_v, kept_f = remove_small_components(verts, faces, 0.05)
    assert component_labels(len(kept_v), kept_f)[0] == 1
    assert np.abs(np.linalg.norm(kept_v - [-0.3, 0, 0], axis=1) - 0.5).max() < 0.01
    assert abs(face_areas(kept_v, kept_f).sum() - 4 * np.pi * 0.25) < 0.05
    untouched = remove_small_components(verts, faces, 0.0)
    assert len(untouched[1]) == len(faces)


def test_pieces_without_input_points_nearby_are_dropped():
    """A detached sheet with no cloud point near it (ghost geometry) goes; the supported part stays,
    even when the ghost is the larger one."""
    from scipy.spatial import cKDTree

    lo, hi = np.array([-1.0, -1.0, -1.0]), np.array([1.0, 1.0, 1.0])
    real, ghost = sphere(0.3, (-0.5, 0, 0)), sphere(0.4, (0.45, 0, 0))
    verts, faces = extract_mesh(lambda x: torch.minimum(real(x), ghost(x)), lo, hi, 64, 8192, torch.device("cpu"))
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(2000, 3))
    cloud = directions / np.linalg.norm(directions, axis=1, keepdims=True) * 0.3 + [-0.5, 0, 0]
    kept_v, kept_f = drop_unsupported_components(verts, faces, cKDTree(cloud), 0.02, 0.5)
    assert component_labels(len(kept_v), kept_f)[0] == 1
    assert np.abs(np.linalg.norm(kept_v - [-0.5, 0, 0], axis=1) - 0.3).max() < 0.01
    # with no share required, nothing is dropped
    assert len(drop_unsupported_components(verts, faces, cKDTree(cloud), 0.02, 0.0)[1]) == len(faces)
    # a cloud that supports neither piece still leaves the better-supported one
    far = cKDTree(np.array([[-0.5, 0.0, 0.31]]))
    assert len(drop_unsupported_components(verts, faces, far, 0.02, 0.5)[1]) > 0


def thin_features(x: torch.Tensor) -> torch.Tensor:
    """A sphere with a plate 0.02 thick (a fifth of a coarse cell at 64^3) and a thin rod."""
    sphere_part = x.norm(dim=-1) - 0.45
    plate = torch.maximum((x[:, 1] - 0.3).abs() - 0.01, (x[:, [0, 2]].abs() - 0.7).max(dim=-1).values)
    rod = torch.maximum((x[:, [0, 1]] + torch.tensor([0.5, -0.5])).norm(dim=-1) - 0.012, x[:, 2].abs() - 0.8)
    return torch.minimum(torch.minimum(sphere_part, plate), rod)


def hausdorff(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.spatial import cKDTree

    return float(max(cKDTree(a).query(b)[0].max(), cKDTree(b).query(a)[0].max()))


def test_narrow_band_gives_the_dense_surface_on_thin_features():
    from backend.engine.meshing import evaluate_band, grid_shape

    lo, hi = -np.ones(3) * 0.95, np.ones(3) * 0.95
    dense = extract_mesh(thin_features, lo, hi, 64, 1 << 16, torch.device("cpu"))
    band = extract_mesh(thin_features, lo, hi, 64, 1 << 16, torch.device("cpu"), band=True)
    voxel = 1.9 / 63
    assert len(band[1]) == len(dense[1])
    assert hausdorff(dense[0], band[0]) < 1e-4 * voxel  # the same crossings, up to float32 rounding
    counts, voxel = grid_shape(lo, hi, 128)
    _, share = evaluate_band(thin_features, lo, counts, voxel, 1 << 16, torch.device("cpu"))
    assert share < 0.5  # most of the grid is never evaluated exactly


def test_narrow_band_gives_the_dense_surface_on_a_trained_network():
    from backend.engine.pipeline import train_field

    from .shapes import small_config, sphere_cloud

    points, normals = sphere_cloud(1500, radius=0.8)
    field, _ = train_field(points, normals, small_config(train__iterations=150))
    lo, hi = np.array(field.bounds[0]), np.array(field.bounds[1])
    dense = extract_mesh(field.model, lo, hi, 72, 1 << 16, torch.device("cpu"))
    band = extract_mesh(field.model, lo, hi, 72, 1 << 16, torch.device("cpu"), band=True)
    voxel = float((hi - lo).max()) / 71
    assert hausdorff(dense[0], band[0]) < voxel
