"""The points each training step looks at.

Three sets are drawn afresh every step, all in the network's cube ``[-1, 1]^3``:

* **surface** points, a random subset of the cloud with their normals: the surface terms
  (``|f| = 0``, gradient along the normal) act here;
* **box** points, uniform in the whole cube: the off-surface term ``exp(-alpha |f|)`` acts here,
  pushing the zero level set away from empty space, as in the SIREN paper;
* **near** points, cloud points jittered by a Gaussian of ``near_sigma``: only the eikonal term
  acts here. Uniform samples rarely fall within a voxel or two of the surface, which is exactly
  where the mesh is extracted, so without this band the field next to the surface is only held to
  ``|grad f| = 1`` by the surface points themselves. The near points are kept out of the
  off-surface term on purpose: at the distances they sit at, ``exp(-alpha |f|)`` would fight the
  surface term and pull the level set apart.

Each :mod:`regulariser <siren_recon.engine.fitting.regularisers>` the sampler holds may add points
of its own (the clearance's shell points, see :mod:`siren_recon.engine.unoriented.clearance`),
drawn after these three, in the regularisers' order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..config.reconstruction import SamplingConfig
from .regularisers import Field, Regulariser


@dataclass
class Batch:
    surface: torch.Tensor
    """(S, 3) points of the cloud."""
    normals: torch.Tensor | None
    """(S, 3) unit normals of those points, or ``None`` when the cloud has none."""
    box: torch.Tensor
    """(B, 3) uniform in the cube."""
    near: torch.Tensor
    """(M, 3) jittered cloud points."""
    extra: tuple[torch.Tensor, ...] = ()
    """(K_i, 3) the points each of the sampler's regularisers added, in their order."""


class PointSampler:
    """Draws :class:`Batch` es from a normalised cloud kept on the training device."""

    def __init__(
        self,
        points: torch.Tensor,
        normals: torch.Tensor | None,
        config: SamplingConfig,
        generator: torch.Generator,
        regularisers: Sequence[Regulariser] = (),
    ) -> None:
        self.points = points
        self.normals = normals
        self.config = config
        self.generator = generator
        self.regularisers = tuple(regularisers)

    def refresh(self, model: Field) -> None:
        """Let each regulariser look at the field as it now is."""
        for regulariser in self.regularisers:
            regulariser.refresh(model)

    def sample(self) -> Batch:
        cfg = self.config
        device = self.points.device
        count = self.points.shape[0]
        gen = self.generator
        idx = torch.randint(0, count, (cfg.surface_points,), device=device, generator=gen)
        surface = self.points[idx]
        normals = self.normals[idx] if self.normals is not None else None
        box = torch.rand((cfg.box_points, 3), device=device, generator=gen) * 2.0 - 1.0
        near_idx = torch.randint(0, count, (cfg.near_points,), device=device, generator=gen)
        jitter = torch.randn((cfg.near_points, 3), device=device, generator=gen) * cfg.near_sigma
        near = (self.points[near_idx] + jitter).clamp_(-1.0, 1.0)
        extra = tuple(regulariser.draw(gen) for regulariser in self.regularisers)
        return Batch(surface=surface, normals=normals, box=box, near=near, extra=extra)
