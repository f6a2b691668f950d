"""siren-recon: point cloud to mesh with a neural signed distance function (SIREN / DiGS).

The public entry points::

    import siren_recon

    mesh = siren_recon.reconstruct(pcd, config, on_progress=print)   # Open3D cloud -> Open3D mesh
    mesh, result = siren_recon.reconstruct_with_result(pcd, config)   # ... and the run's stats, timings, field
    result = siren_recon.reconstruct_points(points, normals, config)  # NumPy arrays -> ReconstructionResult
    config = siren_recon.apply_overrides(siren_recon.ReconstructionConfig(), {"train.iterations": 500})

They are imported on first use, so ``import siren_recon`` (or its ``protocol`` sub-package, which a
client needs alone) does not load torch, and Open3D is only needed by :func:`reconstruct`.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine.config.reconstruction import ReconstructionConfig, apply_overrides
    from .engine.pipeline import reconstruct_points
    from .open3d_mode import reconstruct, reconstruct_with_result

try:
    __version__ = version("siren-recon")
except PackageNotFoundError:  # imported from a source tree that is not installed (scripts/gpu_check.sh)
    __version__ = "0+source"

_PUBLIC = {
    "reconstruct": ".open3d_mode",
    "reconstruct_with_result": ".open3d_mode",
    "reconstruct_points": ".engine.pipeline",
    "ReconstructionConfig": ".engine.config",
    "apply_overrides": ".engine.config",
}
__all__ = [
    "ReconstructionConfig", "__version__", "apply_overrides", "reconstruct", "reconstruct_points",
    "reconstruct_with_result",
]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
