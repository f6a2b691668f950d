#!/usr/bin/env python3
"""Benchmark of a tiled job's bookkeeping at survey scale: the work on the job's node that is
neither training nor meshing, for thousands of tiles.

A synthetic survey: ``--points`` points spread over a square of ``--side`` metres (a gently
rolling ground with 30 cm of scatter), cut into tiles of ``--tile-size`` metres as a tiled job
cuts it. Every tile's field is the ground's height difference, every other tile's sign flipped, so
that aligning the signs has work to do; no network is trained. Timed, each in this process:

* ``plan``: :func:`~siren_recon.engine.tiling.plan.plan_tiles`, each tile's points;
* ``align``: :func:`~siren_recon.engine.tiling.blend.align_signs` on a support of
  ``SUPPORT_POINTS`` points a tile (all points where fewer), as a tiled job calls it;
* ``blocks``: the blend's lattice at ``--voxel-size`` cut into blocks, each with the tiles that
  reach it (:func:`~siren_recon.engine.tiling.block_meshing.plan_blocks`);
* ``tile_of``: each face of a ground mesh of ``--faces`` faces given the tile whose core holds it
  (:meth:`~siren_recon.engine.tiling.tiled_field.TiledField.tile_of`).

It checks that every sign came out the same and prints seconds and the peak resident memory.

    python scripts/benchmark_tile_bookkeeping.py --points 10000000 --side 500
    python scripts/benchmark_tile_bookkeeping.py --points 1000000 --side 100 --json out/bookkeeping.json

Not a test: the figures depend on the machine and on what else it runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: evaluation/ is not installed

from evaluation.harness import peak_rss_mb, write_json  # noqa: E402


def ground(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Height of the survey's ground, metres."""
    return 2.0 * np.sin(x / 37.0) * np.cos(y / 53.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=2_000_000)
    parser.add_argument("--side", type=float, default=200.0, help="the survey's square, metres")
    parser.add_argument("--tile-size", type=float, default=10.0)
    parser.add_argument("--voxel-size", type=float, default=0.05)
    parser.add_argument("--faces", type=int, default=5_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the figures here as well")
    args = parser.parse_args()

    from siren_recon.engine.analysis.normalization import Normalization
    from siren_recon.engine.config.reconstruction import ModelConfig, ReconstructionConfig
    from siren_recon.engine.field.model import Siren
    from siren_recon.engine.field.sdf_field import SUPPORT_POINTS, mesh_bounds, support_subsample
    from siren_recon.engine.meshing.dense import grid_shape, resolution_for_voxel
    from siren_recon.engine.tiling.blend import BlendTile, align_signs
    from siren_recon.engine.tiling.block_meshing import BlendTileState, plan_blocks
    from siren_recon.engine.tiling.plan import plan_tiles
    from siren_recon.engine.tiling.tiled_field import TiledField

    rng = np.random.default_rng(args.seed)
    x, y = rng.uniform(0, args.side, args.points), rng.uniform(0, args.side, args.points)
    points = np.column_stack([x, y, ground(x, y) + rng.normal(0, 0.3, args.points)])
    figures: dict[str, float] = {"points": args.points, "side_m": args.side}

    started = time.perf_counter()
    tiles = plan_tiles(points, args.tile_size, 0.25, 0.05)
    figures.update(tiles=len(tiles), plan_s=time.perf_counter() - started)

    frame = Normalization.fit(points)
    unit = frame.to_unit(points)
    support = support_subsample(unit, args.seed, SUPPORT_POINTS * len(tiles))
    flips = np.where(np.arange(len(tiles)) % 2 == 0, 1.0, -1.0)

    def height(u: torch.Tensor, flip: float) -> torch.Tensor:
        p = frame.from_unit(u.double().numpy())
        return torch.as_tensor(flip * (p[:, 2] - ground(p[:, 0], p[:, 1])) * frame.scale, dtype=u.dtype)

    blend = [BlendTile(lambda u, flip=flip: height(u, flip), frame.to_unit(t.core_lo), frame.to_unit(t.core_hi),
                       t.margin * frame.scale, 1.0, np.zeros(3)) for t, flip in zip(tiles, flips)]
    started = time.perf_counter()
    align_signs(blend, support, 4.0 * args.tile_size / 1000.0 * frame.scale, args.seed)
    figures.update(support=len(support), align_s=time.perf_counter() - started)
    agreed = len({tile.sign * flip for tile, flip in zip(blend, flips)}) == 1

    model = Siren(ModelConfig())
    states = [BlendTileState.of(model, tile) for tile in blend]
    lo, hi = (np.array(bound) for bound in mesh_bounds(unit, 0.05))
    resolution = resolution_for_voxel(float((hi - lo).max()) / frame.scale, args.voxel_size)
    counts, voxel = grid_shape(lo, hi, resolution)
    started = time.perf_counter()
    blocks = plan_blocks(states, lo, counts, voxel, args.tile_size * frame.scale, 131072, True)
    figures.update(blocks=len(blocks), blocks_s=time.perf_counter() - started)

    side = int(np.sqrt(args.faces / 2)) + 1
    gx, gy = np.meshgrid(np.linspace(0, args.side, side), np.linspace(0, args.side, side), indexing="ij")
    vertices = frame.to_unit(np.column_stack([gx.ravel(), gy.ravel(), ground(gx.ravel(), gy.ravel())]))
    quad = (np.arange(side - 1)[:, None] * side + np.arange(side - 1)[None, :]).ravel()
    faces = np.concatenate([np.column_stack([quad, quad + side, quad + 1]),
                            np.column_stack([quad + 1, quad + side, quad + side + 1])])
    field = TiledField([], tiles, frame, (tuple(lo), tuple(hi)), support, ReconstructionConfig(), [1.0] * len(tiles))
    started = time.perf_counter()
    owner = field.tile_of(vertices, faces)
    figures.update(faces=len(faces), tile_of_s=time.perf_counter() - started,
                   faces_without_tile=int((owner < 0).sum()), peak_mb=peak_rss_mb())

    print(" ".join(f"{key}={value:.2f}" if isinstance(value, float) else f"{key}={value}"
                   for key, value in figures.items()))
    print("signs agree" if agreed else "SIGNS DISAGREE")
    write_json(args.json, figures)
    return 0 if agreed else 1


if __name__ == "__main__":
    sys.exit(main())
