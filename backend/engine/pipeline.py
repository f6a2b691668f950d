"""From a point cloud to a mesh: validation, normalisation, training, meshing.

This is the engine's front door, in NumPy terms; the Open3D script mode, the CLI and the
backend server all call :func:`reconstruct_points` or :func:`train_field`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import numpy as np

from .analysis.cloud_index import WORKING_POINTS, CloudIndex
from .analysis.colours import VertexColours
from .analysis.noise_level import estimate_noise, noise_factor
from .analysis.normalization import Normalization
from .analysis.validation import validate_normals, validate_points
from .config.reconstruction import ReconstructionConfig
from .device import cpu_threads, resolve_device
from .errors import InputError
from .events import MeshEvent, ProgressEvent, ReconstructionResult
from .field.sdf_field import SdfField, mesh_bounds, support_subsample
from .fitting.stage import MeshCallback, Reporting, Stage, TrainingCloud, fit_stage
from .meshing.trimming import TrimOutcome
from .tiling.runs import TileRunner, run_in_turn
from .tiling.tiled_field import fit_tiles
from .unoriented.refinement import refinement_stage


def choose_mode(requested: str, has_normals: bool) -> str:
    """The mode a reconstruction runs in: ``auto`` becomes oriented exactly when normals exist."""
    if requested == "auto":
        return "oriented" if has_normals else "unoriented"
    if requested == "oriented" and not has_normals:
        raise InputError("mode 'oriented' needs normals, and this cloud has none", "missing_normals")
    return requested


def resolve_init(requested: str, mode: str) -> str:
    """``auto`` -> the paper's init for oriented input, MFGI for unoriented (see config)."""
    if requested == "auto":
        return "siren" if mode == "oriented" else "mfgi"
    return requested


def train_field(
    points: np.ndarray,
    normals: np.ndarray | None = None,
    config: ReconstructionConfig | None = None,
    on_progress: Callable[[ProgressEvent], None] | None = None,
    on_mesh: MeshCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
    working_points: int = WORKING_POINTS,
) -> tuple[SdfField, dict[str, float]]:
    """Train a field on the cloud; preview meshes go to ``on_mesh`` with ``final=False``.

    Unoriented input trains in two stages when ``refinement.share > 0``: first DiGS
    (divergence penalty, geometric init) for the rest of the iterations, which settles a
    consistent inside and outside but rounds off detail; then the refinement
    (:mod:`~siren_recon.engine.unoriented.refinement`) fits a fresh SIREN to normal directions
    that field signed. Progress counts across both stages and always reports the mode as
    ``unoriented``. The cloud's noise level (:mod:`~siren_recon.engine.analysis.noise_level`), which
    the oriented fit and the refinement both follow (``noise.free_ratio``), is measured here once,
    on one :class:`CloudIndex` (over an even subsample of ``working_points`` when the cloud is
    larger) that the refinement's whole-cloud steps share; a run that follows no noise level
    (DiGS alone) measures none. It trains on ``train.threads`` CPU threads and sets the caller's
    back after (:func:`~.device.cpu_threads`).
    """
    config = config or ReconstructionConfig()
    with cpu_threads(config.train.threads):
        return _fit_field(points, normals, config, on_progress, on_mesh, should_cancel, working_points)


def _fit_field(
    points: np.ndarray,
    normals: np.ndarray | None,
    config: ReconstructionConfig,
    on_progress: Callable[[ProgressEvent], None] | None,
    on_mesh: MeshCallback | None,
    should_cancel: Callable[[], bool] | None,
    working_points: int,
) -> tuple[SdfField, dict[str, float]]:
    """The body of :func:`train_field`, on the threads it set."""
    pts = validate_points(points)
    nrm = validate_normals(normals, len(pts)) if normals is not None else None
    mode = choose_mode(config.mode, nrm is not None)
    device = resolve_device(config.train.device)
    normalization = Normalization.fit(pts)
    unit = normalization.to_unit(pts)
    cloud = TrainingCloud(unit, normalization, mesh_bounds(unit, config.mesh.padding),
                          support_subsample(unit, config.train.seed), device, mode)
    total = config.train.iterations
    reporting = Reporting(total, on_progress, on_mesh, should_cancel)
    second = refinement_iterations(config, mode)
    index: CloudIndex | None = None
    noise: float | None = None
    spacing = 0.0
    if mode == "oriented" or second:
        index = CloudIndex.build(unit, config.train.seed, working_points)
        level = estimate_noise(index, config.train.seed)
        # the working set's spacing, as the whole cloud's would be (a surface's spacing goes as
        # one over the square root of its point count)
        noise, spacing = level.ratio, level.spacing * math.sqrt(len(index) / len(unit))
    rate = config.unoriented.learning_rate
    if mode == "oriented" and noise is not None:
        rate = config.train.learning_rate / noise_factor(noise, config.noise.free_ratio)
    first = Stage(index=0, loss_mode=mode, iterations=total - second, normals=nrm if mode == "oriented" else None,
                  init=resolve_init(config.model.init, mode), learning_rate=rate,
                  spacing=spacing if mode == "oriented" else 0.0, followed=bool(second))
    field, losses = fit_stage(first, cloud, config, reporting)
    if second and index is not None and noise is not None:
        refine = refinement_stage(field, index, noise, config, device, second, offset=total - second)
        field, losses = fit_stage(refine, cloud, config, reporting)
    field.noise_ratio = noise
    return field, losses


def refinement_iterations(config: ReconstructionConfig, mode: str) -> int:
    """Iterations of the unoriented refinement: ``refinement.share`` of all, at least 1 and leaving
    the DiGS stage at least 1; 0 when there is no refinement (oriented input, share 0, or fewer
    than 2 iterations)."""
    total = config.train.iterations
    if mode != "unoriented" or config.refinement.share <= 0 or total < 2:
        return 0
    return min(max(int(round(total * config.refinement.share)), 1), total - 1)


def reconstruct_points(
    points: np.ndarray,
    normals: np.ndarray | None = None,
    config: ReconstructionConfig | None = None,
    on_progress: Callable[[ProgressEvent], None] | None = None,
    on_mesh: MeshCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
    working_points: int = WORKING_POINTS,
    colours: np.ndarray | None = None,
    tile_runner: TileRunner = run_in_turn,
) -> ReconstructionResult:
    """Reconstruct a mesh from ``points`` (N, 3) and optional ``normals`` (N, 3).

    The returned mesh is in the input's coordinates. ``on_mesh`` receives the previews and then
    the final mesh (``final=True``). With the cloud's ``colours`` (a row per point), every mesh
    event and the result carry each vertex's colour (:class:`~.analysis.colours.VertexColours`).
    Raises :class:`InputError` for bad input and :class:`Cancelled` when ``should_cancel()``
    turns true. ``working_points``: see :func:`train_field`. With ``tiles.size`` a cloud larger
    than a tile is fitted tile by tile (:mod:`~siren_recon.engine.tiling`), and ``field`` is then a
    :class:`~.tiling.tiled_field.TiledField`; ``tile_runner`` trains its tiles (:mod:`~.tiling.runs`:
    by default one after the other in this process).
    """
    config = config or ReconstructionConfig()
    colouring = VertexColours(points, colours) if colours is not None else None
    previews = coloured(on_mesh, colouring) if colouring is not None and on_mesh is not None else on_mesh
    started = time.perf_counter()
    with cpu_threads(config.train.threads) as threads:
        field, losses = fit_tiles(points, normals, config, train_field, on_progress, previews, should_cancel,
                                  tile_runner, working_points=working_points)
        trained = time.perf_counter()
        vertices, faces, trim = field.mesh_with_trim()
        meshed = time.perf_counter()
    if len(faces) == 0:
        raise InputError("training produced no surface (the field has no zero crossing)", "no_surface")
    vertex_colours = colouring(vertices) if colouring is not None else None
    if on_mesh is not None:
        on_mesh(MeshEvent(field.steps, field.lattice_resolution(), vertices, faces, final=True,
                          colours=vertex_colours))
    stats = {f"loss_{k}": v for k, v in losses.items()}
    stats.update(points=float(len(points)), vertices=float(len(vertices)), faces=float(len(faces)),
                 steps=float(field.steps), threads=float(threads))
    stats.update(trim_stats(trim))
    if field.noise_ratio is not None:
        stats["noise_ratio"] = field.noise_ratio
    return ReconstructionResult(
        vertices, faces, field.mode, stats, {"train": trained - started, "mesh": meshed - trained}, field,
        vertex_colours,
    )


def coloured(on_mesh: MeshCallback, colouring: VertexColours) -> MeshCallback:
    """``on_mesh`` receiving each mesh event with its vertices' colours."""

    def forward(event: MeshEvent) -> None:
        on_mesh(dataclasses.replace(event, colours=colouring(event.vertices)))

    return forward


def trim_stats(trim: TrimOutcome) -> dict[str, float]:
    """The trim step's outcome as result statistics: ``trimmed`` (1 or 0), ``trimmed_area_share``
    (share of the area cut) and, where the automatic rule measured it, ``unsupported_share``."""
    stats = {"trimmed": float(trim.trimmed), "trimmed_area_share": trim.area_cut_share}
    if trim.applied in ("kept", "trimmed"):
        stats["unsupported_share"] = trim.unsupported_share
    return stats
