"""Trimming: ``auto`` leaves a surface the cloud surrounds untouched and opens one it covers in part."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from siren_recon.engine.analysis.cloud_index import CloudIndex
from siren_recon.engine.config.reconstruction import ReconstructionConfig, apply_overrides
from siren_recon.engine.meshing import component_labels, extract_mesh, face_areas
from siren_recon.engine.meshing.trimming import AUTO_MIN_SHARE, CUT_SPACINGS, trim_mesh
from siren_recon.engine.pipeline import reconstruct_points

from .paths import DATA
from .shapes import small_config, sphere_cloud

RESOLUTION = 64


@pytest.fixture(scope="module")
def sphere_mesh() -> tuple[np.ndarray, np.ndarray]:
    return extract_mesh(lambda x: x.norm(dim=-1) - 0.5, -np.ones(3), np.ones(3), RESOLUTION, 1 << 16,
                        torch.device("cpu"))


def boundary_vertices(faces: np.ndarray) -> np.ndarray:
    """Vertices on edges used by one face only (the open rim of a mesh)."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    return np.unique(unique[counts == 1])


def trim_with(verts, faces, points, choice="auto", distance=0.0):
    return trim_mesh(verts, faces, CloudIndex(points), choice, distance)


def test_auto_leaves_a_surrounded_surface_unchanged(sphere_mesh):
    verts, faces = sphere_mesh
    points, _ = sphere_cloud(3000, radius=0.5)
    kept_v, kept_f, outcome = trim_with(verts, faces, points)
    assert kept_v is verts and kept_f is faces  # the very arrays: the mesh is the untrimmed one, to the bit
    assert outcome.applied == "kept" and not outcome.trimmed
    assert outcome.unsupported_share < 0.01
    # a cloud with an unscanned patch (the 3% of the sphere it stood on, like a real object's
    # underside) is still a closed shape
    patchy = points[points[:, 2] < 0.47]
    outcome = trim_with(verts, faces, patchy)[2]
    assert outcome.applied == "kept" and 0.005 < outcome.unsupported_share < AUTO_MIN_SHARE


def test_auto_opens_a_scan_that_misses_a_band_around_the_middle(sphere_mesh):
    """Scanned from above and below only: the unseen band (7% of the surface unsupported, as on
    the flanks of a two-view scan) is cut, leaving two open caps."""
    verts, faces = sphere_mesh
    points, _ = sphere_cloud(3000, radius=0.5)
    kept_v, kept_f, outcome = trim_with(verts, faces, points[np.abs(points[:, 2]) > 0.08])
    assert outcome.applied == "trimmed" and 0.05 < outcome.unsupported_share < 0.1
    assert component_labels(len(kept_v), kept_f)[0] == 2
    voxel = 2.0 / (RESOLUTION - 1)
    assert np.abs(kept_v[:, 2]).min() > 0.08 - outcome.distance - voxel


def test_auto_opens_a_one_sided_scan_at_the_data_boundary(sphere_mesh):
    verts, faces = sphere_mesh
    points, _ = sphere_cloud(3000, radius=0.5)
    scanned = points[points[:, 2] > 0]  # only the upper half was seen
    kept_v, kept_f, outcome = trim_with(verts, faces, scanned)
    assert outcome.applied == "trimmed" and outcome.trimmed
    assert outcome.unsupported_share > AUTO_MIN_SHARE
    spacing = CloudIndex(scanned).spacing
    assert outcome.distance == pytest.approx(CUT_SPACINGS * spacing)
    area = face_areas(verts, faces).sum()
    assert outcome.area_cut_share == pytest.approx(1 - face_areas(kept_v, kept_f).sum() / area)
    assert 0.4 < outcome.area_cut_share < 0.6
    # the open rim follows the data's rim (z = 0) to within the margin and a cell, but for bays
    # where a gap between the random samples meets the rim; no hole opens in the scanned half
    voxel = 2.0 / (RESOLUTION - 1)
    rim = np.abs(kept_v[boundary_vertices(kept_f)][:, 2])
    assert len(rim) > 0
    assert np.quantile(rim, 0.9) < outcome.distance + voxel and rim.max() < 4 * outcome.distance + voxel
    assert kept_v[:, 2].min() > -(outcome.distance + voxel)


def test_off_and_distance(sphere_mesh):
    verts, faces = sphere_mesh
    points, _ = sphere_cloud(3000, radius=0.5)
    scanned = points[points[:, 2] > 0]
    kept_v, kept_f, outcome = trim_with(verts, faces, scanned, "off")
    assert kept_f is faces and outcome.applied == "off" and not outcome.trimmed
    cut_v, cut_f, outcome = trim_with(verts, faces, scanned, "distance", 0.05)
    assert outcome.applied == "distance" and outcome.distance == 0.05
    assert cut_v[cut_f].mean(axis=1)[:, 2].min() > -0.06
    assert 0.4 < len(cut_f) / len(faces) < 0.6
    # a distance wider than the cloud's largest gap leaves a surrounded surface whole
    assert trim_with(verts, faces, points, "distance", 0.1)[2].area_cut_share == 0.0


def untrimmed_mesh(field) -> tuple[np.ndarray, np.ndarray]:
    """The same trained field meshed with trimming off."""
    return dataclasses.replace(field, config=apply_overrides(field.config, {"mesh.trim": "off"})).mesh()


def test_a_one_sided_reconstruction_comes_out_open_and_says_so():
    """Trained end to end on the upper half of a sphere: the default cuts the cap the field puts
    under it, and the result says how much it cut."""
    points, normals = sphere_cloud(1500, radius=1.0)
    upper = points[:, 2] > 0
    opened = reconstruct_points(points[upper], normals[upper], small_config(train__iterations=150))
    assert opened.stats["trimmed"] == 1.0
    assert opened.stats["unsupported_share"] > AUTO_MIN_SHARE
    assert 0.3 < opened.stats["trimmed_area_share"] < 0.7
    rim = opened.vertices[boundary_vertices(opened.faces.astype(np.int64))]
    # the outer surface is open along the data's rim (z = 0); a fit this short also leaves a sheet
    # inside, farther than the margin from the points, whose cut edges are rims too
    outer = rim[np.linalg.norm(rim, axis=1) > 0.9]
    assert len(outer) > 0 and np.abs(outer[:, 2]).max() < 0.25
    closed_vertices, closed_faces = untrimmed_mesh(opened.field)  # trimming off: the field's cap is there
    closed_area = face_areas(closed_vertices, closed_faces.astype(np.int64)).sum()
    kept_area = face_areas(opened.vertices, opened.faces.astype(np.int64)).sum()
    assert kept_area == pytest.approx(closed_area * (1 - opened.stats["trimmed_area_share"]), rel=0.05)


@pytest.mark.slow
@pytest.mark.defaults
@pytest.mark.parametrize("with_normals", [True, False], ids=["oriented", "unoriented"])
def test_a_closed_shape_at_the_defaults_is_not_trimmed_to_the_bit(with_normals):
    """Spot as the evaluation samples it (20,000 points, seed 0), at the default settings: the
    automatic trim keeps the mesh exactly as with trimming off."""
    import open3d as o3d

    from evaluation.metrics import sample_surface

    mesh = o3d.io.read_triangle_mesh(str(DATA / "spot.obj"))
    points, normals = sample_surface(np.asarray(mesh.vertices), np.asarray(mesh.triangles), 20_000,
                                     np.random.default_rng(0))
    result = reconstruct_points(points, normals if with_normals else None,
                                apply_overrides(ReconstructionConfig(), {"train.device": "cpu"}))
    assert result.stats["trimmed"] == 0.0
    assert result.stats["unsupported_share"] < 0.01
    vertices, faces = untrimmed_mesh(result.field)
    np.testing.assert_array_equal(vertices, result.vertices)
    np.testing.assert_array_equal(faces, result.faces)


@pytest.mark.parametrize("overrides", [
    {}, {"mesh.trim": "distance", "mesh.trim_distance": 0.05}, {"mesh.trim": "off"},
    {"mesh.min_supported_share": 0.0}, {"mesh.support_distance": 0.2},
], ids=["auto", "distance", "off", "no-support-rule", "support-beyond-trim"])
@pytest.mark.parametrize("with_regions", [False, True], ids=["one-field", "regions"])
def test_finishing_equals_its_steps_one_after_another(overrides, with_regions):
    """``finish_mesh`` searches the cloud once for both the support rule and the trim; its mesh is
    the one the three steps give in turn, to the bit: a ghost piece dropped, the unscanned
    underside trimmed, a small piece removed."""
    from siren_recon.engine.meshing.cleanup import drop_unsupported_components, remove_small_components
    from siren_recon.engine.meshing.finishing import finish_mesh

    def sdf(x: torch.Tensor) -> torch.Tensor:
        body = x.norm(dim=-1) - 0.5
        ghost = (x - torch.tensor([0.7, 0.7, 0.7])).norm(dim=-1) - 0.15  # no point near it
        crumb = (x + torch.tensor([0.75, 0.75, 0.75])).norm(dim=-1) - 0.06  # scanned, but tiny
        return torch.minimum(torch.minimum(body, ghost), crumb)

    verts, faces = extract_mesh(sdf, -np.ones(3), np.ones(3), RESOLUTION, 1 << 16, torch.device("cpu"))
    body, _ = sphere_cloud(3000, radius=0.5)
    crumb, _ = sphere_cloud(200, radius=0.06, centre=(-0.75, -0.75, -0.75))
    support = CloudIndex(np.concatenate([body[body[:, 2] > -0.2], crumb]))  # the underside unscanned
    mesh = apply_overrides(ReconstructionConfig(), overrides).mesh
    regions = (verts[faces].mean(axis=1)[:, 0] > 0).astype(np.int64) if with_regions else None
    length, fraction = 2.0, 0.03
    one_v, one_f, one_trim = finish_mesh(verts, faces, support, length, mesh, fraction, regions)
    v, f = drop_unsupported_components(verts, faces, support, mesh.support_distance * length,
                                       mesh.min_supported_share, regions)
    v, f, trim = trim_mesh(v, f, support, mesh.trim, mesh.trim_distance * length)
    v, f = remove_small_components(v, f, fraction)
    np.testing.assert_array_equal(one_v, v)
    np.testing.assert_array_equal(one_f, f)
    assert dataclasses.astuple(one_trim) == pytest.approx(dataclasses.astuple(trim), nan_ok=True)
    assert len(one_f) < len(faces)
    count = component_labels(len(one_v), one_f)[0]
    if mesh.min_supported_share > 0 and mesh.support_distance < 0.1:
        assert count == 1  # the ghost dropped and the crumb removed: the body alone
    if mesh.trim != "off":
        assert trim.area_cut_share > 0.05  # the underside was cut
