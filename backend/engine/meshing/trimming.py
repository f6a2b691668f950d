"""Cutting away surface far from every input point (open scans), by a fixed distance or automatically."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..analysis.cloud_index import CloudIndex
from .cleanup import compact, component_labels, face_areas, face_gaps

AUTO_SPACINGS = 4.0
"""The automatic trim's test, in point spacings: a face farther than this from every point is unsupported."""
AUTO_MIN_SHARE = 0.04
"""The automatic trim cuts when more than this share of the surface area is unsupported."""
CUT_SPACINGS = 2.0
"""Where the automatic trim cuts, in point spacings from the nearest point (at most
``AUTO_SPACINGS``: the test's distances serve the cut)."""
GAP_SPACINGS = 4.0
"""Unsupported patches smaller than a disc of this radius (in point spacings) are gaps between
samples, not missing surface: the automatic trim keeps them."""

TrimApplied = Literal["off", "distance", "kept", "trimmed"]


@dataclass(frozen=True)
class TrimOutcome:
    """What the trim step did to a mesh."""

    applied: TrimApplied
    """``off`` (no trim asked), ``distance`` (a fixed distance was cut), ``kept`` (the automatic rule found
    the cloud around the whole surface and left the mesh as it was) or ``trimmed`` (it cut)."""
    unsupported_share: float
    """Share of the surface area farther than the margin from every point (automatic rule only, else NaN)."""
    distance: float
    """The margin, in the mesh's coordinates (0 when nothing was measured)."""
    area_cut_share: float
    """Area removed as a share of the area before the cut."""

    @property
    def trimmed(self) -> bool:
        return self.area_cut_share > 0.0

    @property
    def cuts(self) -> bool:
        """Whether the trim's cut applies to the mesh (``distance`` or ``trimmed``), if only to
        drop the vertices no face uses."""
        return self.applied in ("distance", "trimmed")


NO_TRIM = TrimOutcome("off", float("nan"), 0.0, 0.0)


def trim_mesh(
    vertices: np.ndarray, faces: np.ndarray, support: CloudIndex, choice: str, distance: float
) -> tuple[np.ndarray, np.ndarray, TrimOutcome]:
    """Apply a trim setting: ``off``, ``distance`` (cut beyond ``distance``) or ``auto``.

    The automatic rule asks whether the cloud surrounds the fitted surface or covers only part of
    it. A face is *unsupported* when its centre lies farther than ``AUTO_SPACINGS`` point spacings
    (``support.spacing``: the median nearest-neighbour distance of the cloud) from every input point.
    On a surface the cloud samples, the nearest point is within about one spacing (the fit averages
    the noise away), so four spacings leave room for uneven density. A closed shape sampled all
    round has next to no unsupported area (under 0.1% on the evaluation's meshes, with or without
    normals, noisy or not); a real object scanned all round but for the patch it stood on leaves
    that patch to the field (1.5-2.5% on the evaluation's real scans). A scan from two opposite
    sides leaves the flanks (about 6%), one from a single side the far half (a third to a half of
    the area). At or below ``AUTO_MIN_SHARE`` unsupported, between those two, the cloud counts as
    surrounding the surface and the mesh comes back as it came, watertight and unchanged to the
    bit. Above it, the cut is tighter than the test: faces farther than ``CUT_SPACINGS`` from every
    point go, so the open rim lies within two spacings of the data's rim, and the second sheet an
    unoriented fit lays close behind an open sheet of points goes with the cap; connected patches
    of such faces smaller than a disc of ``GAP_SPACINGS`` are gaps between samples and stay.
    """
    cut, outcome = trim_cut(vertices, faces, support, choice, distance)
    if not outcome.cuts:
        return vertices, faces, outcome
    kept_vertices, kept_faces = compact(vertices, faces[~cut])
    return kept_vertices, kept_faces, outcome


def trim_reach(support: CloudIndex, choice: str, distance: float) -> float:
    """How far from the input points :func:`trim_cut` needs the faces' gaps exactly (0: not at all)."""
    if choice == "auto":
        return AUTO_SPACINGS * support.spacing
    return distance if choice == "distance" else 0.0


def trim_cut(
    vertices: np.ndarray, faces: np.ndarray, support: CloudIndex, choice: str, distance: float,
    gaps: np.ndarray | None = None, areas: np.ndarray | None = None,
) -> tuple[np.ndarray, TrimOutcome]:
    """(F,) bool, the faces :func:`trim_mesh` cuts, and what it did; ``gaps`` and ``areas`` are the
    faces' :func:`~.cleanup.face_gaps` (exact up to :func:`trim_reach`) and
    :func:`~.cleanup.face_areas` where already known."""
    nothing = np.zeros(len(faces), dtype=bool)
    if len(faces) == 0 or choice == "off" or (choice == "distance" and distance <= 0.0):
        return nothing, NO_TRIM
    areas = face_areas(vertices, faces) if areas is None else areas
    total = max(float(areas.sum()), 1e-300)
    if gaps is None:
        gaps = face_gaps(vertices, faces, support, trim_reach(support, choice, distance))
    if choice == "distance":
        cut = gaps > distance
        unsupported = float("nan")
    else:
        test = trim_reach(support, choice, distance)
        unsupported = float(areas[gaps > test].sum()) / total
        if unsupported <= AUTO_MIN_SHARE:
            return nothing, TrimOutcome("kept", unsupported, test, 0.0)
        distance = CUT_SPACINGS * support.spacing  # within the test: its gaps are exact here too
        cut = without_small_patches(vertices, faces, gaps > distance, np.pi * (GAP_SPACINGS * support.spacing) ** 2,
                                    areas)
        if cut.all():
            return nothing, TrimOutcome("kept", unsupported, distance, 0.0)
    applied: TrimApplied = "trimmed" if choice == "auto" else "distance"
    return cut, TrimOutcome(applied, unsupported, distance, float(areas[cut].sum()) / total)


def without_small_patches(
    vertices: np.ndarray, faces: np.ndarray, chosen: np.ndarray, min_area: float, areas: np.ndarray
) -> np.ndarray:
    """``chosen`` (a mask over faces) less its connected patches of under ``min_area``."""
    if not chosen.any():
        return chosen
    count, labels = component_labels(len(vertices), faces[chosen])
    large = np.bincount(labels, weights=areas[chosen], minlength=count) >= min_area
    kept = chosen.copy()
    kept[np.flatnonzero(chosen)[~large[labels]]] = False
    return kept
