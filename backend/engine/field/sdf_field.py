"""A trained signed distance field: the network with the transform back to input coordinates."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from ..analysis.cloud_index import CloudIndex, even_subsample
from ..analysis.normalization import Normalization
from ..config.reconstruction import ReconstructionConfig
from ..meshing import extract_mesh
from ..meshing.dense import resolution_for_voxel
from ..meshing.finishing import finish_mesh
from ..meshing.trimming import TrimOutcome
from .model import FoldedSiren, Siren

SUPPORT_POINTS = 50_000
"""At most this many cloud points are kept with a field to tell supported surface from ghosts."""


@dataclass
class SdfField:
    """What a reconstruction learned; can be meshed again at any resolution."""

    model: Siren
    normalization: Normalization
    config: ReconstructionConfig
    mode: str
    """``oriented`` or ``unoriented``."""
    bounds: tuple[tuple[float, float, float], tuple[float, float, float]]
    """Box to mesh in, in the network's unit coordinates (the cloud's box plus padding)."""
    support: np.ndarray = field(repr=False)
    """float32 (S, 3): the cloud (or a subsample) in unit coordinates."""
    noise_ratio: float | None = None
    """The cloud's noise level (:class:`~siren_recon.engine.analysis.noise_level.NoiseLevel` ``ratio``), by
    which the oriented fit set its learning rate or the unoriented refinement weighed its normals;
    ``None`` where neither ran (DiGS alone)."""
    steps: int = 0
    """Training steps the field took, those of the stages before it included (fewer than
    ``train.iterations`` where a fit settled early; 0 for a field that was not trained here)."""

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @cached_property
    def support_index(self) -> CloudIndex:
        """The neighbour index over the support points: supported pieces, trimming."""
        return CloudIndex(self.support)

    @property
    def support_diagonal(self) -> float:
        return float(np.linalg.norm(np.ptp(self.support, axis=0)))

    @torch.no_grad()
    def sdf(self, points: np.ndarray, chunk_points: int | None = None) -> np.ndarray:
        """Signed distance at points given in input coordinates, in input units."""
        chunk = chunk_points or self.config.mesh.chunk_points
        unit = torch.as_tensor(self.normalization.to_unit(points), dtype=torch.float32, device=self.device)
        evaluate = FoldedSiren(self.model)
        values = [evaluate(unit[i : i + chunk]) for i in range(0, len(unit), chunk)]
        out = torch.cat(values) if values else unit[:, 0]
        return out.cpu().numpy().astype(np.float64) / self.normalization.scale

    def mesh_unit(self, resolution: int | None = None) -> tuple[np.ndarray, np.ndarray, TrimOutcome]:
        """Cleaned, trimmed marching-cubes mesh in unit coordinates (float64 vertices, int64 faces),
        and what the trim step did (its distance and area in unit coordinates)."""
        mesh_cfg = self.config.mesh
        verts, faces = extract_mesh(
            FoldedSiren(self.model), np.array(self.bounds[0]), np.array(self.bounds[1]),
            resolution or self.lattice_resolution(), mesh_cfg.chunk_points, self.device, mesh_cfg.narrow_band,
        )
        return finish_mesh(verts, faces, self.support_index, self.support_diagonal, mesh_cfg)

    def lattice_resolution(self) -> int:
        """Grid points along the longest side of :attr:`bounds` for the final mesh:
        ``mesh.resolution``, or as many as ``mesh.voxel_size`` asks for."""
        voxel = self.config.mesh.voxel_size
        if voxel <= 0:
            return self.config.mesh.resolution
        side = max(high - low for low, high in zip(*self.bounds)) / self.normalization.scale
        return resolution_for_voxel(side, voxel)

    def mesh_with_trim(self, resolution: int | None = None) -> tuple[np.ndarray, np.ndarray, TrimOutcome]:
        """:meth:`mesh`, and what the trim step did (its distance in input units)."""
        verts, faces, trim = self.mesh_unit(resolution)
        trim = dataclasses.replace(trim, distance=trim.distance / self.normalization.scale)
        return self.normalization.from_unit(verts), faces.astype(np.uint32), trim

    def mesh(self, resolution: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Marching-cubes mesh in input coordinates: float64 vertices, uint32 outward faces.

        The vertices stay float64 from the unit cube back to the input's frame: float32 would round
        a coordinate near 500,000 (UTM metres) to 3 cm.
        """
        verts, faces, _ = self.mesh_with_trim(resolution)
        return verts, faces


def support_subsample(unit_points: np.ndarray, seed: int, count: int = SUPPORT_POINTS) -> np.ndarray:
    """The points kept with a field for the support test: all, or an even random subset of ``count``.

    The field keeps them (and builds its own small tree over them) because it outlives the cloud:
    a checkpoint re-meshes at another resolution with the support alone."""
    if len(unit_points) > count:
        unit_points = unit_points[even_subsample(len(unit_points), count, seed)]
    return np.ascontiguousarray(unit_points, dtype=np.float32)


def mesh_bounds(
    unit_points: np.ndarray, padding: float
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The cloud's box in unit coordinates grown by ``padding`` of its longest side, kept in the cube."""
    lo = unit_points.min(axis=0)
    hi = unit_points.max(axis=0)
    margin = padding * float((hi - lo).max())
    lo = np.maximum(lo - margin, -1.0)
    hi = np.minimum(hi + margin, 1.0)
    return tuple(float(v) for v in lo), tuple(float(v) for v in hi)  # type: ignore[return-value]
