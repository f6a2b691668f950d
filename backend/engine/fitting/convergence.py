"""When a fit has settled: its surface moves less than a share of the point spacing between checks.

Every ``CHECK_EVERY`` steps the field is evaluated at a fixed, even subsample of the points it is
fitted to. Where the field is a distance, the change of its value there is how far the surface
moved past those points; the fit has settled when the median of that change since the previous
check stays below ``train.converged_spacings`` median point spacings at ``SETTLED_CHECKS`` checks
in a row. Training then stops: ``train.iterations`` is the most steps a run takes.
"""

from __future__ import annotations

import torch

from ..analysis.cloud_index import even_subsample

CHECK_EVERY = 100
"""Steps between two looks at the field."""
SETTLED_CHECKS = 2
"""Checks in a row at which the surface must have moved less than the tolerance."""
PROBES = 2000
"""Points at which the field is compared (an even subsample of the fitted points)."""


class Convergence:
    """Watches how far a field's surface moves at fixed probe points, and says when it has settled."""

    def __init__(self, points: torch.Tensor, spacing: float, tolerance: float, seed: int = 0,
                 every: int = CHECK_EVERY, needed: int = SETTLED_CHECKS) -> None:
        rows = torch.as_tensor(even_subsample(len(points), PROBES, seed), device=points.device)
        self.probes = points[rows]
        self.spacing = spacing
        self.tolerance = tolerance
        self.every = every
        self.needed = needed
        self.previous: torch.Tensor | None = None
        self.calm = 0
        self.movements: list[tuple[int, float]] = []
        """(step, median movement in spacings) at each check after the first."""
        self.stopped_at: int | None = None
        """The step at which the fit was found settled, ``None`` while it has not been."""

    @torch.no_grad()
    def settled(self, model: torch.nn.Module, step: int) -> bool:
        """Whether training may stop after ``step`` (looks at the field only every ``every`` steps)."""
        if step % self.every:
            return False
        values = model(self.probes).reshape(-1)
        if self.previous is not None:
            movement = float((values - self.previous).abs().median()) / max(self.spacing, 1e-12)
            self.movements.append((step, movement))
            self.calm = self.calm + 1 if movement < self.tolerance else 0
        self.previous = values
        if self.calm >= self.needed:
            self.stopped_at = step
            return True
        return False

