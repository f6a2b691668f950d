"""What every extracted mesh goes through before it is shown: ghost pieces dropped, the trim
applied, small detached pieces removed."""

from __future__ import annotations

import numpy as np

from ..analysis.cloud_index import CloudIndex
from ..config.reconstruction import MeshConfig
from .cleanup import drop_unsupported_components, remove_small_components
from .trimming import TrimOutcome, trim_mesh


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
    vertices, faces = drop_unsupported_components(
        vertices, faces, support, mesh.support_distance * length, mesh.min_supported_share, regions)
    vertices, faces, trim = trim_mesh(vertices, faces, support, mesh.trim, mesh.trim_distance * length)
    fraction = mesh.min_component_fraction if min_component_fraction is None else min_component_fraction
    vertices, faces = remove_small_components(vertices, faces, fraction)
    return vertices, faces, trim
