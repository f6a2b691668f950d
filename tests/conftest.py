"""Shared fixtures."""

from __future__ import annotations

import numpy as np
import pytest

from .paths import DATA

try:
    import torch
except ImportError:  # the Blender-only environment runs the add-on's tests without torch
    torch = None
else:
    torch.set_num_threads(2)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` are skipped on a machine without a CUDA device."""
    if torch is not None and torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def cpu_unless_marked_cuda(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test but those marked ``cuda`` runs as on a machine without CUDA, GPU or not: the
    ``auto`` device (``train.device``, ``serve --device``) is the CPU, in this process and in the
    backends and CLIs the tests start, so the suite passes the same on a GPU machine."""
    if torch is None or "cuda" in request.keywords:
        return
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(scope="session")
def spot_cloud() -> tuple[np.ndarray, np.ndarray]:
    """The bundled 10k-point sample of Spot (public domain), points and normals."""
    import open3d as o3d

    cloud = o3d.io.read_point_cloud(str(DATA / "spot_sample.ply"))
    return np.asarray(cloud.points).copy(), np.asarray(cloud.normals).copy()
