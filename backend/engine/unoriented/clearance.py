"""No zero crossing far from every input point: a lower bound on ``|f|`` away from the cloud.

The input points lie on the surface, so every point of the true surface is within the cloud's
covering radius ``r`` of some input point, and for any point ``q`` the true signed distance
obeys ``|f(q)| >= d(q) - r``, where ``d(q)`` is the distance from ``q`` to the nearest input
point. A fit that violates this has put a zero crossing where no point asked for one: the
balloon a thin part (the cow's tail tuft) can grow in the unoriented refinement, where its
normals are unsure, or a web between two close parts. The term ``max(0, d(q) - r - |f(q)|)`` at
the off-surface samples is zero for the true field and pushes those crossings back; it needs no
sign, so it is the unsigned-distance idea of SAL (Atzmon and Lipman 2020) made one-sided.

``r`` is taken as a multiple of the median distance between neighbouring input points (on clean
samples the true surface lies within about 4 of them; see docs/experiments.md). ``d(q)`` comes
from a grid of distances computed once; at a sample, the value at a grid node less the distance
to that node is a lower bound of ``d(q)`` (``d`` is 1-Lipschitz), so the grid can only make the
term weaker, never penalise the true field.

A web is small: the box samples, uniform in the cube, land in it too seldom to remove it. So
every ``MINE_EVERY`` steps the trainer lets :class:`ClearanceRegulariser` evaluate the field at
the *shell* nodes, those between ``r`` and the cap where the term can act, and each step draws
extra points around the nodes where the field crosses zero though it may not
(:meth:`Clearance.violated`): hard-example mining, one forward pass over the shell every 50 steps.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from ..analysis.cloud_index import CloudIndex, as_index
from ..fitting.regularisers import Field, OffSurface
from .cube_grid import cube_nodes

RESOLUTION = 128
"""Grid nodes along each axis of the cube [-1, 1]^3 (8 MB of float32)."""
_CORNERS = torch.tensor(list(itertools.product((0, 1), repeat=3)))
"""(8, 3) the offsets of a grid cell's corners from its lowest one."""


@dataclass
class Clearance:
    distance: torch.Tensor
    """(R, R, R) distance from each grid node to the nearest input point."""
    margin: float
    """How far from every input point the surface may still pass (the covering radius ``r``)."""
    shell: torch.Tensor
    """(N, 3) grid nodes farther than the margin from every point and nearer than the cap: where
    a stray crossing (a web between two close parts) can sit and the term can see it."""

    @classmethod
    def build(cls, cloud: np.ndarray | CloudIndex, spacings: float, cap: float, device: torch.device,
              resolution: int = RESOLUTION) -> Clearance:
        """Distances on the grid from ``cloud`` (unit points, or their index), capped at ``cap``;
        the margin is ``spacings`` times the median point spacing.

        The cap bounds the term at ``cap - margin``: the refinement passes ``refinement.prior_distance``,
        beyond which the sign prior already holds the field (a larger cap pushes on the whole fresh
        network, whose values start near 0 everywhere; see docs/experiments.md)."""
        index = as_index(cloud)
        margin = spacings * index.spacing
        nodes = cube_nodes(resolution)
        distance = index.distance(nodes, cap)
        shell = nodes[(distance > margin) & (distance < cap)]
        return cls(torch.as_tensor(distance.reshape((resolution,) * 3), dtype=torch.float32, device=device), margin,
                   torch.as_tensor(shell, dtype=torch.float32, device=device))

    @property
    def cell(self) -> float:
        """Spacing of the grid nodes (the grid spans the cube's side of 2)."""
        return 2.0 / (self.distance.shape[0] - 1)

    def violated(self, model: Field, chunk: int = 65536) -> torch.Tensor:
        """The shell nodes next to a zero crossing the clearance forbids (no autograd).

        A node counts when ``|f|`` there is below both the needed value and a cell's diagonal,
        so the level set passes within about a cell of it. Nodes where the field is merely
        flatter than a distance (``|f|`` small but no crossing near) are left alone: aiming at
        them too cost quality elsewhere (see docs/experiments.md)."""
        crossing = math.sqrt(3.0) * self.cell
        with torch.no_grad():
            parts = []
            for part in self.shell.split(chunk):
                f = model(part).abs()
                parts.append(part[(f < self.needed(part)) & (f < crossing)])
        return torch.cat(parts) if parts else self.shell[:0]

    def sample(self, count: int, generator: torch.Generator, nodes: torch.Tensor) -> torch.Tensor:
        """``count`` points uniform over ``nodes``: a random node, jittered within its cell."""
        device = self.distance.device
        if count <= 0 or len(nodes) == 0:
            return torch.zeros((0, 3), device=device)
        index = torch.randint(0, len(nodes), (count,), device=device, generator=generator)
        jitter = (torch.rand((count, 3), device=device, generator=generator) - 0.5) * self.cell
        return (nodes[index] + jitter).clamp_(-1.0, 1.0)

    def needed(self, x: torch.Tensor) -> torch.Tensor:
        """``max(0, d(x) - margin)`` with ``d`` bounded from below: the least ``|f|`` at ``x``.

        Each corner ``c`` of the grid cell around ``x`` gives ``d(x) >= d(c) - |x - c|``; the
        largest of the eight is the bound (off by well under a cell's diagonal). The eight corners
        are read in one gather (a handful of kernels on a GPU rather than about a hundred)."""
        r = self.distance.shape[0]
        step = self.cell
        base = ((x.clamp(-1.0, 1.0) + 1.0) / step).floor().long().clamp_(0, r - 2)
        index = base.unsqueeze(1) + _CORNERS.to(x.device)  # (B, 8, 3)
        flat = (index[..., 0] * r + index[..., 1]) * r + index[..., 2]
        node = index.to(x.dtype) * step - 1.0
        lower = (self.distance.reshape(-1)[flat] - (x.unsqueeze(1) - node).norm(dim=-1)).amax(dim=1)
        return torch.relu(lower - self.margin)


def clearance_term(f: torch.Tensor, needed: torch.Tensor) -> torch.Tensor:
    """Mean of ``max(0, needed - |f|)``: a value too close to zero for the distance to the cloud."""
    return torch.relu(needed - f.abs()).mean()


@dataclass
class ClearanceRegulariser:
    """The clearance as a regulariser: ``weight`` times :func:`clearance_term` at the box points,
    the near points the step took a value at, and ``points`` shell points of its own, aimed at
    the violated nodes the last :meth:`refresh` found (none before the first, nor while there
    are none)."""

    clearance: Clearance
    weight: float
    """Weight of the term (``refinement.clearance``)."""
    points: int
    """Shell points drawn each step (``refinement.clearance_points``); 0: none, and no refresh."""
    name: str = "clearance"
    pool: torch.Tensor | None = None
    """The violated shell nodes the last :meth:`refresh` found; ``None`` before the first."""

    def draw(self, generator: torch.Generator) -> torch.Tensor:
        pool = self.pool if self.pool is not None else self.clearance.shell[:0]
        return self.clearance.sample(self.points, generator, pool)

    def loss(self, model: Field, step: OffSurface) -> torch.Tensor:
        box, near, shell = len(step.box), len(step.near), len(step.extra)
        needed = self.clearance.needed(torch.cat([step.box, step.near, step.extra]))
        # the near rows the step took no value at are left out
        values, rows = [step.f_box, step.f_near], [needed[: box + len(step.f_near)]]
        if shell:
            values.append(model(step.extra))
            rows.append(needed[box + near :])
        return self.weight * clearance_term(torch.cat(values), torch.cat(rows))

    def refresh(self, model: Field) -> None:
        """Aim the shell points at the zero crossings ``model`` now has too far from every point."""
        if self.points > 0:
            self.pool = self.clearance.violated(model)
