#!/usr/bin/env python3
"""Benchmark of a tiled job's tiles as Ray tasks: one Ray worker against two, on this machine.

Builds a terrain (a smooth height field over a strip ``2 * --tiles`` long and 1.5 wide, with its
normals) that ``tiles.size`` cuts into ``--tiles`` tiles along the strip, and runs the same job
through the ``ray`` executor (:class:`RayExecutor`, one CPU and ``train.threads=1`` per tile) on
a private Ray of one CPU, then on one of two CPUs, each in a fresh process of this script. Each
run first trains a short warm-up job, so the timed job finds its Ray workers started. Prints each
wall time (from submit to the final mesh), the ratio one worker / two workers, and whether the
two meshes agree (bit for bit, else the largest distance from a vertex of one to the other's
nearest vertex).

    python scripts/benchmark_ray_tiles.py
    python scripts/benchmark_ray_tiles.py --points 20000 --iterations 1000 --tiles 4 --json out/ray_tiles.json

Not a test: the figures depend on the machine and on what else it runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, as the other scripts

WIDTH = 1.5
"""The terrain's extent across the strip (less than a tile, so the tiles lie along the strip)."""
PADDING = 0.05
"""``mesh.padding``: the share of the longest side the tile plan adds on every side."""


def terrain(count: int, tiles: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` points on ``z = 0.2 sin(2x) cos(3y)`` over ``[0, 2 tiles] x [0, WIDTH]``, and their
    upward unit normals."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 2.0 * tiles, count)
    y = rng.uniform(0.0, WIDTH, count)
    z = 0.2 * np.sin(2.0 * x) * np.cos(3.0 * y)
    normals = np.column_stack([-0.4 * np.cos(2.0 * x) * np.cos(3.0 * y), 0.6 * np.sin(2.0 * x) * np.sin(3.0 * y),
                               np.ones(count)])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return np.column_stack([x, y, z]), normals


def overrides(tiles: int, iterations: int) -> dict[str, Any]:
    """The job's settings: ``tiles`` tiles along the strip, one thread each, a small network."""
    length = 2.0 * tiles * (1.0 + 2.0 * PADDING)
    return {
        "tiles.size": length / tiles * 1.001, "mesh.padding": PADDING, "train.iterations": iterations,
        "tiles.iteration_share": 1.0,
        "train.threads": 1, "train.device": "cpu", "train.compile": "off", "model.hidden_features": 64,
        "model.hidden_layers": 2, "sampling.surface_points": 1500, "sampling.box_points": 1000,
        "sampling.near_points": 500, "mesh.resolution": 64, "preview.enabled": False,
    }


def run_child(cpus: int, points_path: Path, mesh_path: Path, tiles: int, iterations: int) -> dict[str, Any]:
    """The job on a private Ray of ``cpus`` CPUs in this process: its mesh written to ``mesh_path``,
    the seconds it took returned."""
    import ray

    from siren_recon.engine.config.reconstruction import ReconstructionConfig, apply_overrides
    from siren_recon.engine.tiling.tiled_field import tile_count
    from siren_recon.server.executors.ray import RayExecutor, _loopback_only
    from siren_recon.server.jobs import Job

    data = np.load(points_path)
    points, normals = data["points"].astype(np.float32), data["normals"].astype(np.float32)
    _loopback_only()
    ray.init(num_cpus=cpus, num_gpus=0, include_dashboard=False, log_to_driver=False)
    executor = RayExecutor(cpus_per_job=1, gpus_per_job=0)

    def run(steps: int) -> tuple[float, Any]:
        config = apply_overrides(ReconstructionConfig(), overrides(tiles, steps))
        job = Job(id=f"bench-{steps}", client=b"", owner="", result_owner="", tag="", detached=False,
                  points=points, normals=normals, colours=None, config=config)
        started = time.perf_counter()
        result = executor.run(job, lambda event: None, lambda event: None, lambda: False)
        return time.perf_counter() - started, result

    try:
        planned = tile_count(points, apply_overrides(ReconstructionConfig(), overrides(tiles, iterations)))
        run(10)  # warm-up: starts the workers and imports torch in them
        seconds, result = run(iterations)
    finally:
        ray.shutdown()
    np.savez(mesh_path, vertices=result.vertices, faces=result.faces)
    return {"cpus": cpus, "tiles": planned, "seconds": seconds, "faces": len(result.faces)}


def agreement(first: Path, second: Path) -> dict[str, Any]:
    """Whether two saved meshes are the same, and the largest vertex-to-nearest-vertex distance."""
    from scipy.spatial import cKDTree

    a, b = np.load(first), np.load(second)
    same = a["vertices"].shape == b["vertices"].shape and bool(
        np.array_equal(a["vertices"], b["vertices"]) and np.array_equal(a["faces"], b["faces"]))
    if len(a["vertices"]) == 0 or len(b["vertices"]) == 0:
        return {"identical": same, "max_distance": float("nan")}
    distance = max(float(cKDTree(b["vertices"]).query(a["vertices"])[0].max()),
                   float(cKDTree(a["vertices"]).query(b["vertices"])[0].max()))
    return {"identical": same, "max_distance": distance}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=6000, help="points on the terrain")
    parser.add_argument("--iterations", type=int, default=400, help="training steps per tile (train.iterations)")
    parser.add_argument("--tiles", type=int, default=2, help="tiles along the strip")
    parser.add_argument("--seed", type=int, default=0, help="seed of the terrain's points")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)  # CPUs of one run, in a process of its own
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mesh", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.data, args.mesh, args.tiles, args.iterations)))
        return 0
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "terrain.npz"
        np.savez(data, **dict(zip(("points", "normals"), terrain(args.points, args.tiles, args.seed))))
        rows = []
        for cpus in (1, 2):
            mesh = Path(folder) / f"mesh_{cpus}.npz"
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(cpus), "--data", str(data), "--mesh", str(mesh),
                 "--tiles", str(args.tiles), "--iterations", str(args.iterations)],
                check=True, capture_output=True, text=True,
            ).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(f"{cpus} worker(s): {rows[-1]['seconds']:.1f} s, {rows[-1]['tiles']} tiles, "
                  f"{rows[-1]['faces']} faces", flush=True)
        agree = agreement(Path(folder) / "mesh_1.npz", Path(folder) / "mesh_2.npz")
    ratio = rows[0]["seconds"] / rows[1]["seconds"]
    print(f"one worker / two workers: {ratio:.2f}x; meshes identical: {agree['identical']} "
          f"(largest vertex distance {agree['max_distance']:.2e})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k in (
            "points", "iterations", "tiles", "seed")}, "runs": rows, "ratio": ratio, **agree}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
