#!/usr/bin/env python3
"""Score siren-recon against Open3D's screened Poisson on the shared test shapes.

For each mesh in the data folder it samples points (with normals), makes the input variants

* ``oriented``: the points with their true normals,
* ``unoriented``: the points alone,
* ``noisy``: the points alone, moved by Gaussian noise of 0.3% of the box diagonal,
* ``noisy-oriented``: those noisy points with the true normals of the points they came from (a
  scanner that measures normals),

reconstructs each with our engine and with Poisson (the given normals for ``oriented`` and
``noisy-oriented``; for the others, normals Open3D estimates and orients itself), and prints
one markdown table: Chamfer-L1, Hausdorff, normal consistency, F-score at 1%, connected pieces,
ghost share (surface farther than 1% of the diagonal from every input point) and seconds; then a
second table of where the error lies (``evaluation.detail_metrics``): Chamfer on the truth's
flat, curved and sharp/thin parts, the median error, and the roughness on flat parts (mean
normal deviation, degrees). ``--out``
also writes each mesh with its error map (distance to the truth per vertex, as vertex colours:
white at 0, dark red at 8 times the larger of the two methods' median errors and beyond, the same
scale for both) and a picture of the error maps.
``--scans`` reconstructs the real scans (no ground truth) and writes pictures of ours beside
Poisson's.

``--inputs open`` scores open scans instead (see ``evaluation.virtual_scan``):

* ``single-view``: a virtual range scan of each mesh from one camera (the side the pictures
  show: azimuth -35 degrees, 25 degrees up),
* ``two-view``: the same camera and one opposite it,
* ``terrain``: a height-field terrain scanned from straight above,

each scored against the part of the truth those cameras see (the terrain: all of it); and the
real scans, as ``--scans``.

    python scripts/evaluate.py --shapes spot,cow --inputs oriented --json out/eval.json
    python scripts/evaluate.py --shapes spot --inputs open --out out/open

Without the data folder it prints why and exits 0, so that a clone without ``../shared`` can
run it as a smoke step.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: evaluation/ is not installed

from evaluation.detail_metrics import detail_metrics, error_colours
from evaluation.harness import write_json
from evaluation.metrics import (
    closest_on_mesh,
    count_components,
    far_area_fraction,
    sample_both_ways,
    sample_surface,
    surface_metrics,
)
from evaluation.terrain import terrain_mesh
from evaluation.virtual_scan import camera_positions, range_scan, visible_truth
from siren_recon.engine.config.reconstruction import ReconstructionConfig, apply_overrides
from siren_recon.engine.pipeline import reconstruct_points
from siren_recon.open3d_mode import import_open3d, write_mesh
from siren_recon.rendering import render_side_by_side

REPO = Path(__file__).resolve().parents[1]

NOISE_SHARE = 0.003
GHOST_SHARE = 0.01
ERROR_MAP_MEDIANS = 8.0
"""The error maps draw darkest at this many times the larger of the methods' median errors."""
INPUTS = ("oriented", "unoriented", "noisy", "noisy-oriented")
SCAN_INPUTS = ("single-view", "two-view")
OPEN_INPUTS = (*SCAN_INPUTS, "terrain")
_AZIMUTH, _ELEVATION = np.radians(35.0), np.radians(25.0)
FRONT = np.array([-np.sin(_AZIMUTH) * np.cos(_ELEVATION), np.sin(_ELEVATION), np.cos(_AZIMUTH) * np.cos(_ELEVATION)])
"""The single view's camera direction (y up): the side ``render_side_by_side`` draws by default."""
VIEWS = {"single-view": FRONT[None], "two-view": np.stack([FRONT, -FRONT])}


@dataclass
class Sample:
    points: np.ndarray
    normals: np.ndarray | None


Method = Callable[[Sample], tuple[np.ndarray, np.ndarray]]


def ours(config: ReconstructionConfig) -> Method:
    def run(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        result = reconstruct_points(sample.points, sample.normals, config)
        return result.vertices, result.faces

    return run


def poisson(sample: Sample, depth: int = 9, trim_share: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """Screened Poisson; without given normals, Open3D estimates and orients them first."""
    o3d = import_open3d()
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(sample.points))
    if sample.normals is not None:
        cloud.normals = o3d.utility.Vector3dVector(sample.normals)
    else:
        cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(30))
        cloud.orient_normals_consistent_tangent_plane(15)
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        mesh, densities = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(cloud, depth=depth)
    if sample.normals is None and trim_share > 0:
        densities = np.asarray(densities)
        mesh.remove_vertices_by_mask(densities < np.quantile(densities, trim_share))
    return np.asarray(mesh.vertices), np.asarray(mesh.triangles)


def make_inputs(vertices: np.ndarray, faces: np.ndarray, count: int, seed: int, wanted: list[str]) -> dict[str, Sample]:
    rng = np.random.default_rng(seed)
    points, normals = sample_surface(vertices, faces, count, rng)
    diagonal = float(np.linalg.norm(np.ptp(vertices, axis=0)))
    noisy = points + rng.normal(scale=NOISE_SHARE * diagonal, size=points.shape)
    variants = {
        "oriented": Sample(points, normals),
        "unoriented": Sample(points, None),
        "noisy": Sample(noisy, None),
        "noisy-oriented": Sample(noisy, normals),
    }
    return {name: variants[name] for name in wanted if name in variants}


Truth = tuple[np.ndarray, np.ndarray]


def make_scans(
    vertices: np.ndarray, faces: np.ndarray, count: int, seed: int, wanted: list[str]
) -> dict[str, tuple[Sample, Truth]]:
    """Virtual range scans without normals, each with the part of the mesh its cameras see."""
    scans = {}
    for name in (n for n in SCAN_INPUTS if n in wanted):
        cameras = camera_positions(vertices, VIEWS[name])
        scan = range_scan(vertices, faces, cameras, count, np.random.default_rng(seed))
        scans[name] = (Sample(scan.points, None), visible_truth(vertices, faces, cameras))
    return scans


def evaluate_shape(path: Path, args: argparse.Namespace, config: ReconstructionConfig) -> list[dict]:
    o3d = import_open3d()
    mesh = o3d.io.read_triangle_mesh(str(path))
    gt_v, gt_f = np.asarray(mesh.vertices), np.asarray(mesh.triangles)
    cases: dict[str, tuple[Sample, Truth]] = {
        variant: (sample, (gt_v, gt_f))
        for variant, sample in make_inputs(gt_v, gt_f, args.points, args.seed, args.inputs).items()
    }
    cases.update(make_scans(gt_v, gt_f, args.points, args.seed, args.inputs))
    return [row for variant, (sample, truth) in cases.items()
            for row in evaluate_case(path.stem, variant, sample, truth, args, config, args.up)]


def evaluate_terrain(args: argparse.Namespace, config: ReconstructionConfig) -> list[dict]:
    """A height field scanned from straight above; all of it is seen, so all of it is the truth."""
    vertices, faces = terrain_mesh(seed=args.seed)
    cameras = camera_positions(vertices, np.array([[0.0, 0.0, 1.0]]))
    scan = range_scan(vertices, faces, cameras, args.points, np.random.default_rng(args.seed))
    return evaluate_case("terrain", "single-view", Sample(scan.points, None), (vertices, faces), args, config, "z")


def evaluate_case(
    shape: str, variant: str, sample: Sample, truth: Truth, args: argparse.Namespace, config: ReconstructionConfig,
    up: str,
) -> list[dict]:
    """Ours and Poisson on one input, scored against ``truth``; a table row for each."""
    gt_v, gt_f = truth
    diagonal = float(np.linalg.norm(np.ptp(gt_v, axis=0)))
    rows = []
    methods: dict[str, Method] = {"siren-recon": ours(config), "poisson": poisson}
    panels = [(f"{shape} input ({variant})", None, None, sample.points)]
    maps: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]] = [("truth", gt_v, gt_f, None)]
    errors: list[tuple[str, np.ndarray]] = []
    for name, method in methods.items():
        started = time.perf_counter()
        vertices, faces = method(sample)
        seconds = time.perf_counter() - started
        matched = sample_both_ways(vertices, faces, gt_v, gt_f, samples=args.samples, seed=args.seed)
        scores = surface_metrics(*matched)
        detail = detail_metrics(*matched, gt_v, gt_f)
        row = {
            "shape": shape,
            "input": variant,
            "method": name,
            "seconds": seconds,
            "components": count_components(vertices, faces),
            "ghost_share": far_area_fraction(vertices, faces, sample.points, GHOST_SHARE * diagonal),
            **scores.as_dict(),
            **detail.as_dict(),
        }
        rows.append(row)
        print(format_row(row), flush=True)
        panels.append((f"{name}  chamfer {1e3 * scores.chamfer_l1:.2f}e-3", vertices, faces, None))
        if args.out:
            write_mesh(Path(args.out) / f"{shape}_{variant}_{name}.ply", vertices, faces)
            maps.append((f"{name}  median {1e3 * detail.median_error:.3f}e-3", vertices, faces, None))
            errors.append((name, closest_on_mesh(gt_v, gt_f, vertices)[0] / diagonal))
    if args.out:
        scale = ERROR_MAP_MEDIANS * max(row["median_error"] for row in rows)
        colours: list[np.ndarray | None] = [None, *(error_colours(error, scale) for _, error in errors)]
        for (_, vertices, faces, _), (name, _), paint in zip(maps[1:], errors, colours[1:], strict=True):
            write_mesh(Path(args.out) / f"{shape}_{variant}_{name}_error.ply", vertices, faces, paint)
        maps[0] = (f"truth  (dark red: {1e3 * scale:.2f}e-3)", gt_v, gt_f, None)
        render_side_by_side(panels, Path(args.out) / f"{shape}_{variant}.png", up=up)
        render_side_by_side(maps, Path(args.out) / f"{shape}_{variant}_error.png", up=up, colours=colours)
    return rows


def evaluate_scans(folder: Path, args: argparse.Namespace, config: ReconstructionConfig) -> list[dict]:
    """Real scans have no ground truth: report how far the input lies from each surface."""
    from scipy.spatial import cKDTree

    rows = []
    for path in sorted(folder.glob("*.xyz")):
        points = np.loadtxt(path, usecols=(0, 1, 2))
        diagonal = float(np.linalg.norm(np.ptp(points, axis=0)))
        sample = Sample(points, None)
        panels = [(f"{path.stem} input", None, None, points)]
        for name, method in {"siren-recon": ours(config), "poisson": poisson}.items():
            started = time.perf_counter()
            vertices, faces = method(sample)
            seconds = time.perf_counter() - started
            surface, _ = sample_surface(vertices, faces, args.samples, np.random.default_rng(args.seed))
            input_to_surface = cKDTree(surface).query(points)[0] / diagonal
            row = {
                "shape": path.stem,
                "input": "scan",
                "method": name,
                "seconds": seconds,
                "components": count_components(vertices, faces),
                "ghost_share": far_area_fraction(vertices, faces, points, GHOST_SHARE * diagonal),
                "input_to_surface_mean": float(input_to_surface.mean()),
                "input_to_surface_p99": float(np.quantile(input_to_surface, 0.99)),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            panels.append((name, vertices, faces, None))
            if args.out:
                write_mesh(Path(args.out) / f"{path.stem}_{name}.ply", vertices, faces)
        if args.out:
            render_side_by_side(panels, Path(args.out) / f"{path.stem}.png", up="z")
    return rows


def format_row(row: dict) -> str:
    return (
        f"| {row['shape']} | {row['input']} | {row['method']} | {1e3 * row['chamfer_l1']:.2f} | "
        f"{1e3 * row['hausdorff']:.1f} | {row['normal_consistency']:.4f} | {row['fscore']:.4f} | "
        f"{row['components']} | {100 * row['ghost_share']:.2f}% | {row['seconds']:.1f} |"
    )


def format_detail_row(row: dict) -> str:
    bands = " | ".join(f"{1e3 * row[f'chamfer_{band}']:.3f}" for band in ("flat", "curved", "sharp"))
    return (f"| {row['shape']} | {row['input']} | {row['method']} | {1e3 * row['median_error']:.3f} | {bands} | "
            f"{row['roughness_flat']:.2f} |")


DETAIL_HEADER = (
    "| shape | input | method | median error (1e-3) | Chamfer flat | Chamfer curved | Chamfer sharp/thin "
    "| roughness on flat (deg) |\n|---|---|---|---|---|---|---|---|"
)
HEADER = (
    "| shape | input | method | Chamfer-L1 (1e-3) | Hausdorff (1e-3) | normal consistency | F-score @1% "
    "| pieces | ghost share | seconds |\n|---|---|---|---|---|---|---|---|---|---|"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data", default=str(REPO.parent / "shared" / "data"),
        help="folder with meshes/ (and scans/), or a folder of .obj meshes itself "
        "(default: ../shared/data beside the repository)",
    )
    parser.add_argument("--shapes", help="comma-separated mesh names (default: all; '' for none, e.g. with --scans)")
    parser.add_argument(
        "--inputs", default="oriented",
        help=f"comma-separated of {','.join(INPUTS + OPEN_INPUTS)}; 'open' for all open inputs and the real scans",
    )
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=100_000, help="surface samples per metric")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, help="training steps (same as --set train.iterations=N)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="engine config override")
    parser.add_argument("--scans", action="store_true", help="also reconstruct the real scans")
    parser.add_argument("--json", help="write all rows here")
    parser.add_argument("--out", help="write meshes and side-by-side pictures here")
    parser.add_argument("--up", default="y", choices=("y", "z"), help="up axis of the meshes, for pictures")
    args = parser.parse_args()
    args.inputs = [name for name in args.inputs.split(",") if name]
    if "open" in args.inputs:
        args.inputs = [name for name in args.inputs if name != "open"] + list(OPEN_INPUTS)
        args.scans = True
    unknown = set(args.inputs) - set(INPUTS) - set(OPEN_INPUTS)
    if unknown:
        parser.error(f"unknown inputs {sorted(unknown)}")
    from siren_recon.cli import parse_override

    overrides = dict(parse_override(text) for text in args.set)
    if args.iterations is not None:
        overrides["train.iterations"] = args.iterations
    config = apply_overrides(ReconstructionConfig(), overrides)
    data = Path(args.data)
    meshes = data / "meshes" if (data / "meshes").is_dir() else data
    if not meshes.is_dir() or not any(meshes.glob("*.obj")):
        print(f"skipped: no test meshes (*.obj) at {data} or {data / 'meshes'}; pass --data DIR", file=sys.stderr)
        return 0
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    wanted = [name for name in args.shapes.split(",") if name] if args.shapes is not None else None
    paths = [p for p in sorted(meshes.glob("*.obj")) if wanted is None or p.stem in wanted]
    missing = sorted(set(wanted or ()) - {p.stem for p in paths})
    if missing:
        parser.error(f"no meshes named {missing} in {meshes}")
    print(HEADER, flush=True)
    rows = [row for path in paths for row in evaluate_shape(path, args, config)]
    if "terrain" in args.inputs:
        rows += evaluate_terrain(args, config)
    banded = [row for row in rows if "median_error" in row]
    if banded:
        print("\n" + DETAIL_HEADER)
        for row in banded:
            print(format_detail_row(row), flush=True)
    if args.scans:
        rows += evaluate_scans(meshes.parent / "scans", args, config)
    write_json(args.json, {"overrides": overrides, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
