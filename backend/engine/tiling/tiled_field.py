"""Training a field per tile and meshing their blend on one lattice over the whole cloud."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import overload

import numpy as np
import torch

from ..analysis.cloud_index import CloudIndex
from ..analysis.normalization import Normalization
from ..analysis.validation import validate_normals, validate_points
from ..config.reconstruction import ReconstructionConfig
from ..events import MeshEvent, ProgressEvent
from ..field.model import FoldedSiren
from ..field.sdf_field import SUPPORT_POINTS, SdfField, mesh_bounds, support_subsample
from ..meshing import extract_mesh
from ..meshing.dense import empty_mesh, grid_shape, resolution_for_voxel
from ..meshing.finishing import finish_mesh
from ..meshing.lattice_blocks import join_blocks
from ..meshing.trimming import TrimOutcome
from .blend import BlendedSdf, BlendTile, align_signs, device_function
from .block_meshing import BlendTileState, BlockInput, BlockMesher, block_mesher_of, mesh_in_turn, plan_blocks
from .box_members import points_in_boxes
from .plan import Tile, plan_tiles, tile_edge
from .runs import TileInput, TileProgress, TileRunner, Trainer, run_in_turn


@dataclass
class TiledField:
    """The fields of a cloud's tiles, blended: can be meshed again, like an :class:`SdfField`."""

    fields: list[SdfField]
    tiles: list[Tile]
    normalization: Normalization
    """The lattice's frame: the whole cloud in the unit cube."""
    bounds: tuple[tuple[float, float, float], tuple[float, float, float]]
    """The lattice's box in that frame (the cloud's box plus padding)."""
    support: np.ndarray = dataclasses.field(repr=False)
    """float32 (S, 3): the cloud (or an even subsample) in the lattice's frame."""
    config: ReconstructionConfig
    signs: list[float]
    """Each tile's field as it enters the blend (-1: flipped to agree with its neighbours)."""
    mesher: BlockMesher = dataclasses.field(default=mesh_in_turn, repr=False)
    """Where the blend's lattice is meshed, block by block (:mod:`.block_meshing`)."""
    should_cancel: Callable[[], bool] | None = dataclasses.field(default=None, repr=False)
    """The job's cancel check, which meshing asks between blocks."""

    @property
    def mode(self) -> str:
        return self.fields[0].mode

    @property
    def noise_ratio(self) -> float | None:
        """The median of the tiles' noise levels (``None`` where no tile measured one)."""
        ratios = [f.noise_ratio for f in self.fields if f.noise_ratio is not None]
        return float(np.median(ratios)) if ratios else None

    @property
    def steps(self) -> int:
        """Training steps over all tiles."""
        return sum(f.steps for f in self.fields)

    @property
    def device(self) -> torch.device:
        return self.fields[0].device

    @cached_property
    def support_index(self) -> CloudIndex:
        return CloudIndex(self.support)

    def blend_tiles(self) -> list[BlendTile]:
        """The tiles as the blend sees them, in the lattice's frame."""
        frame = self.normalization
        tiles = []
        for field, tile, sign in zip(self.fields, self.tiles, self.signs):
            own = field.normalization
            tiles.append(BlendTile(
                function=device_function(FoldedSiren(field.model), field.device),
                core_lo=frame.to_unit(tile.core_lo), core_hi=frame.to_unit(tile.core_hi),
                margin=tile.margin * frame.scale, scale=own.scale / frame.scale,
                shift=(np.asarray(frame.centre) - np.asarray(own.centre)) * own.scale, sign=sign, trained=1.0,
            ))
        return tiles

    def sdf(self, points: np.ndarray) -> np.ndarray:
        """Signed distance at points given in input coordinates, in input units."""
        unit = torch.as_tensor(self.normalization.to_unit(points), dtype=torch.float32)
        return BlendedSdf(self.blend_tiles())(unit).numpy().astype(np.float64) / self.normalization.scale

    def lattice_resolution(self) -> int:
        """Grid points along the lattice box's longest side: a spacing of ``mesh.voxel_size``, or
        the one ``mesh.resolution`` gives over a tile's padded core."""
        mesh = self.config.mesh
        voxel = mesh.voxel_size
        if voxel <= 0:
            edge = max(float((t.core_hi - t.core_lo).max()) for t in self.tiles)
            voxel = edge * (1.0 + 2.0 * mesh.padding) / (mesh.resolution - 1)
        side = max(high - low for low, high in zip(*self.bounds)) / self.normalization.scale
        return resolution_for_voxel(side, voxel)

    def lattice_blocks(self, resolution: int | None = None) -> list[BlockInput]:
        """The blocks, of about a tile's edge, that the blend's lattice at ``resolution`` (default:
        :meth:`lattice_resolution`) is meshed in (:func:`~.block_meshing.plan_blocks`)."""
        mesh = self.config.mesh
        lo, hi = np.array(self.bounds[0]), np.array(self.bounds[1])
        counts, voxel = grid_shape(lo, hi, resolution or self.lattice_resolution())
        edge = max(float((t.core_hi - t.core_lo).max()) for t in self.tiles) * self.normalization.scale
        states = [BlendTileState.of(field.model, tile) for field, tile in zip(self.fields, self.blend_tiles())]
        return plan_blocks(states, lo, counts, voxel, edge, mesh.chunk_points, mesh.narrow_band)

    def raw_mesh(self, resolution: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The blend's zero level set on its lattice, in the lattice's frame, before any cleaning:
        :meth:`lattice_blocks` meshed by :attr:`mesher`, then welded in the blocks' order."""
        blocks = self.lattice_blocks(resolution)
        if not blocks:
            return empty_mesh()
        pieces = sorted(self.mesher(blocks, self.device, self.should_cancel), key=lambda piece: piece.number)
        return join_blocks([(piece.points, piece.faces) for piece in pieces], blocks[0].lo, blocks[0].voxel)

    def mesh_with_trim(self, resolution: int | None = None) -> tuple[np.ndarray, np.ndarray, TrimOutcome]:
        """The blend's mesh (:meth:`raw_mesh`) in input coordinates, cleaned and trimmed
        (:meth:`finish`), and what the trim did."""
        return self.finish(*self.raw_mesh(resolution))

    def finish(self, verts: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, TrimOutcome]:
        """A raw mesh of the blend (:meth:`raw_mesh`) in input coordinates (float64 vertices, uint32
        faces), cleaned and trimmed as one field's (distances as shares of a tile's diagonal, small
        pieces as shares of a tile's area), and what the trim did (its distance in input units)."""
        mesh = self.config.mesh
        frame = self.normalization
        tile_diagonal = max(float(np.linalg.norm(t.core_hi - t.core_lo)) for t in self.tiles) * frame.scale
        verts, faces, trim = finish_mesh(verts, faces, self.support_index, tile_diagonal, mesh,
                                         mesh.min_component_fraction / len(self.tiles), self.tile_of(verts, faces))
        trim = dataclasses.replace(trim, distance=trim.distance / frame.scale)
        return frame.from_unit(verts), faces.astype(np.uint32), trim

    def tile_of(self, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """The tile whose core holds each face's centre (``vertices`` in the lattice's frame), a centre
        beyond the cores' box (the lattice's whole cells reach past it) counted at the box's face; -1
        where no tile was fitted."""
        centres = self.normalization.from_unit(vertices[faces].mean(axis=1)) if len(faces) else np.zeros((0, 3))
        core_lo = np.array([tile.core_lo for tile in self.tiles])
        core_hi = np.array([tile.core_hi for tile in self.tiles])
        centres = np.clip(centres, core_lo.min(axis=0), core_hi.max(axis=0))
        owner = np.full(len(centres), -1, dtype=np.int64)
        for number, inside in enumerate(points_in_boxes(centres, core_lo, core_hi)):
            owner[inside] = number
        return owner

    def mesh(self, resolution: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        verts, faces, _ = self.mesh_with_trim(resolution)
        return verts, faces


PREVIEW_TILES = 32
"""Up to this many tiles, a tiled fit previews each finished tile's part at ``preview.max_resolution``
and sends the joined preview after every tile; see :class:`TilePreviews` beyond."""
PREVIEW_TILE_RESOLUTION = 16
"""The coarsest resolution a tile's part of a preview is meshed at, however many tiles."""


@dataclass(frozen=True)
class TilePreviews:
    """How a tiled fit of many tiles previews them: each finished tile's part meshed at
    ``resolution`` over its core, the joined preview of all finished parts sent after every
    ``every`` tiles and after the last. Up to :data:`PREVIEW_TILES` tiles: every tile, at
    ``preview.max_resolution``. Beyond, about :data:`PREVIEW_TILES` previews in all, each tile's part
    at ``max_resolution * sqrt(PREVIEW_TILES / tiles)`` (at least :data:`PREVIEW_TILE_RESOLUTION`),
    so that a preview's faces, the previews' meshing and what they send stay about those of
    :data:`PREVIEW_TILES` tiles however large the survey."""

    every: int
    resolution: int

    @classmethod
    def of(cls, tiles: int, max_resolution: int) -> TilePreviews:
        if tiles <= PREVIEW_TILES:
            return cls(1, max_resolution)
        resolution = round(max_resolution * math.sqrt(PREVIEW_TILES / tiles))
        return cls(math.ceil(tiles / PREVIEW_TILES), max(min(PREVIEW_TILE_RESOLUTION, max_resolution), resolution))


class TileInputs(Sequence[TileInput]):
    """The tiles' :class:`~.runs.TileInput`, each made when it is asked for: a runner that trains
    the tiles in turn holds one tile's points at a time, not every tile's (together about 3.7
    times the cloud with the bands)."""

    def __init__(self, tiles: list[Tile], points: np.ndarray, normals: np.ndarray | None,
                 config: ReconstructionConfig, options: dict[str, object]) -> None:
        self.tiles, self.points, self.normals, self.config, self.options = tiles, points, normals, config, options

    def __len__(self) -> int:
        return len(self.tiles)

    @overload
    def __getitem__(self, number: int) -> TileInput: ...

    @overload
    def __getitem__(self, number: slice) -> list[TileInput]: ...

    def __getitem__(self, number: int | slice) -> TileInput | list[TileInput]:
        if isinstance(number, slice):
            return [self[n] for n in range(len(self))[number]]
        number = range(len(self))[number]
        indices = self.tiles[number].indices
        normals = None if self.normals is None else self.normals[indices]
        return TileInput(number, self.points[indices], normals, tile_settings(self.config, len(indices)),
                         dict(self.options))


def fit_tiles(
    points: np.ndarray,
    normals: np.ndarray | None,
    config: ReconstructionConfig,
    trainer: Trainer,
    on_progress: Callable[[ProgressEvent], None] | None = None,
    on_mesh: Callable[[MeshEvent], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    tile_runner: TileRunner = run_in_turn,
    **trainer_options: object,
) -> tuple[SdfField | TiledField, dict[str, float]]:
    """A field per tile (edge: :func:`~.plan.tile_edge`; plan: :func:`~.plan.plan_tiles`), each
    trained by ``trainer`` for :func:`tile_iterations` steps on its points, then blended; a cloud
    that fits in one tile gets ``trainer``'s one field (``train.iterations`` steps).
    ``tile_runner`` trains the tiles (:mod:`.runs`; by default in turn, in this process). Progress
    counts the steps done over all tiles (:class:`~.runs.TileProgress`); each finished tile, in the
    order they finish, adds its part of the surface to a preview of all finished ones. The losses
    are the tiles' means."""
    edge = tile_edge(points, config)
    if edge <= 0:
        return trainer(points, normals, config, on_progress, on_mesh, should_cancel, **trainer_options)
    pts = validate_points(points)
    nrm = validate_normals(normals, len(pts)) if normals is not None else None
    tiles = plan_tiles(pts, edge, config.tiles.overlap, config.mesh.padding)
    if len(tiles) <= 1:
        return trainer(pts, nrm, config, on_progress, on_mesh, should_cancel, **trainer_options)
    steps = tile_iterations(config)
    tile_config = dataclasses.replace(config, train=dataclasses.replace(config.train, iterations=steps))
    inputs = TileInputs(tiles, pts, nrm, tile_config, trainer_options)
    progress = TileProgress(on_progress, len(tiles), steps)
    fields: dict[int, SdfField] = {}
    losses: dict[int, dict[str, float]] = {}
    pieces: list[tuple[np.ndarray, np.ndarray]] = []
    previews = TilePreviews.of(len(tiles), config.preview.max_resolution)
    for finished in tile_runner(inputs, trainer, progress.tile, should_cancel):
        progress.finished(finished.number)
        fields[finished.number] = finished.field
        losses[finished.number] = finished.losses
        if on_mesh is not None and config.preview.enabled:
            pieces.append(core_mesh(finished.field, tiles[finished.number], previews.resolution))
            if len(pieces) % previews.every == 0 or len(pieces) == len(tiles):
                on_mesh(MeshEvent(progress.count, previews.resolution, *joined(pieces), final=False))
    missing = sorted(set(range(len(tiles))) - set(fields))
    if missing:
        raise RuntimeError(f"the tile runner ended without tiles {missing}")
    frame = Normalization.fit(pts)
    unit = frame.to_unit(pts)
    tiled = TiledField([fields[number] for number in range(len(tiles))], tiles, frame,
                       mesh_bounds(unit, config.mesh.padding),
                       support_subsample(unit, config.train.seed, SUPPORT_POINTS * len(tiles)), config,
                       [1.0] * len(tiles), block_mesher_of(tile_runner), should_cancel)
    if nrm is None:
        blend = tiled.blend_tiles()
        spacing = tiled.support_index.spacing
        align_signs(blend, tiled.support, 4.0 * spacing, config.train.seed)
        tiled.signs = [tile.sign for tile in blend]
    parts = [losses[number] for number in range(len(tiles))]
    names = set().union(*parts)
    return tiled, {name: float(np.mean([part[name] for part in parts if name in part])) for name in names}


def tile_iterations(config: ReconstructionConfig) -> int:
    """Steps of each tile's field: ``tiles.iteration_share`` of ``train.iterations``, at least 2
    (one a stage), at most ``train.iterations``."""
    share = round(config.tiles.iteration_share * config.train.iterations)
    return min(config.train.iterations, max(2, share))


def tile_settings(config: ReconstructionConfig, points: int) -> ReconstructionConfig:
    """``config`` for a tile of ``points`` points. A sparse tile, of fewer than twice
    ``sampling.surface_points``, draws ``sampling``'s three counts scaled by ``points`` over twice
    the surface count, within [``tiles.sparse_sample_share``, 1] (each at least 1); a dense one
    gives its refinement ``tiles.dense_refinement_share`` of its steps (where that and
    ``refinement.share`` are above 0)."""
    sampling, tiles, refinement = config.sampling, config.tiles, config.refinement
    share = points / (2.0 * sampling.surface_points)
    if share >= 1.0:
        if tiles.dense_refinement_share <= 0.0 or refinement.share <= 0.0:
            return config
        return dataclasses.replace(config, refinement=dataclasses.replace(refinement,
                                                                          share=tiles.dense_refinement_share))
    share = max(tiles.sparse_sample_share, share)
    if share >= 1.0:
        return config
    scaled = {name: max(1, round(getattr(sampling, name) * share))
              for name in ("surface_points", "box_points", "near_points")}
    return dataclasses.replace(config, sampling=dataclasses.replace(sampling, **scaled))


def tile_count(points: np.ndarray, config: ReconstructionConfig) -> int:
    """How many fields :func:`fit_tiles` trains for ``points``: 1 without tiling or when the cloud fits
    in one tile. Raises :class:`~siren_recon.engine.errors.InputError` for points it would refuse."""
    edge = tile_edge(points, config)
    if edge <= 0:
        return 1
    tiles = plan_tiles(validate_points(points), edge, config.tiles.overlap, config.mesh.padding)
    return max(1, len(tiles))


def core_mesh(field: SdfField, tile: Tile, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """``field``'s surface inside ``tile``'s core, uncleaned, in input coordinates (a preview)."""
    own = field.normalization
    lo, hi = own.to_unit(tile.core_lo), own.to_unit(tile.core_hi)
    verts, faces = extract_mesh(FoldedSiren(field.model), lo, hi, resolution, field.config.mesh.chunk_points,
                                field.device, True)
    return own.from_unit(verts), faces


def joined(pieces: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """One mesh of several: vertices stacked, faces renumbered (uint32)."""
    offsets = np.cumsum([0] + [len(v) for v, _ in pieces])
    vertices = np.concatenate([v for v, _ in pieces]) if pieces else np.zeros((0, 3))
    faces = np.concatenate([f + o for (_, f), o in zip(pieces, offsets)]) if pieces else np.zeros((0, 3))
    return vertices, faces.astype(np.uint32)
