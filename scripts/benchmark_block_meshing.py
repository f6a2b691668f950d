#!/usr/bin/env python3
"""Meshing a tiled field: the whole lattice at once against block by block, here and on Ray.

Trains the tiles of the street survey of ``scripts/benchmark_tiles.py`` (``--points`` points,
``mesh.voxel_size`` ``--voxel-size``, the default tiles of ``tiles.voxels`` voxels, each tile
``--iterations`` steps, one torch thread), then meshes the blend of the same fields, before any
cleaning, three ways, each timed:

* ``whole lattice``: the narrow band over the whole lattice in one pass (``extract_mesh`` on the
  blend);
* ``blocks in turn``: the field's own path, blocks of about a tile's edge one after the other
  in this process (``TiledField.raw_mesh``);
* ``blocks on Ray, N workers``: the same blocks as Ray tasks on a private Ray of ``--workers``
  CPUs, one torch thread each (``RayTileRunner.mesh_blocks``), after a warm-up.

It checks that the three meshes have the same faces and vertices within a hundredth of a voxel,
and prints the seconds, the blocks and the faces, and the seconds of what stays with the job's
process after the blocks: cleaning and trimming the welded mesh (``TiledField.finish``).

    python scripts/benchmark_block_meshing.py --points 50000 --workers 2 --json out/block_meshing.json

Not a test: the figures depend on the machine and on what else it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: evaluation/ is not installed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=50_000, help="points in the survey")
    parser.add_argument("--voxel-size", type=float, default=0.05, help="mesh.voxel_size in metres")
    parser.add_argument("--iterations", type=int, default=250, help="training steps of each tile")
    parser.add_argument("--workers", type=int, default=2, help="CPUs of the private Ray (0: no Ray row)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scene and of the survey")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    import torch
    from scipy.spatial import cKDTree

    from evaluation.street import street_scene, survey
    from siren_recon.engine.config.reconstruction import ReconstructionConfig, apply_overrides
    from siren_recon.engine.meshing import extract_mesh, grid_shape
    from siren_recon.engine.pipeline import train_field
    from siren_recon.engine.tiling.blend import BlendedSdf
    from siren_recon.engine.tiling.block_meshing import mesh_in_turn
    from siren_recon.engine.tiling.tiled_field import TiledField, fit_tiles

    torch.set_num_threads(1)
    points, _ = survey(street_scene(args.seed), args.points, noise=0.02, seed=args.seed)
    config = apply_overrides(ReconstructionConfig(), {
        "mesh.voxel_size": args.voxel_size, "train.iterations": args.iterations, "tiles.iteration_share": 1.0,
        "train.threads": 1, "train.device": "cpu"})
    started = time.perf_counter()
    field, _ = fit_tiles(points, None, config, train_field)
    train_s = time.perf_counter() - started
    if not isinstance(field, TiledField):
        raise SystemExit("the survey fits in one tile: give more points or a smaller --voxel-size")
    torch.set_num_threads(1)
    resolution = field.lattice_resolution()
    lo, hi = np.array(field.bounds[0]), np.array(field.bounds[1])
    voxel = grid_shape(lo, hi, resolution)[1]
    blocks = field.lattice_blocks()
    rows = []

    def timed(name: str, mesh) -> tuple[np.ndarray, np.ndarray]:
        begun = time.perf_counter()
        vertices, faces = mesh()
        seconds = time.perf_counter() - begun
        rows.append({"variant": name, "seconds": round(seconds, 2), "faces": int(len(faces))})
        print(f"{name:<28} {seconds:>8.1f} s {len(faces):>10,} faces", flush=True)
        return vertices, faces

    print(f"{len(field.tiles)} tiles trained in {train_s:.0f} s; lattice {resolution} points along its longest "
          f"side, {len(blocks)} blocks", flush=True)
    whole = timed("whole lattice", lambda: extract_mesh(BlendedSdf(field.blend_tiles()), lo, hi, resolution,
                                                        config.mesh.chunk_points, torch.device("cpu"), True))
    field.mesher = mesh_in_turn
    meshes = [timed("blocks in turn", field.raw_mesh)]
    if args.workers > 0:
        import ray

        from siren_recon.server.executors.ray import _loopback_only
        from siren_recon.server.executors.ray_tiles import RayTileRunner

        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        _loopback_only()
        ray.init(num_cpus=args.workers, num_gpus=0, include_dashboard=False, log_to_driver=False)
        try:
            field.mesher = RayTileRunner({"num_cpus": 1}, threads=1, attempts=1).mesh_blocks
            list(field.mesher(blocks[: args.workers]))  # warm-up: start the workers, import torch there
            meshes.append(timed(f"blocks on Ray, {args.workers} workers", field.raw_mesh))
        finally:
            ray.shutdown()
    timed("cleaning and trimming", lambda: field.finish(*whole)[:2])
    tree = cKDTree(whole[0])
    for vertices, faces in meshes:
        if len(faces) != len(whole[1]) or float(tree.query(vertices)[0].max()) > 0.01 * voxel:
            raise SystemExit("the block meshes differ from the whole lattice's")
    print("all meshes agree: the same faces, vertices within a hundredth of a voxel")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "points": args.points, "voxel_size": args.voxel_size, "iterations": args.iterations,
            "tiles": len(field.tiles), "blocks": len(blocks), "resolution": resolution, "train_s": round(train_s, 1),
            "load_average": os.getloadavg(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
