"""Moving a cloud near the origin before it travels to a backend as float32, and its mesh back.

The protocol carries points and vertices as float32, which rounds a coordinate near 500,000
(UTM metres) to 3 cm. A cloud farther from the origin than its own diagonal is therefore sent
relative to its box's centre, and the mesh that comes back is moved there again in float64. The
engine centres every cloud itself, so the shift changes nothing but the rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LocalFrame:
    """A translation between a cloud's own coordinates and the coordinates it travels in."""

    origin: tuple[float, float, float]
    """Where the travelling coordinates' origin lies in the cloud's own; zeros for a cloud near it."""

    @classmethod
    def of(cls, points: np.ndarray) -> LocalFrame:
        """The frame for ``points``: their box's centre when it is farther from the origin than the
        box's diagonal, else no shift at all."""
        points = np.asarray(points, dtype=np.float64)
        if len(points) == 0:
            return cls((0.0, 0.0, 0.0))
        lo, hi = points.min(axis=0), points.max(axis=0)
        centre = (lo + hi) / 2.0
        if not np.isfinite(centre).all() or float(np.abs(centre).max()) <= float(np.linalg.norm(hi - lo)):
            return cls((0.0, 0.0, 0.0))
        x, y, z = (float(c) for c in centre)
        return cls((x, y, z))

    def to_local(self, points: np.ndarray) -> np.ndarray:
        """``points`` (in the cloud's coordinates) in the travelling ones, float64."""
        return np.asarray(points, dtype=np.float64) - np.asarray(self.origin)

    def to_cloud(self, vertices: np.ndarray) -> np.ndarray:
        """``vertices`` (in the travelling coordinates) back in the cloud's, float64."""
        return np.asarray(vertices, dtype=np.float64) + np.asarray(self.origin)
