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

In the unoriented refinement a fourth set, **shell** points, serves the clearance term alone (see
:mod:`siren_recon.engine.clearance`): drawn around the zero crossings that the last
:meth:`PointSampler.refresh` found too far from every point; none while there are none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .clearance import Clearance
from .config import SamplingConfig
from .sign_prior import SignPrior


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
    box_prior: torch.Tensor | None = None
    """(B,) sign the box points should have (+1, -1, or 0 for none), or ``None``."""
    clearance: torch.Tensor | None = None
    """(B + M + K,) least ``|f|`` at the box, the near then the shell points (see clearance), or
    ``None``."""
    shell: torch.Tensor | None = None
    """(K, 3) around the shell nodes the last :meth:`PointSampler.refresh` found violated (K = 0
    when none), where only the clearance term acts; ``None`` without a clearance."""


class PointSampler:
    """Draws :class:`Batch` es from a normalised cloud kept on the training device."""

    def __init__(
        self,
        points: torch.Tensor,
        normals: torch.Tensor | None,
        config: SamplingConfig,
        generator: torch.Generator,
        prior: SignPrior | None = None,
        clearance: Clearance | None = None,
        shell_points: int = 0,
    ) -> None:
        self.prior = prior
        self.clearance = clearance
        self.shell_points = shell_points if clearance is not None else 0
        self.pool: torch.Tensor | None = None
        self.points = points
        self.normals = normals
        self.config = config
        self.generator = generator

    def refresh(self, model: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Aim the shell points at the zero crossings ``model`` now has too far from every point."""
        if self.clearance is not None and self.shell_points > 0:
            self.pool = self.clearance.violated(model)

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
        prior = self.prior.lookup(box) if self.prior is not None else None
        shell = needed = None
        if self.clearance is not None:
            pool = self.pool if self.pool is not None else self.clearance.shell[:0]
            shell = self.clearance.sample(self.shell_points, gen, pool)
            needed = self.clearance.needed(torch.cat([box, near, shell]))
        return Batch(surface=surface, normals=normals, box=box, near=near, box_prior=prior, clearance=needed,
                     shell=shell)
