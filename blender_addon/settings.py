"""What the panel's choices mean as engine settings (no bpy)."""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "preview": {"train.iterations": 500, "model.hidden_features": 64, "mesh.resolution": 128},
    "standard": {},
    "high": {"train.iterations": 6000, "model.hidden_features": 256, "mesh.resolution": 384},
}
"""Quality presets as engine overrides; ``standard`` is the engine's own defaults."""

TRIMS = ("auto", "off", "distance")
"""The panel's trim choices, as the engine's ``mesh.trim``; ``auto`` is the engine's default."""


def job_overrides(
    mode: str, quality: str, iterations: int = 0, resolution: int = 0, seed: int = -1,
    trim: str = "auto", trim_distance: float = 0.02, tile_size: float = 0.0, detail_size: float = 0.0,
) -> dict[str, Any]:
    """Overrides for one job: the preset, then the advanced fields the user set (0 / -1: unset),
    then the trim choice (``distance`` with its share of the diagonal). ``tile_size`` (the engine's
    ``tiles.size``) and ``detail_size`` (``mesh.voxel_size``) are in the scene's units, the units
    the cloud is sent in."""
    if quality not in PRESETS:
        raise ValueError(f"unknown quality preset {quality!r}")
    overrides: dict[str, Any] = {"mode": mode, **PRESETS[quality]}
    if iterations > 0:  # exactly that many steps for every field (a tile's too), where a preset's
        overrides["train.iterations"] = iterations  # count is the most a fit takes
        overrides["train.until"] = "iterations"
        overrides["tiles.iteration_share"] = 1.0
    if resolution > 0:
        overrides["mesh.resolution"] = resolution
    if seed >= 0:
        overrides["train.seed"] = seed
    if trim not in TRIMS:
        raise ValueError(f"unknown trim choice {trim!r}")
    if trim != "auto":
        overrides["mesh.trim"] = trim
    if trim == "distance":
        overrides["mesh.trim_distance"] = float(trim_distance)
    if tile_size > 0:
        overrides["tiles.size"] = float(tile_size)
    if detail_size > 0:
        overrides["mesh.voxel_size"] = float(detail_size)
    return overrides
