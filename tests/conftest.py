"""Shared fixtures."""

from __future__ import annotations

import numpy as np
import pytest

from .paths import DATA

try:
    import torch
except ImportError:  # the Blender-only environment runs the add-on's tests without torch
    pass
else:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def spot_cloud() -> tuple[np.ndarray, np.ndarray]:
    """The bundled 10k-point sample of Spot (public domain), points and normals."""
    import open3d as o3d

    cloud = o3d.io.read_point_cloud(str(DATA / "spot_sample.ply"))
    return np.asarray(cloud.points).copy(), np.asarray(cloud.normals).copy()
