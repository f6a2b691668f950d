"""Where a reconstruction's error lies: by curvature band of the truth, and ripples on flat parts.

A mean such as Chamfer-L1 says how far off a surface is, not where. These figures split it by
the kind of surface underneath:

* each truth sample gets a **curvature band** from how its normal turns within a small ball
  (``radius``, a share of the box diagonal): the largest angle between its normal and those of
  the truth's surface in the ball, seen through a probe sample of the truth dense enough to put
  about ``PROBES_PER_BALL`` points in each ball (so the band does not depend on how many samples
  the metrics take). Under ``FLAT_DEGREES`` it is *flat*, from
  ``SHARP_DEGREES`` on *sharp/thin* (a crease, a corner, or a part thinner than the ball: the
  other side's normals point the opposite way), *curved* between. A reconstruction sample takes
  the band of the truth sample nearest to its closest point on the truth.
* **Chamfer by band**: the mean of both directions' distances within each band.
* **Median error**: the median of both directions' distances, which a few far outliers do not
  move: the typical surface error.
* **Roughness**: the mean angle, in degrees, between the reconstruction's face normal and the
  truth's normal under it, over reconstruction samples on flat parts. Ripples on a flat surface
  barely move its distance but tilt its normals, so this counts them.

Distances are shares of the ground truth's box diagonal, as in :mod:`evaluation.metrics`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial import cKDTree

from siren_recon.engine.meshing import face_areas

from .metrics import SampledSide, sample_surface

BANDS = ("flat", "curved", "sharp")
"""Curvature bands, in the order of :func:`curvature_bands`'s labels."""
FLAT_DEGREES = 10.0
SHARP_DEGREES = 45.0
BAND_RADIUS = 0.01
"""Radius of the ball a sample's band looks at, as a share of the box diagonal."""
PROBES_PER_BALL = 24
"""Probe samples of the truth expected in one ball: the chance that a ball centred on an edge
has none beyond the edge is then about exp(-12)."""
BAND_NEIGHBOURS = 64
"""At most this many probes in the ball are looked at."""
MAX_PROBES = 2_000_000


@dataclass(frozen=True)
class DetailMetrics:
    """Errors by curvature band (shares of the truth's box diagonal), typical error and roughness."""

    chamfer_flat: float
    chamfer_curved: float
    chamfer_sharp: float
    """Chamfer-L1 over the samples of each band (``nan`` for a band without samples)."""
    area_flat: float
    area_curved: float
    area_sharp: float
    """Share of the truth's area in each band."""
    median_error: float
    """Median distance, both directions pooled."""
    roughness_flat: float
    """Mean angle in degrees between the reconstruction's normals and the truth's on flat parts."""

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def curvature_bands(
    vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, normals: np.ndarray, radius: float, seed: int = 0
) -> np.ndarray:
    """Band (0 flat, 1 curved, 2 sharp/thin) of each of ``points`` (with unit ``normals``) on the
    mesh ``vertices, faces``, looking ``radius`` around each."""
    points = np.asarray(points, dtype=np.float64)
    normals = np.asarray(normals, dtype=np.float64)
    area = float(face_areas(np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64)).sum())
    count = int(min(MAX_PROBES, max(1_000, PROBES_PER_BALL * area / (np.pi * radius**2))))
    probes, probe_normals = sample_surface(vertices, faces, count, np.random.default_rng(seed))
    k = min(BAND_NEIGHBOURS, count)
    distances, indices = cKDTree(probes).query(points, k=k, distance_upper_bound=radius)
    distances, indices = distances.reshape(len(points), k), indices.reshape(len(points), k)
    found = np.isfinite(distances)
    neighbour_normals = probe_normals[np.where(found, indices, 0)]
    cosines = np.clip(np.einsum("ij,ikj->ik", normals, neighbour_normals), -1.0, 1.0)
    turn = np.where(found, np.degrees(np.arccos(cosines)), 0.0).max(axis=1)
    return np.digitize(turn, [FLAT_DEGREES, SHARP_DEGREES]).astype(np.int8)


def detail_metrics(
    pred: SampledSide, gt: SampledSide, gt_vertices: np.ndarray, gt_faces: np.ndarray, radius: float = BAND_RADIUS
) -> DetailMetrics:
    """:class:`DetailMetrics` from samples matched both ways (:func:`metrics.sample_both_ways`)
    against the truth ``gt_vertices, gt_faces``; ``radius`` is a share of its box diagonal."""
    diagonal = float(np.linalg.norm(np.ptp(np.asarray(gt_vertices, dtype=np.float64), axis=0)))
    gt_bands = curvature_bands(gt_vertices, gt_faces, gt.points, gt.normals, radius * diagonal)
    pred_bands = gt_bands[cKDTree(gt.points).query(pred.closest)[1]]
    chamfer = []
    for band in range(len(BANDS)):
        ours, theirs = pred.distance[pred_bands == band], gt.distance[gt_bands == band]
        chamfer.append((ours.mean() + theirs.mean()) / 2 if len(ours) and len(theirs) else float("nan"))
    area = np.bincount(gt_bands, minlength=len(BANDS)) / len(gt_bands)
    flat = pred_bands == 0
    cosines = np.abs(np.einsum("ij,ij->i", pred.normals[flat], pred.normal_there[flat]))
    roughness = float(np.degrees(np.arccos(np.clip(cosines, 0.0, 1.0))).mean()) if flat.any() else float("nan")
    return DetailMetrics(
        chamfer_flat=float(chamfer[0]), chamfer_curved=float(chamfer[1]), chamfer_sharp=float(chamfer[2]),
        area_flat=float(area[0]), area_curved=float(area[1]), area_sharp=float(area[2]),
        median_error=float(np.median(np.concatenate([pred.distance, gt.distance]))),
        roughness_flat=roughness,
    )


def error_colours(distances: np.ndarray, scale: float) -> np.ndarray:
    """Colours (V, 3) in 0..1 for per-vertex errors: white at 0 through orange to dark red at
    ``scale`` and beyond, for an error map drawn on the surface."""
    t = np.clip(np.asarray(distances, dtype=np.float64) / scale, 0.0, 1.0)[:, None]
    stops = np.array([[0.95, 0.95, 0.95], [0.98, 0.6, 0.2], [0.55, 0.0, 0.05]])
    low = stops[0] + (stops[1] - stops[0]) * np.minimum(t * 2, 1.0)
    return np.where(t < 0.5, low, stops[1] + (stops[2] - stops[1]) * (t * 2 - 1.0))
