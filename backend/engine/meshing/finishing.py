"""What every extracted mesh goes through before it is shown: ghost pieces dropped, the trim
applied, small detached pieces removed."""

from __future__ import annotations

import numpy as np

from ..analysis.cloud_index import CloudIndex
from ..config.reconstruction import MeshConfig
from .cleanup import compact, face_areas, face_gaps, remove_small_components, supported_faces
from .trimming import TrimOutcome, trim_cut, trim_reach


def finish_mesh(
    vertices: np.ndarray, faces: np.ndarray, support: CloudIndex, length: float, mesh: MeshConfig,
    min_component_fraction: float | None = None, regions: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, TrimOutcome]:
    """The mesh without unsupported pieces (``mesh.support_distance``), trimmed (``mesh.trim``), and
    without pieces below ``min_component_fraction`` of the area (``mesh.min_component_fraction``
    when not given). ``length`` is what the distance settings are shares of (the support's box
    diagonal), in the mesh's coordinates; ``support`` indexes the cloud in those coordinates.
    ``regions`` (an int per face) keeps each region's best-supported piece (see
    :func:`~.cleanup.drop_unsupported_components`)."""
    support_distance = mesh.support_distance * length
    trim_distance = mesh.trim_distance * length
    sift = mesh.min_supported_share > 0.0
    reach = max(support_distance if sift else 0.0, trim_reach(support, mesh.trim, trim_distance))
    # one search of the cloud and one area per face serve the pieces' support and the trim
    areas = face_areas(vertices, faces)
    gaps = face_gaps(vertices, faces, support, reach) if reach > 0.0 and len(faces) else None
    if sift and gaps is not None:
        keep = supported_faces(vertices, faces, gaps <= support_distance, mesh.min_supported_share, regions, areas)
        if not keep.all():
            vertices, faces = compact(vertices, faces[keep])
            gaps, areas = gaps[keep], areas[keep]
    cut, trim = trim_cut(vertices, faces, support, mesh.trim, trim_distance, gaps, areas)
    if trim.cuts:
        vertices, faces = compact(vertices, faces[~cut])
        areas = areas[~cut]
    fraction = mesh.min_component_fraction if min_component_fraction is None else min_component_fraction
    vertices, faces = remove_small_components(vertices, faces, fraction, areas)
    return vertices, faces, trim
