"""Which side is inside, far from the cloud, as the DiGS stage found it.

The refinement stage of unoriented mode fits a fresh SIREN, and a SIREN left alone can put zero
crossings in empty space (sheets inside a closed object, or in the padding), where no point
constrains it. The DiGS field is smooth and has one consistent inside, so far from every input
point its sign is trustworthy even where near the surface it rounds detail off. A coarse grid
holds that sign where the cloud is far (and 0 near the cloud, where the refinement is free);
the refinement is penalised for disagreeing with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..analysis.cloud_index import CloudIndex, as_index
from ..fitting.regularisers import Field, OffSurface
from .cube_grid import cube_nodes

RESOLUTION = 48
"""Grid points along each axis of the cube [-1, 1]^3."""


@dataclass
class SignPrior:
    grid: torch.Tensor
    """(R, R, R) of +1 (outside), -1 (inside) or 0 (near the cloud: no prior)."""

    @classmethod
    def build(cls, evaluate: Field, cloud: np.ndarray | CloudIndex, far: float, device: torch.device,
              resolution: int = RESOLUTION) -> SignPrior:
        """Sample ``evaluate`` (the DiGS field) on the grid; zero within ``far`` of a point of
        ``cloud`` (unit points, or their index)."""
        grid = cube_nodes(resolution)
        # only whether a node is farther than ``far`` matters: the search stops just beyond it
        distance = as_index(cloud).distance(grid, float(np.nextafter(far, np.inf)))
        with torch.no_grad():
            values = evaluate(torch.as_tensor(grid, dtype=torch.float32, device=device)).cpu().numpy()
        sign = np.where(values > 0, 1.0, -1.0) * (distance > far)
        return cls(torch.as_tensor(sign.reshape((resolution,) * 3), dtype=torch.float32, device=device))

    def lookup(self, x: torch.Tensor) -> torch.Tensor:
        """The prior at points of the cube (nearest grid point)."""
        r = self.grid.shape[0]
        index = ((x.clamp(-1.0, 1.0) + 1.0) * 0.5 * (r - 1)).round().long()
        return self.grid[index[:, 0], index[:, 1], index[:, 2]]


def sign_prior_term(f_box: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """Mean of ``max(0, -prior * f)``: a value of the wrong sign where the prior has one."""
    return torch.relu(-prior * f_box).mean()


@dataclass
class SignPriorRegulariser:
    """The sign prior as a regulariser: ``weight`` times :func:`sign_prior_term` at the box points."""

    prior: SignPrior
    weight: float
    """Weight of the term (``refinement.sign_prior``)."""
    name: str = "sign_prior"

    def draw(self, generator: torch.Generator) -> torch.Tensor:
        """No points of its own: the prior acts at the box points."""
        return torch.zeros((0, 3), device=self.prior.grid.device)

    def loss(self, model: Field, step: OffSurface) -> torch.Tensor:
        return self.weight * sign_prior_term(step.f_box, self.prior.lookup(step.box))

    def refresh(self, model: Field) -> None:
        """The prior is fixed: the DiGS field it was sampled from does not change."""
