"""Mapping between the input's coordinates and the network's unit cube."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FILL = 0.9
"""Half-extent of the cloud's longest side inside the network's cube ``[-1, 1]^3``.

The margin leaves room for the off-surface samples around the object, which keeps the zero
level set from touching the cube's faces.
"""


@dataclass(frozen=True)
class Normalization:
    """``unit = (x - centre) * scale``; the inverse maps meshes back to input coordinates."""

    centre: tuple[float, float, float]
    scale: float

    @classmethod
    def fit(cls, points: np.ndarray) -> Normalization:
        """Centre the bounding box at the origin and bring its longest half-side to :data:`FILL`."""
        lo = points.min(axis=0)
        hi = points.max(axis=0)
        centre = (lo + hi) / 2.0
        half = float((hi - lo).max()) / 2.0
        x, y, z = (float(c) for c in centre)
        return cls((x, y, z), FILL / half)

    def to_unit(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, dtype=np.float64) - np.asarray(self.centre)) * self.scale

    def from_unit(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, dtype=np.float64) / self.scale + np.asarray(self.centre)

    def to_dict(self) -> dict[str, object]:
        return {"centre": list(self.centre), "scale": self.scale}

    @classmethod
    def from_dict(cls, data: dict) -> Normalization:
        centre = [float(c) for c in data["centre"]]
        if len(centre) != 3:
            raise ValueError("normalisation centre must have 3 components")
        return cls((centre[0], centre[1], centre[2]), float(data["scale"]))
