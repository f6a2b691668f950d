"""Tiled fields (engine/tiling): the plan partitions the box, the blend is exact for agreeing fields
and seamless for trained ones, and tiles fitted without normals agree on inside and outside."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from siren_recon.engine.analysis.normalization import Normalization
from siren_recon.engine.meshing import component_labels, extract_mesh, grid_shape
from siren_recon.engine.meshing.dense import resolution_for_voxel
from siren_recon.engine.pipeline import reconstruct_points
from siren_recon.engine.tiling.blend import EMPTY, BlendedSdf, BlendTile, align_signs
from siren_recon.engine.tiling.plan import plan_tiles, tile_edge
from siren_recon.engine.tiling.runs import run_in_turn
from siren_recon.engine.tiling.tiled_field import (
    TiledField,
    TileInputs,
    TilePreviews,
    tile_count,
    tile_iterations,
    tile_settings,
)

from .numerics_cases import euler_characteristic
from .shapes import small_config

HALF, RADIUS = 1.5, 0.5
"""The capsule: the segment from (-HALF, 0, 0) to (HALF, 0, 0), grown by RADIUS."""


def capsule_distance(points: np.ndarray) -> np.ndarray:
    """Signed distance to the capsule."""
    points = np.asarray(points, dtype=np.float64)
    along = np.clip(points[:, 0], -HALF, HALF)
    return np.linalg.norm(points - np.stack([along, 0 * along, 0 * along], axis=1), axis=1) - RADIUS


def capsule_cloud(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Area-uniform points on the capsule with their outward normals."""
    rng = np.random.default_rng(seed)
    tube, cap = 2 * HALF * 2 * np.pi * RADIUS, 4 * np.pi * RADIUS**2
    on_tube = rng.random(count) < tube / (tube + cap)
    directions = rng.normal(size=(count, 3))
    directions[on_tube, 0] = 0.0
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    axis = np.zeros((count, 3))
    axis[on_tube, 0] = rng.uniform(-HALF, HALF, on_tube.sum())
    axis[~on_tube, 0] = np.where(directions[~on_tube, 0] > 0, HALF, -HALF)
    return axis + RADIUS * directions, directions


def test_the_tiles_partition_the_box_and_each_trains_on_its_band():
    points, _ = capsule_cloud(3000)
    tiles = plan_tiles(points, size=1.5, overlap=0.25, padding=0.05)
    lo, hi = points.min(axis=0), points.max(axis=0)
    grow = 0.05 * float((hi - lo).max())
    box = np.prod((hi - lo) + 2 * grow)
    assert len(tiles) == 3  # 4.4 long with its padding: 3 tiles of at most 1.5; the 1.4 of the others fit in one
    assert np.isclose(sum(float(np.prod(t.core_hi - t.core_lo)) for t in tiles), box)
    owners = np.zeros(len(points), dtype=int)
    for tile in tiles:
        inside_core = np.all((points >= tile.core_lo) & (points < tile.core_hi), axis=1)
        owners += inside_core
        band = np.all((points >= tile.lo) & (points <= tile.hi), axis=1)
        np.testing.assert_array_equal(tile.indices, np.flatnonzero(band))
        assert np.isclose(tile.margin, 0.25 * float((tile.core_hi - tile.core_lo).max()))
    assert (owners == 1).all()
    assert len(plan_tiles(points, size=10.0, overlap=0.25)) == 1


def test_a_survey_of_900_tiles_is_planned_its_signs_aligned_and_its_faces_assigned_as_tile_by_tile():
    # a 300 m square survey at 10 m tiles: each tile's points, the tiles' signs and each face's
    # tile as a pass over every point per tile gives them, in work that follows the points
    rng = np.random.default_rng(0)
    count = 300_000
    points = np.column_stack([rng.uniform(0, 300, count), rng.uniform(0, 300, count), rng.normal(0, 0.3, count)])
    tiles = plan_tiles(points, size=10.0, overlap=0.25)
    assert len(tiles) == 900
    for tile in [tiles[i] for i in rng.choice(len(tiles), 25, replace=False)]:
        inside = np.all((points >= tile.lo) & (points <= tile.hi), axis=1)
        np.testing.assert_array_equal(tile.indices, np.flatnonzero(inside))
    flips = rng.choice([-1.0, 1.0], len(tiles))
    blend = [BlendTile(lambda u, flip=flip: flip * u[:, 2], t.core_lo, t.core_hi, t.margin, 1.0, np.zeros(3))
             for t, flip in zip(tiles, flips)]
    align_signs(blend, points, 0.5, seed=0)
    assert len({tile.sign * flip for tile, flip in zip(blend, flips)}) == 1
    frame = Normalization.fit(points)
    vertices = frame.to_unit(np.column_stack([rng.uniform(-5, 305, (20_000, 2)), np.zeros(20_000)]))
    faces = np.arange(18_000).reshape(-1, 3)
    field = TiledField([], tiles, frame, ((-1, -1, -1), (1, 1, 1)), np.zeros((0, 3), np.float32), small_config(),
                       [1.0] * len(tiles))
    centres = np.clip(frame.from_unit(vertices[faces].mean(axis=1)), np.min([t.core_lo for t in tiles], axis=0),
                      np.max([t.core_hi for t in tiles], axis=0))
    owner = np.full(len(faces), -1)
    for number, tile in enumerate(tiles):
        owner[np.all((centres >= tile.core_lo) & (centres <= tile.core_hi), axis=1)] = number
    np.testing.assert_array_equal(field.tile_of(vertices, faces), owner)


def test_a_survey_of_many_tiles_sends_about_32_previews_of_coarser_parts_and_a_few_tiles_one_each():
    assert TilePreviews.of(30, 128) == TilePreviews(1, 128)  # the street's 30 tiles: as before
    assert TilePreviews.of(128, 128) == TilePreviews(4, 64)  # a quarter of each part's faces, a quarter of the previews
    assert TilePreviews.of(5202, 128) == TilePreviews(163, 16) and TilePreviews.of(100, 8) == TilePreviews(4, 8)


@pytest.mark.slow
def test_a_tiled_fit_of_40_tiles_previews_after_every_second_tile_at_a_coarser_resolution():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 10, 4000), rng.uniform(0, 5, 4000)
    points = np.column_stack([x, y, 0.1 * np.sin(x)])
    normals = np.tile([0.0, 0.0, 1.0], (4000, 1))
    meshes: list = []
    config = small_config(train__iterations=2, tiles__size=1.45, preview__enabled=True,
                          preview__min_resolution=16, preview__max_resolution=24)
    result = reconstruct_points(points, normals, config, on_mesh=meshes.append)
    assert len(result.field.tiles) == 40 and TilePreviews.of(40, 24) == TilePreviews(2, 21)
    sent = [m for m in meshes if not m.final]
    assert [m.iteration for m in sent] == [4 * k for k in range(1, 21)]  # after tiles 2, 4, ..., 40
    assert {m.resolution for m in sent} == {21}
    assert all(len(a.faces) < len(b.faces) for a, b in zip(sent, sent[1:]))  # each adds its tiles' parts


def test_a_runner_in_turn_holds_one_tiles_points_at_a_time():
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.uniform(0, 40, 200_000), rng.uniform(0, 10, 200_000), rng.normal(0, 0.1, 200_000)])
    normals = np.tile([0.0, 0.0, 1.0], (len(points), 1))
    tiles = plan_tiles(points, size=5.0, overlap=0.25)
    config = small_config(tiles__size=5.0)
    inputs = TileInputs(tiles, points, normals, config, {"working_points": 1000})
    assert len(inputs) == len(tiles) == 16 and [tile.number for tile in inputs[2:4]] == [2, 3]
    every = sum(t.indices.nbytes * 6 for t in tiles)  # each tile's points and normals, float64
    tracemalloc.start()
    for number, tile in enumerate(inputs):
        np.testing.assert_array_equal(tile.points, points[tiles[number].indices])
        np.testing.assert_array_equal(tile.normals, normals[tiles[number].indices])
        assert tile.number == number and tile.options == {"working_points": 1000}
        assert tile.config == tile_settings(config, len(tiles[number].indices))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 0.25 * every, (peak, every)
    # and a tiled fit gives its runner these inputs
    seen: list = []

    def runner(tiles, trainer, progress, should_cancel):
        seen.append(type(tiles))
        return run_in_turn(tiles, trainer, progress, should_cancel)

    capsule, capsule_normals = capsule_cloud(3000)
    reconstruct_points(capsule, capsule_normals, small_config(train__iterations=4, tiles__size=2.3), tile_runner=runner)
    assert seen == [TileInputs]


def analytic_tile(core_lo, core_hi, margin, scale, shift) -> BlendTile:
    """A tile whose field is the capsule's exact distance, seen in a frame of its own."""
    def function(u: torch.Tensor) -> torch.Tensor:
        x = (u.double() - torch.as_tensor(shift)) / scale
        return torch.as_tensor(scale * capsule_distance(x.numpy()), dtype=u.dtype)

    return BlendTile(function, np.asarray(core_lo, float), np.asarray(core_hi, float), margin, scale,
                     np.asarray(shift, float))


def test_blending_agreeing_fields_gives_the_field_and_a_flipped_tile_is_turned_back():
    edges = [-2.2, -0.7, 0.8, 2.2]
    tiles = [analytic_tile([a, -1, -1], [b, 1, 1], 0.4, scale, shift) for (a, b), scale, shift in
             zip(zip(edges, edges[1:]), (1.0, 0.3, 2.5), ([0, 0, 0], [0.1, -0.2, 0.3], [-1.0, 2.0, 0.5]))]
    rng = np.random.default_rng(1)
    x = np.column_stack([rng.uniform(-2.2, 2.2, 5000), rng.uniform(-1, 1, (5000, 2))])
    blended = BlendedSdf(tiles)(torch.as_tensor(x, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(blended, capsule_distance(x), atol=1e-5)
    points, _ = capsule_cloud(2000)
    tiles[1].sign = -1.0
    tiles[2].sign = -1.0
    align_signs(tiles, points, 0.05, seed=0)
    assert len({tile.sign for tile in tiles}) == 1  # all agree (which sign is the fit's own choice)
    flipped = BlendedSdf(tiles)(torch.as_tensor(x, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(np.abs(flipped), np.abs(capsule_distance(x)), atol=1e-5)
    far = np.array([[0.0, 0.0, 5.0]], dtype=np.float32)  # beyond every tile: empty space, outside
    assert BlendedSdf(tiles)(torch.as_tensor(far)).item() > 0


def closed_and_whole(vertices: np.ndarray, faces: np.ndarray) -> bool:
    """One piece, closed, of a sphere's topology: no crack, no doubled wall at a tile border."""
    return component_labels(len(vertices), faces)[0] == 1 and euler_characteristic(vertices, faces) == 2


def border_error(vertices: np.ndarray, borders: list[float], width: float = 0.3) -> float:
    """Mean distance to the true capsule of the vertices within ``width`` of a tile border (x)."""
    near = np.min(np.abs(vertices[:, [0]] - np.asarray(borders)[None, :]), axis=1) < width
    return float(np.abs(capsule_distance(vertices[near])).mean())


@pytest.mark.slow
def test_a_tiled_fit_is_seamless_across_the_borders_and_as_close_as_one_field():
    points, normals = capsule_cloud(8000)
    whole_progress: list = []
    whole = reconstruct_points(points, normals, small_config(train__iterations=300), on_progress=whole_progress.append)
    assert whole_progress
    meshes: list = []
    progress: list = []
    config = small_config(train__iterations=300, tiles__size=2.3, preview__enabled=True)
    tiled = reconstruct_points(points, normals, config, on_progress=progress.append, on_mesh=meshes.append)
    assert isinstance(tiled.field, TiledField) and len(tiled.field.tiles) == 2
    # a preview as each tile finishes (its part added), progress over both tiles' steps, then the final mesh
    assert [(m.iteration, m.final) for m in meshes] == [(300, False), (600, False), (600, True)]
    assert len(meshes[0].faces) < len(meshes[1].faces)
    assert (progress[-1].iteration, progress[-1].total) == (600, 600)
    assert [(e.tile, e.tiles) for e in progress if e.iteration in (300, 325, 600)] == [(1, 2), (2, 2), (2, 2)]
    assert all((e.tile, e.tiles) == (0, 0) for e in whole_progress)  # one field: no tile named
    assert meshes[-1].resolution == tiled.field.lattice_resolution()
    assert closed_and_whole(tiled.vertices, tiled.faces)
    border = float(tiled.field.tiles[0].core_hi[0])
    one_field = border_error(whole.vertices, [border])
    assert border_error(tiled.vertices, [border]) < max(1.5 * one_field, 0.01), one_field
    assert float(np.abs(capsule_distance(tiled.vertices)).mean()) < 0.01
    # meshed in blocks of about a tile's edge: the mesh of the whole lattice, welded shut
    field = tiled.field
    blocks = field.lattice_blocks()
    assert len(blocks) >= 2 and {len(block.tiles) for block in blocks} <= {1, 2}
    lo, hi = np.array(field.bounds[0]), np.array(field.bounds[1])
    whole_v, whole_f = extract_mesh(BlendedSdf(field.blend_tiles()), lo, hi, field.lattice_resolution(), 131072,
                                    torch.device("cpu"), True)
    vertices, faces = field.raw_mesh()
    assert len(faces) == len(whole_f) and len(vertices) == len(whole_v)
    voxel = grid_shape(lo, hi, field.lattice_resolution())[1]
    assert float(cKDTree(whole_v).query(vertices)[0].max()) < 0.01 * voxel
    assert closed_and_whole(*field.mesh())


@pytest.mark.slow
def test_tiles_fitted_without_normals_agree_on_inside_and_outside():
    points, _ = capsule_cloud(8000, seed=2)
    config = small_config(train__iterations=400, tiles__size=1.6)  # the two-stage default: DiGS, refinement
    result = reconstruct_points(points, None, config)
    assert isinstance(result.field, TiledField) and len(result.field.tiles) == 3
    assert closed_and_whole(result.vertices, result.faces)
    borders = [float(t.core_hi[0]) for t in result.field.tiles[:-1]]
    assert border_error(result.vertices, borders) < 0.01
    assert float(np.abs(capsule_distance(result.vertices)).max()) < 0.03
    # a tile whose fit chose the other sign is turned back by its neighbours
    blend = result.field.blend_tiles()
    blend[1].sign = -blend[1].sign
    align_signs(blend, result.field.support, 4.0 * result.field.support_index.spacing, seed=0)
    assert len({tile.sign for tile in blend}) == 1  # all agree again (on either sign)


@pytest.mark.slow
def test_the_voxel_size_sets_the_lattice_in_the_clouds_units():
    points, normals = capsule_cloud(3000)
    meshes: list = []
    result = reconstruct_points(points, normals, small_config(train__iterations=50, mesh__voxel_size=0.05),
                                on_mesh=meshes.append)
    lo, hi = result.field.bounds
    side = max(h - low for low, h in zip(lo, hi)) / result.field.normalization.scale
    assert meshes[-1].resolution == result.field.lattice_resolution() == resolution_for_voxel(side, 0.05)
    edges = np.linalg.norm(result.vertices[result.faces[:, 0]] - result.vertices[result.faces[:, 1]], axis=1)
    assert 0.025 < float(np.median(edges)) < 0.075  # marching cubes' edges: up to a face diagonal of a voxel
    default = small_config(train__iterations=50)
    assert reconstruct_points(points, normals, default).field.lattice_resolution() == default.mesh.resolution


def test_each_tile_trains_its_share_of_the_steps_and_iterations_given_mean_every_field():
    from siren_recon.cli import build_parser
    from siren_recon.commands.job_overrides import job_overrides

    points, normals = capsule_cloud(3000)
    progress: list = []
    config = small_config(train__iterations=200, tiles__size=2.3, tiles__iteration_share=0.25)
    result = reconstruct_points(points, normals, config, on_progress=progress.append)
    assert isinstance(result.field, TiledField) and len(result.field.tiles) == 2
    assert [field.steps for field in result.field.fields] == [50, 50]
    assert [field.config.train.iterations for field in result.field.fields] == [50, 50]
    assert (progress[-1].iteration, progress[-1].total) == (100, 100)
    assert result.field.config.train.iterations == 200  # the job's own budget, as asked
    one = small_config(train__iterations=200, tiles__iteration_share=0.25)
    assert reconstruct_points(points, normals, one).field.steps == 200  # one field: all of them
    # the share's bounds: at least 2 steps (one a stage), never more than the budget
    assert tile_iterations(small_config(train__iterations=5, tiles__iteration_share=0.1)) == 2
    assert tile_iterations(small_config(train__iterations=1, tiles__iteration_share=0.1)) == 1
    assert tile_iterations(small_config(train__iterations=2000, tiles__iteration_share=1.0)) == 2000
    # --iterations N: every field, a tile's too, exactly N steps
    args = build_parser().parse_args(["submit", "in.xyz", "-o", "out.ply", "--iterations", "300", "--tile-size", "2"])
    asked = job_overrides(args)
    assert (asked["train.iterations"], asked["tiles.iteration_share"], asked["train.until"]) == (300, 1.0, "iterations")


def counts(config) -> tuple[int, int, int]:
    """A config's surface, box and near points a step."""
    return config.sampling.surface_points, config.sampling.box_points, config.sampling.near_points


def test_a_sparse_tile_draws_fewer_samples_a_step_down_to_its_share_and_a_dense_tile_all():
    config = small_config(sampling__surface_points=1000, sampling__box_points=700, sampling__near_points=300,
                          tiles__sparse_sample_share=0.5)
    for dense in (2000, 50_000):  # twice the draw or more: the full counts
        assert tile_settings(config, dense).sampling == config.sampling
    assert counts(tile_settings(config, 1500)) == (750, 525, 225)  # its points over twice the surface count
    assert counts(tile_settings(config, 10)) == (500, 350, 150)  # never below the share
    assert tile_settings(small_config(tiles__sparse_sample_share=1.0), 10).sampling == small_config().sampling
    # a tiled run trains each tile with its own counts: the capsule's two tiles are sparse
    points, normals = capsule_cloud(3000)
    result = reconstruct_points(points, normals, small_config(train__iterations=30, tiles__size=2.3))
    assert isinstance(result.field, TiledField) and len(result.field.tiles) == 2
    for tile, field in zip(result.field.tiles, result.field.fields):
        assert len(tile.indices) < 2 * 1500  # SMALL's surface count: a sparse tile
        assert counts(field.config) == counts(tile_settings(small_config(), len(tile.indices)))
        assert field.config.sampling.surface_points < 1500


def test_a_dense_tile_gives_its_refinement_the_dense_share_and_a_sparse_tile_the_usual_one():
    config = small_config(tiles__dense_refinement_share=0.75)  # surface count 1500: dense from 3000 points
    assert tile_settings(config, 3000).refinement.share == 0.75
    assert tile_settings(config, 3000).sampling == config.sampling
    assert tile_settings(config, 2999).refinement.share == config.refinement.share == 0.5
    assert tile_settings(small_config(tiles__dense_refinement_share=0.0), 50_000).refinement.share == 0.5
    assert tile_settings(small_config(refinement__share=0.0), 50_000).refinement.share == 0.0  # DiGS alone
    # a tiled run without normals: each tile's steps switch from DiGS to the refinement at its share
    points, _ = capsule_cloud(8000)
    points = points[(points[:, 0] < 0) | (np.arange(len(points)) % 8 == 0)]  # the right half sparse
    switches: dict[int, list[int]] = {}

    def progress(event) -> None:
        switches.setdefault(event.tile, []).append(int("normal" in event.losses))

    run = small_config(tiles__dense_refinement_share=0.75, train__iterations=20, tiles__size=2.3,
                       train__progress_every=1)
    result = reconstruct_points(points, None, run, on_progress=progress)
    assert isinstance(result.field, TiledField)
    sizes = [len(tile.indices) for tile in result.field.tiles]
    assert len(sizes) == 2 and sizes[0] >= 3000 > sizes[1]
    assert switches == {1: [0] * 5 + [1] * 15, 2: [0] * 10 + [1] * 10}
    assert [field.config.refinement.share for field in result.field.fields] == [0.75, 0.5]


def test_a_tiled_run_asked_for_a_checkpoint_is_refused_in_one_line(tmp_path, capsys):
    from siren_recon.cli import main

    np.savetxt(tmp_path / "in.xyz", capsule_cloud(3000)[0])
    argv = ["reconstruct", str(tmp_path / "in.xyz"), "-o", str(tmp_path / "out.ply"), "--checkpoint",
            str(tmp_path / "field.pt")]
    for scene, tiles in ((["--tile-size", "2"], 3), (["--voxel-size", "0.02"], 2)):  # 220 voxels: tiles of 4
        assert main([*argv, *scene]) == 2
        error = capsys.readouterr().err.strip()
        assert error.count("\n") == 0 and f"tiled run has {tiles}" in error and "--checkpoint" in error


def test_a_voxel_size_finer_than_a_network_resolves_cuts_the_cloud_into_tiles_and_nothing_else_does():
    points, _ = capsule_cloud(3000)  # 4.4 long with the default padding
    config = small_config()
    assert tile_edge(points, config) == 0.0 and tile_count(points, config) == 1  # an object: one field
    assert tile_edge(points, small_config(mesh__voxel_size=0.025)) == 0.0  # 176 voxels: one network's
    fine = small_config(mesh__voxel_size=0.01)  # 440 voxels: tiles of 200 (2 m), three along the capsule
    assert tile_edge(points, fine) == pytest.approx(2.0) and tile_count(points, fine) == 3
    assert tile_edge(points, small_config(mesh__voxel_size=0.01, tiles__voxels=0)) == 0.0  # never by itself
    assert tile_edge(points, small_config(mesh__voxel_size=0.01, tiles__size=1.5)) == 1.5  # a size given wins
    assert tile_count(points, small_config(tiles__size=1.5)) == 3


def test_a_tile_counts_only_in_the_cube_its_field_was_trained_in():
    # a tile reaching 3 units along x whose field saw only the cube of half-side 1 around x = -1
    tile = BlendTile(lambda u: torch.full((len(u),), -0.5), np.array([-2.0, -1.0, -1.0]), np.array([1.0, 1.0, 1.0]),
                     0.2, 1.0, np.array([1.0, 0.0, 0.0]), trained=1.0)
    x = torch.tensor([[-1.0, 0.0, 0.0], [-0.05, 0.0, 0.0], [0.05, 0.0, 0.0], [0.5, 0.0, 0.0]])
    weights = tile.weight(x).numpy()
    assert weights[0] == 1.0 and 0.0 < weights[1] < 1.0 and weights[2] == 0.0 and weights[3] == 0.0
    # where no tile's field was trained, the blend has no surface (outside), not an extrapolation
    np.testing.assert_allclose(BlendedSdf([tile])(x).numpy(), [-0.5, -0.5, EMPTY, EMPTY])
