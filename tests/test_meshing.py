"""Marching cubes on analytic fields: position, orientation, memory bound, component removal."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from siren_recon.engine.analysis.cloud_index import CloudIndex
from siren_recon.engine.meshing import (
    component_labels,
    drop_unsupported_components,
    evaluate_grid,
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
    lo, hi = np.array([-1.0, -1.0, -1.0]), np.array([1.0, 1.0, 1.0])
    real, ghost = sphere(0.3, (-0.5, 0, 0)), sphere(0.4, (0.45, 0, 0))
    verts, faces = extract_mesh(lambda x: torch.minimum(real(x), ghost(x)), lo, hi, 64, 8192, torch.device("cpu"))
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(2000, 3))
    cloud = directions / np.linalg.norm(directions, axis=1, keepdims=True) * 0.3 + [-0.5, 0, 0]
    kept_v, kept_f = drop_unsupported_components(verts, faces, CloudIndex(cloud), 0.02, 0.5)
    assert component_labels(len(kept_v), kept_f)[0] == 1
    assert np.abs(np.linalg.norm(kept_v - [-0.5, 0, 0], axis=1) - 0.3).max() < 0.01
    # with no share required, nothing is dropped
    assert len(drop_unsupported_components(verts, faces, CloudIndex(cloud), 0.02, 0.0)[1]) == len(faces)
    # a cloud that supports neither piece still leaves the better-supported one
    far = CloudIndex(np.array([[-0.5, 0.0, 0.31]]))
    assert len(drop_unsupported_components(verts, faces, far, 0.02, 0.5)[1]) > 0
    # points on one cap of each sphere support under half of either: one piece is kept, or, with
    # the faces split into regions (a tiled fit's tiles), the best-supported piece of each region
    caps = np.concatenate([cloud[cloud[:, 2] > 0.25], ghost_points(directions)])
    alone = drop_unsupported_components(verts, faces, CloudIndex(caps), 0.02, 0.5)
    assert component_labels(len(alone[0]), alone[1])[0] == 1
    regions = (verts[faces].mean(axis=1)[:, 0] > 0).astype(int)
    both = drop_unsupported_components(verts, faces, CloudIndex(caps), 0.02, 0.5, regions)
    assert component_labels(len(both[0]), both[1])[0] == 2 and len(both[1]) == len(faces)


def ghost_points(directions: np.ndarray) -> np.ndarray:
    """Points on the top cap of the 0.4 sphere at (0.45, 0, 0) of the test above."""
    on = directions / np.linalg.norm(directions, axis=1, keepdims=True) * 0.4 + [0.45, 0, 0]
    return on[on[:, 2] > 0.3]


def thin_features(x: torch.Tensor) -> torch.Tensor:
    """A sphere with a plate 0.02 thick (a fifth of a coarse cell at 64^3) and a thin rod."""
    sphere_part = x.norm(dim=-1) - 0.45
    plate = torch.maximum((x[:, 1] - 0.3).abs() - 0.01, (x[:, [0, 2]].abs() - 0.7).max(dim=-1).values)
    rod = torch.maximum((x[:, [0, 1]] + torch.tensor([0.5, -0.5])).norm(dim=-1) - 0.012, x[:, 2].abs() - 0.8)
    return torch.minimum(torch.minimum(sphere_part, plate), rod)


def hausdorff(a: np.ndarray, b: np.ndarray) -> float:
    return float(max(cKDTree(a).query(b)[0].max(), cKDTree(b).query(a)[0].max()))


def boundary_edge_count(faces: np.ndarray) -> int:
    """Edges used by one face only: zero for a closed surface, more where it has a crack."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, uses = np.unique(edges, axis=0, return_counts=True)
    return int((uses == 1).sum())


def assert_same_surface(dense, band, voxel: float) -> None:
    """The band mesh is the dense one: same vertices and faces up to float rounding, as many
    pieces, closed where the dense one is closed, facing the same way."""
    assert len(band[0]) == len(dense[0]) and len(band[1]) == len(dense[1])
    assert hausdorff(dense[0], band[0]) < 1e-4 * voxel
    assert component_labels(len(band[0]), band[1])[0] == component_labels(len(dense[0]), dense[1])[0]
    assert boundary_edge_count(band[1]) == boundary_edge_count(dense[1])
    assert abs(signed_volume(*band) - signed_volume(*dense)) < 1e-6


def test_narrow_band_gives_the_dense_surface_on_thin_features():
    from siren_recon.engine.meshing import evaluate_band, grid_shape

    lo, hi = -np.ones(3) * 0.95, np.ones(3) * 0.95
    dense = extract_mesh(thin_features, lo, hi, 64, 1 << 16, torch.device("cpu"))
    band = extract_mesh(thin_features, lo, hi, 64, 1 << 16, torch.device("cpu"), band=True)
    assert_same_surface(dense, band, 1.9 / 63)
    assert boundary_edge_count(band[1]) == 0 and signed_volume(*band) > 0
    counts, voxel = grid_shape(lo, hi, 128)
    _, share = evaluate_band(thin_features, lo, counts, voxel, 1 << 16, torch.device("cpu"))
    assert share < 0.15  # most of the grid is never evaluated


def test_narrow_band_cubes_weld_without_cracks():
    """Small cubes put many seams through the surface: their shared vertices must be welded."""
    from siren_recon.engine.meshing import (
        evaluate_band,
        grid_shape,
        marching_cubes_blocks,
        marching_cubes_volume,
    )

    lo, hi = -np.ones(3) * 0.95, np.array([0.95, 0.95, 0.9])  # the last cubes run past the grid
    counts, voxel = grid_shape(lo, hi, 64)
    volume = evaluate_grid(thin_features, lo, counts, voxel, 1 << 16, torch.device("cpu"))
    dense = marching_cubes_volume(volume, lo, voxel)
    blocks, _ = evaluate_band(thin_features, lo, counts, voxel, 1 << 16, torch.device("cpu"), block=4)
    assert len(blocks.origins) > 100
    band = marching_cubes_blocks(blocks, lo, voxel)
    assert_same_surface(dense, band, voxel)
    assert boundary_edge_count(band[1]) == 0


def euler_characteristic(vertices: np.ndarray, faces: np.ndarray) -> int:
    edges = np.unique(np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1), axis=0)
    return len(vertices) - len(edges) + len(faces)


def test_narrow_band_welds_right_where_grid_values_are_exactly_zero():
    """A network's output is rounded (a difference of large terms), so grid values of exactly zero
    are common; marching cubes then puts several vertices on one point, which the welding of
    cubes must not fuse (that pinches the surface and changes its topology)."""

    def rounded(x: torch.Tensor) -> torch.Tensor:
        return torch.round(thin_features(x) * 2.0**10) / 2.0**10

    lo, hi = -np.ones(3) * 0.95, np.ones(3) * 0.95
    dense = extract_mesh(rounded, lo, hi, 64, 1 << 16, torch.device("cpu"))
    band = extract_mesh(rounded, lo, hi, 64, 1 << 16, torch.device("cpu"), band=True)
    assert len(band[0]) == len(dense[0]) and len(band[1]) == len(dense[1])
    assert euler_characteristic(*band) == euler_characteristic(*dense)
    assert boundary_edge_count(band[1]) == boundary_edge_count(dense[1]) == 0
    assert hausdorff(dense[0], band[0]) < 1e-2 * 1.9 / 63


def test_narrow_band_follows_a_surface_steeper_than_its_bound():
    """A field six times steeper than the slope the band assumes: the band still follows every
    piece of surface it meets, edge by edge, and stays closed where it misses a piece."""
    lo, hi = -np.ones(3) * 0.95, np.ones(3) * 0.95

    def steep(x: torch.Tensor) -> torch.Tensor:
        return 6.0 * thin_features(x)

    dense = extract_mesh(steep, lo, hi, 96, 1 << 16, torch.device("cpu"))
    band = extract_mesh(steep, lo, hi, 96, 1 << 16, torch.device("cpu"), band=True)
    assert_same_surface(dense, band, 1.9 / 95)

    blob = sphere(0.03, (0.7, -0.7, 0.7))

    def with_blob(x: torch.Tensor) -> torch.Tensor:
        return 6.0 * torch.minimum(thin_features(x), blob(x))

    band = extract_mesh(with_blob, lo, hi, 64, 1 << 16, torch.device("cpu"), band=True)
    dense = extract_mesh(with_blob, lo, hi, 64, 1 << 16, torch.device("cpu"))
    assert len(band[1]) > 0 and boundary_edge_count(band[1]) == 0
    assert cKDTree(dense[0]).query(band[0])[0].max() < 1e-4 * 1.9 / 63  # what it finds is dense surface


def test_narrow_band_of_a_field_without_zero_crossing_is_empty():
    for value in (1.0, -1.0):
        verts, faces = extract_mesh(lambda x, v=value: x[:, 0] * 0 + v, -np.ones(3), np.ones(3), 40, 4096,
                                    torch.device("cpu"), band=True)
        assert verts.shape == (0, 3) and faces.shape == (0, 3)


@pytest.mark.slow
def test_narrow_band_gives_the_dense_surface_on_a_trained_network():
    from siren_recon.engine.pipeline import train_field

    from .shapes import small_config, sphere_cloud

    points, normals = sphere_cloud(1500, radius=0.8)
    field, _ = train_field(points, normals, small_config(train__iterations=150))
    lo, hi = np.array(field.bounds[0]), np.array(field.bounds[1])
    dense = extract_mesh(field.model, lo, hi, 72, 1 << 16, torch.device("cpu"))
    band = extract_mesh(field.model, lo, hi, 72, 1 << 16, torch.device("cpu"), band=True)
    voxel = float((hi - lo).max()) / 71
    assert hausdorff(dense[0], band[0]) < voxel
    assert component_labels(len(band[0]), band[1])[0] == component_labels(len(dense[0]), dense[1])[0]
    assert boundary_edge_count(band[1]) == boundary_edge_count(dense[1])
    assert signed_volume(*band) > 0
