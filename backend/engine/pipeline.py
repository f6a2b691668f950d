"""From a point cloud to a mesh: validation, normalisation, training, meshing.

This is the engine's front door, in NumPy terms; the Open3D script mode, the CLI and the
backend server all call :func:`reconstruct_points` or :func:`train_field`.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from .config import ReconstructionConfig
from .device import resolve_device
from .errors import InputError
from .events import MeshEvent, ProgressEvent, ReconstructionResult
from .geometric_init import sphere_init
from .model import Siren
from .normalization import Normalization
from .sampling import PointSampler
from .sdf_field import SdfField, mesh_bounds, support_subsample
from .trainer import train
from .validation import validate_normals, validate_points

MeshCallback = Callable[[MeshEvent], None]


def choose_mode(requested: str, has_normals: bool) -> str:
    """The mode a reconstruction runs in: ``auto`` becomes oriented exactly when normals exist."""
    if requested == "auto":
        return "oriented" if has_normals else "unoriented"
    if requested not in ("oriented", "unoriented"):
        raise InputError(f"unknown mode {requested!r}", "bad_config")
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
) -> tuple[SdfField, dict[str, float]]:
    """Train a field on the cloud; preview meshes go to ``on_mesh`` with ``final=False``."""
    config = config or ReconstructionConfig()
    pts = validate_points(points)
    nrm = validate_normals(normals, len(pts)) if normals is not None else None
    mode = choose_mode(config.mode, nrm is not None)
    device = resolve_device(config.train.device)
    if config.train.threads > 0:
        torch.set_num_threads(config.train.threads)
    normalization = Normalization.fit(pts)
    unit = normalization.to_unit(pts)
    bounds = mesh_bounds(unit, config.mesh.padding)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed)
        model = Siren(config.model)
        init = resolve_init(config.model.init, mode)
        if init != "siren":
            sphere_init(model, config.model.init_radius, init == "mfgi")
    model.to(device)
    generator = torch.Generator(device=device)
    generator.manual_seed(config.train.seed)
    sampler = PointSampler(
        torch.as_tensor(unit, dtype=torch.float32, device=device),
        torch.as_tensor(nrm, dtype=torch.float32, device=device) if nrm is not None else None,
        config.sampling,
        generator,
    )
    field = SdfField(model, normalization, config, mode, bounds, support_subsample(unit, config.train.seed))

    def preview(iteration: int, resolution: int) -> None:
        if on_mesh is None:
            return
        vertices, faces = field.mesh(resolution)
        on_mesh(MeshEvent(iteration, resolution, vertices, faces, final=False))

    losses = train(model, sampler, config, mode, on_progress, preview if on_mesh else None, should_cancel)
    model.eval()
    return field, losses


def reconstruct_points(
    points: np.ndarray,
    normals: np.ndarray | None = None,
    config: ReconstructionConfig | None = None,
    on_progress: Callable[[ProgressEvent], None] | None = None,
    on_mesh: MeshCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> ReconstructionResult:
    """Reconstruct a mesh from ``points`` (N, 3) and optional ``normals`` (N, 3).

    The returned mesh is in the input's coordinates. ``on_mesh`` receives the previews and then
    the final mesh (``final=True``). Raises :class:`InputError` for bad input and
    :class:`Cancelled` when ``should_cancel()`` turns true.
    """
    config = config or ReconstructionConfig()
    started = time.perf_counter()
    field, losses = train_field(points, normals, config, on_progress, on_mesh, should_cancel)
    trained = time.perf_counter()
    vertices, faces = field.mesh()
    meshed = time.perf_counter()
    if len(faces) == 0:
        raise InputError("training produced no surface (the field has no zero crossing)", "no_surface")
    if on_mesh is not None:
        on_mesh(MeshEvent(config.train.iterations, config.mesh.resolution, vertices, faces, final=True))
    stats = {f"loss_{k}": v for k, v in losses.items()}
    stats.update(points=float(len(points)), vertices=float(len(vertices)), faces=float(len(faces)))
    return ReconstructionResult(
        vertices, faces, field.mode, stats, {"train": trained - started, "mesh": meshed - trained}, field
    )
