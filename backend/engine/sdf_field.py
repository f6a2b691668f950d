"""A trained signed distance field: the network with the transform back to input coordinates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .config import ReconstructionConfig
from .meshing import extract_mesh, remove_small_components
from .model import Siren
from .normalization import Normalization


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

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def sdf(self, points: np.ndarray, chunk_points: int | None = None) -> np.ndarray:
        """Signed distance at points given in input coordinates, in input units."""
        chunk = chunk_points or self.config.mesh.chunk_points
        unit = torch.as_tensor(self.normalization.to_unit(points), dtype=torch.float32, device=self.device)
        out = torch.cat([self.model(unit[i : i + chunk]) for i in range(0, len(unit), chunk)]) if len(unit) else unit[:, 0]
        return out.cpu().numpy().astype(np.float64) / self.normalization.scale

    def mesh(self, resolution: int | None = None, min_component_fraction: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Marching-cubes mesh in input coordinates: float32 vertices, uint32 outward faces."""
        mesh_cfg = self.config.mesh
        res = resolution or mesh_cfg.resolution
        fraction = mesh_cfg.min_component_fraction if min_component_fraction is None else min_component_fraction
        was_training = self.model.training
        self.model.eval()
        try:
            verts, faces = extract_mesh(
                self.model, np.array(self.bounds[0]), np.array(self.bounds[1]), res, mesh_cfg.chunk_points, self.device
            )
        finally:
            self.model.train(was_training)
        verts, faces = remove_small_components(verts, faces, fraction)
        return self.normalization.from_unit(verts).astype(np.float32), faces.astype(np.uint32)


def mesh_bounds(unit_points: np.ndarray, padding: float) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The cloud's box in unit coordinates grown by ``padding`` of its longest side, kept in the cube."""
    lo = unit_points.min(axis=0)
    hi = unit_points.max(axis=0)
    margin = padding * float((hi - lo).max())
    lo = np.maximum(lo - margin, -1.0)
    hi = np.minimum(hi + margin, 1.0)
    return tuple(float(v) for v in lo), tuple(float(v) for v in hi)  # type: ignore[return-value]
