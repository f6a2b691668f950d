"""How noisy a cloud is, measured in its own point spacing.

A clean sample of a smooth surface lies, over a few neighbours, on a quadric: fitting
``z = a + b u + c v + d u^2 + e u v + f v^2`` to a point's nearest neighbours (``u, v`` along
their two widest principal axes, ``z`` along the third) leaves a residual far below the spacing
of the points. Noise does not fit: its residual is the noise itself. The ratio of the median
residual to the median spacing therefore tells the clean clouds from the noisy ones without
knowing the shape's size: about 0.002-0.05 on clean samples, about 0.5 with Gaussian noise of
0.3% of the box diagonal (see docs/experiments.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cloud_index import CloudIndex, as_index, even_subsample

NEIGHBOURS = 15
"""Points in each quadric fit, the point itself included: six unknowns, nine to spare."""

SAMPLE = 20_000
"""Points whose neighbourhoods are fitted (a random subset of larger clouds): the medians
settle long before that, and the cost stays bounded on clouds of millions."""


@dataclass(frozen=True)
class NoiseLevel:
    """The median point spacing and the median quadric-fit residual, in the cloud's units."""

    spacing: float
    """Median distance from a point to the nearest other point."""
    residual: float
    """Median root-mean-square residual of the quadric fits."""

    @property
    def ratio(self) -> float:
        """``residual / spacing``: about 0.05 or less on clean samples, 0.5 at the evaluation's
        noise; 0 when there is no spacing to measure by (too few or coincident points)."""
        return self.residual / self.spacing if self.spacing > 0 else 0.0


def estimate_noise(cloud: np.ndarray | CloudIndex, seed: int = 0) -> NoiseLevel:
    """The :class:`NoiseLevel` of ``cloud``, points (N, 3) or their index; a cloud of fewer than
    ``NEIGHBOURS`` points has none to measure (both 0)."""
    index = as_index(cloud)
    pts = index.points
    if len(pts) < NEIGHBOURS:
        return NoiseLevel(0.0, 0.0)
    chosen = even_subsample(len(pts), SAMPLE, seed)
    distances, neighbours = index.query(pts[chosen], k=NEIGHBOURS)
    spacing = float(np.median(distances[:, 1]))
    if spacing <= 0:
        return NoiseLevel(0.0, 0.0)
    hoods = (pts[neighbours] - pts[chosen][:, None]) / spacing  # in spacings: a well-scaled system
    centred = hoods - hoods.mean(axis=1, keepdims=True)
    _, axes = np.linalg.eigh(np.einsum("nki,nkj->nij", centred, centred))
    z, v, u = (np.einsum("nki,ni->nk", hoods, axes[:, :, i]) for i in range(3))
    design = np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=-1)
    normal = np.einsum("nki,nkj->nij", design, design) + 1e-9 * np.eye(6)
    coefficients = np.linalg.solve(normal, np.einsum("nki,nk->ni", design, z)[..., None])[..., 0]
    misfit = np.einsum("nkj,nj->nk", design, coefficients) - z
    residual = float(np.median(np.sqrt((misfit**2).mean(axis=1)))) * spacing
    return NoiseLevel(spacing, residual)


def noise_factor(ratio: float, free_ratio: float) -> float:
    """How much more a cloud of noise level ``ratio`` is smoothed (see
    ``NoiseConfig.free_ratio``): 1 up to ``free_ratio``, then in proportion; always 1 when
    ``free_ratio`` is 0. The refinement multiplies its normal weight by it;
    the refinement and the oriented fit divide their learning rates by it."""
    if free_ratio <= 0:
        return 1.0
    return max(1.0, ratio / free_ratio)
