#!/usr/bin/env python3
"""Benchmark of tiled fields on a street survey: time, memory, accuracy and small-feature recall.

Builds the procedural street of ``evaluation.street`` (a 40 m street, six houses a side, each
with a chimney, some with a parapet), surveys it from above (``--points`` points, Gaussian noise
of ``--noise`` metres, no normals, at UTM-like coordinates) and reconstructs the survey once per
``--tile-size`` (0: one field over the whole street; otherwise the edge of a tile in metres, see
``tiles.size``), each in a fresh process of this script, so that each row's peak resident memory
(``VmHWM``) is its own. With Open3D importable it also runs screened Poisson at each
``--poisson-depth`` (default 10 and 11; normals estimated and oriented by Open3D, the 2%
lowest-density vertices trimmed) in the same way.

Each row: the variant, its tile count, seconds of training (Poisson: estimating and orienting
normals), meshing (Poisson: the solve and the trim) and both, the mesh's faces,
Chamfer-L1 and the 95th percentile of the distances (both directions pooled) to the part of the
truth a survey from above sees, in metres, normal consistency, the share of the chimneys' and
parapets' surface within 0.15 m of the mesh (``small_feature_recall``), and the peak resident
memory of the process in MB.

    python scripts/benchmark_tiles.py --points 100000 --iterations 1000 --tile-size 0,12 \\
        --json out/benchmark_tiles.json
    python scripts/benchmark_tiles.py --points 5000 --iterations 50 --tile-size 0,20

Not a test: the figures depend on the machine and on what else it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: evaluation/ is not installed

from evaluation.harness import peak_rss_mb  # noqa: E402

RECALL_TOLERANCE = 0.15
"""Metres from the mesh within which a chimney or parapet sample counts as kept."""
POISSON_TRIM_QUANTILE = 0.02


def run_engine(points: np.ndarray, tile_size: float, voxel_size: float, iterations: int | None,
               device: str, settings: list[str]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Our reconstruction of ``points`` with tiles of ``tile_size`` (0: one field), every field
    ``iterations`` steps as the CLI's ``--iterations`` gives them (``None``: the engine's defaults),
    and ``settings`` (``KEY=VALUE``, as the CLI's ``--set``) on top."""
    from siren_recon.cli import parse_override
    from siren_recon.commands.job_overrides import iteration_overrides
    from siren_recon.engine.config.reconstruction import ReconstructionConfig, apply_overrides
    from siren_recon.engine.pipeline import reconstruct_points

    config = apply_overrides(ReconstructionConfig(), {
        "tiles.size": tile_size, "mesh.voxel_size": voxel_size, **iteration_overrides(iterations),
        "train.device": device,
        # 0: one field even where the voxel size would tile the street by itself (tiles.voxels)
        **({"tiles.voxels": 0} if tile_size <= 0 else {}),
        **dict(parse_override(setting) for setting in settings),
    })
    result = reconstruct_points(points, None, config)
    tiles = len(getattr(result.field, "tiles", ())) or 1
    return result.vertices, result.faces, {"tiles": tiles, "train_s": result.timings["train"],
                                           "mesh_s": result.timings["mesh"]}


def run_poisson(points: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Open3D's screened Poisson at octree ``depth`` of ``points``, normals estimated and oriented
    towards a camera high above the street's centre, the lowest-density vertices trimmed; the
    points are moved to their centre for Open3D and the mesh moved back."""
    import open3d as o3d

    centre = points.mean(axis=0)
    started = time.perf_counter()
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points - centre))
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn=30))
    cloud.orient_normals_towards_camera_location(np.array([0.0, 0.0, 1000.0]))
    fitted = time.perf_counter()
    mesh, densities = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(cloud, depth=depth)
    densities = np.asarray(densities)
    mesh.remove_vertices_by_mask(densities < np.quantile(densities, POISSON_TRIM_QUANTILE))
    done = time.perf_counter()
    vertices = np.asarray(mesh.vertices, dtype=np.float64) + centre
    return vertices, np.asarray(mesh.triangles, dtype=np.int64), {
        "tiles": 1, "train_s": fitted - started, "mesh_s": done - fitted}


def run_child(variant: str, points_path: Path, mesh_path: Path, voxel_size: float, iterations: int | None,
              device: str, settings: list[str]) -> dict[str, Any]:
    """One variant (``poisson:DEPTH`` or a tile size) in this process: the mesh written to
    ``mesh_path``, timings and peak memory returned."""
    points = np.load(points_path)
    if variant.startswith("poisson:"):
        vertices, faces, figures = run_poisson(points, int(variant.split(":")[1]))
    else:
        vertices, faces, figures = run_engine(points, float(variant), voxel_size, iterations, device, settings)
    figures["peak_rss_mb"] = peak_rss_mb()
    np.savez(mesh_path, vertices=vertices, faces=faces)
    return figures


def score(vertices: np.ndarray, faces: np.ndarray, truth: Any, samples: int) -> dict[str, float]:
    """Chamfer-L1, p95 distance (metres), normal consistency and small-feature recall against the
    part of ``truth`` (a shifted ``StreetScene``) a survey from above sees."""
    from evaluation.metrics import sample_both_ways, surface_metrics
    from evaluation.street import seen_from_above, small_feature_recall

    if len(faces) == 0:
        return {"chamfer_m": float("nan"), "p95_m": float("nan"), "normal_consistency": float("nan"),
                "recall": 0.0}
    seen_faces = truth.faces[seen_from_above(truth.vertices, truth.faces)]
    used, seen_faces = np.unique(seen_faces, return_inverse=True)
    seen_vertices = truth.vertices[used]
    seen_faces = seen_faces.reshape(-1, 3)
    diagonal = float(np.linalg.norm(np.ptp(seen_vertices, axis=0)))
    pred, gt = sample_both_ways(vertices, faces, seen_vertices, seen_faces, samples)
    metrics = surface_metrics(pred, gt)
    recall = small_feature_recall(truth.vertices, truth.faces, truth.small_feature, vertices, faces,
                                  RECALL_TOLERANCE)
    return {"chamfer_m": metrics.chamfer_l1 * diagonal,
            "p95_m": float(np.percentile(np.concatenate([pred.distance, gt.distance]), 95)) * diagonal,
            "normal_consistency": metrics.normal_consistency, "recall": recall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=100_000, help="points in the survey")
    parser.add_argument("--noise", type=float, default=0.02, help="Gaussian noise of the survey, metres")
    parser.add_argument("--iterations", type=int, help="exactly this many training steps for every field, "
                        "as the CLI's --iterations (default: the engine's, 2,000 for one field and "
                        "tiles.iteration_share of them a tile)")
    parser.add_argument("--tile-size", default="0,12", help="comma-separated tile edges in metres; 0: one field")
    parser.add_argument("--voxel-size", type=float, default=0.0, help="mesh.voxel_size in metres; 0: from resolution")
    parser.add_argument("--device", default="auto", help="train.device")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an engine setting for every field (repeatable), as the CLI's --set")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scene and of the survey")
    parser.add_argument("--samples", type=int, default=100_000, help="samples per mesh for the distances")
    parser.add_argument("--poisson-depth", default="10,11", help="comma-separated octree depths of Poisson's rows")
    parser.add_argument("--no-poisson", action="store_true", help="skip Open3D's Poisson")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--one", nargs=3, metavar=("VARIANT", "POINTS", "MESH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        figures = run_child(args.one[0], Path(args.one[1]), Path(args.one[2]), args.voxel_size, args.iterations,
                            args.device, args.set)
        print(json.dumps(figures))
        return 0

    from evaluation.street import street_scene, survey

    variants = [str(float(size)) for size in args.tile_size.split(",")]
    try:
        import open3d  # noqa: F401

        if not args.no_poisson:
            variants += [f"poisson:{int(depth)}" for depth in args.poisson_depth.split(",")]
    except ImportError:
        print("open3d is not importable: no Poisson row", file=sys.stderr)
    points, truth = survey(street_scene(args.seed), args.points, noise=args.noise, seed=args.seed)
    rows = []
    header = (f"{'variant':<12} {'tiles':>5} {'train s':>8} {'mesh s':>7} {'total s':>8} {'faces':>9} "
              f"{'chamfer m':>10} {'p95 m':>7} {'normals':>7} {'recall':>6} {'peak MB':>8}")
    print(header)
    with tempfile.TemporaryDirectory() as folder:
        points_path = Path(folder) / "points.npy"
        np.save(points_path, points)
        for variant in variants:
            mesh_path = Path(folder) / "mesh.npz"
            child = subprocess.run(
                [sys.executable, __file__, "--voxel-size", str(args.voxel_size), "--device", args.device,
                 *(["--iterations", str(args.iterations)] if args.iterations is not None else []),
                 *(f"--set={setting}" for setting in args.set),
                 "--one", variant, str(points_path), str(mesh_path)],
                capture_output=True, text=True,
            )
            poisson = variant.startswith("poisson:")
            if poisson:
                name = f"poisson d{variant.split(':')[1]}"
            else:
                name = "one field" if float(variant) == 0 else f"tiles {variant}"
            if child.returncode != 0:
                print(f"{name:<12} failed: {child.stderr.strip().splitlines()[-1:]}", flush=True)
                rows.append({"variant": name, "error": child.stderr[-2000:]})
                continue
            figures = json.loads(child.stdout.splitlines()[-1])
            with np.load(mesh_path) as mesh:
                vertices, faces = mesh["vertices"], mesh["faces"]
            row = {"variant": name, "tile_size": None if poisson else float(variant), **figures,
                   "total_s": figures["train_s"] + figures["mesh_s"], "faces": int(len(faces)),
                   **score(vertices, faces, truth, args.samples)}
            rows.append(row)
            print(f"{name:<12} {row['tiles']:>5} {row['train_s']:>8.1f} {row['mesh_s']:>7.1f} {row['total_s']:>8.1f} "
                  f"{row['faces']:>9,} {row['chamfer_m']:>10.4f} {row['p95_m']:>7.3f} "
                  f"{row['normal_consistency']:>7.3f} {row['recall']:>6.3f} {row['peak_rss_mb']:>8.0f}", flush=True)
    if args.json is not None:
        from evaluation.harness import write_json

        write_json(args.json, {"points": args.points, "noise": args.noise, "iterations": args.iterations,
                               "settings": args.set,
                               "voxel_size": args.voxel_size, "seed": args.seed,
                               "load_average": os.getloadavg(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
