"""Cutting away surface far from every input point (open scans), by a fixed distance or automatically."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..cloud_index import CloudIndex
from .cleanup import compact, face_areas, face_gaps

AUTO_SPACINGS = 4.0
"""Margin of the automatic trim, in point spacings: a face farther than this from every point is unsupported."""
AUTO_MIN_SHARE = 0.1
"""The automatic trim cuts when more than this share of the surface area is unsupported."""

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


NO_TRIM = TrimOutcome("off", float("nan"), 0.0, 0.0)


def trim_far_faces(
    vertices: np.ndarray, faces: np.ndarray, support: CloudIndex, distance: float
) -> tuple[np.ndarray, np.ndarray]:
    """Cut away every face whose centre is farther than ``distance`` from all input points.

    For open scans: a signed distance field is closed by nature, so it caps the unscanned side
    with a surface no point asked for. Trimming leaves the mesh open there instead.
    """
    if distance <= 0.0 or len(faces) == 0:
        return vertices, faces
    return compact(vertices, faces[face_gaps(vertices, faces, support, distance) <= distance])


def trim_mesh(
    vertices: np.ndarray, faces: np.ndarray, support: CloudIndex, choice: str, distance: float
) -> tuple[np.ndarray, np.ndarray, TrimOutcome]:
    """Apply a trim setting: ``off``, ``distance`` (cut beyond ``distance``) or ``auto``.

    The automatic rule asks whether the cloud surrounds the fitted surface or covers only part of
    it. A face is *unsupported* when its centre lies farther than ``AUTO_SPACINGS`` point spacings
    (``support.spacing``: the median nearest-neighbour distance of the cloud) from every input point. On a
    surface the cloud samples, the nearest point is within about one spacing (the fit averages the
    noise away), so four spacings leave room for uneven density. A closed shape sampled all round
    has almost no unsupported area (a few percent at most: an inner ghost sheet, an unscanned
    underside); a scan from one side or two leaves the far side, the flanks or the bottom to the
    field, which closes them with a large surface no point supports (a third to a half of the
    area). When more than ``AUTO_MIN_SHARE`` of the area is unsupported, the unsupported faces are
    cut at the same margin, so the open boundary lies within a few spacings of the data's boundary;
    otherwise the mesh comes back as it came, unchanged to the bit.
    """
    if len(faces) == 0 or choice == "off" or (choice == "distance" and distance <= 0.0):
        return vertices, faces, NO_TRIM
    if choice == "auto":
        distance = AUTO_SPACINGS * support.spacing
    near = face_gaps(vertices, faces, support, distance) <= distance
    areas = face_areas(vertices, faces)
    share_cut = float(areas[~near].sum()) / max(float(areas.sum()), 1e-300)
    if choice == "auto" and (share_cut <= AUTO_MIN_SHARE or not near.any()):
        return vertices, faces, TrimOutcome("kept", share_cut, distance, 0.0)
    kept_vertices, kept_faces = compact(vertices, faces[near])
    applied: TrimApplied = "trimmed" if choice == "auto" else "distance"
    unsupported = share_cut if choice == "auto" else float("nan")
    return kept_vertices, kept_faces, TrimOutcome(applied, unsupported, distance, share_cut)
