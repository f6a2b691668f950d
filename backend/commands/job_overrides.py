"""The engine settings a command's flags change: a job sent to a backend (``submit``, ``batch``), and the
scene flags every command that reconstructs shares."""

from __future__ import annotations

import argparse
from typing import Any


def job_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``--set``'s overrides, then ``--iterations`` and ``--mode`` where given, by dotted name."""
    overrides: dict[str, Any] = dict(args.overrides)
    overrides.update(iteration_overrides(args.iterations))
    if args.mode is not None:
        overrides["mode"] = args.mode
    overrides.update(scene_overrides(args))
    return overrides


def iteration_overrides(iterations: int | None) -> dict[str, Any]:
    """``--iterations N``: exactly ``N`` steps for every field, a tile's too (``train.until=iterations``,
    ``tiles.iteration_share=1``), not at most ``N``."""
    if iterations is None:
        return {}
    return {"train.iterations": iterations, "train.until": "iterations", "tiles.iteration_share": 1.0}


def scene_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``--tile-size`` and ``--voxel-size`` where given, as ``tiles.size`` and ``mesh.voxel_size``."""
    named = {"tiles.size": args.tile_size, "mesh.voxel_size": args.voxel_size}
    return {key: value for key, value in named.items() if value is not None}
