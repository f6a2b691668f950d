"""Small configurations and shapes that train in seconds on a CPU.

Importing this module imports nothing of the backend (the add-on's tests use it in an
environment without it); ``small_config`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from siren_recon.engine.config.reconstruction import ReconstructionConfig

SMALL = {
    "model.hidden_features": 64,
    "model.hidden_layers": 2,
    "sampling.surface_points": 1500,
    "sampling.box_points": 1000,
    "sampling.near_points": 500,
    "train.iterations": 200,
    "train.learning_rate": 5e-4,
    # the small network's DiGS fit is stable at this rate and converges in fewer steps
    "unoriented.learning_rate": 5e-4,
    "mesh.resolution": 48,
    # runs of a few hundred steps leave a structure inside a smooth shape when the roughest
    # normals are dropped (see NormalEstimationConfig.rough_share); tests that drop them say so
    "refinement.normals.rough_share": 0.0,
    "preview.enabled": False,
    # a compile takes longer than these runs; tests/test_fused_gradient.py covers the compiled path
    "train.compile": "off",
    # the step counts and preview schedules tests check: every step, previews by step alone
    # (tests/test_convergence.py covers stopping once settled and the timed previews)
    "train.until": "iterations",
    "preview.every_seconds": 0.0,
    # a tiled test's fields each train train.iterations, as with --iterations (test_tiling.py covers
    # the tiles' share of a default budget)
    "tiles.iteration_share": 1.0,
}


def small_config(**overrides: object) -> ReconstructionConfig:
    """A network and batch small enough to train in a few seconds; dotted keys with '__' for '.'."""
    from siren_recon.engine.config.reconstruction import ReconstructionConfig, apply_overrides

    merged = dict(SMALL)
    merged.update({key.replace("__", "."): value for key, value in overrides.items()})
    return apply_overrides(ReconstructionConfig(), merged)


def sphere_cloud(count: int = 2000, radius: float = 1.0, centre=(0.0, 0.0, 0.0), seed: int = 0):
    """Points uniform on a sphere with their outward normals."""
    rng = np.random.default_rng(seed)
    normals = rng.normal(size=(count, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return normals * radius + np.asarray(centre), normals
