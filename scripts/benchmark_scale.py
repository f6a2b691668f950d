#!/usr/bin/env python3
"""Benchmark of large clouds: seconds per phase and peak memory of ``reconstruct_points``.

Samples a shared mesh (default Spot, ``spot.obj``) to each ``--points`` count, with its true
normals (``oriented``) or without (``unoriented``), optionally moved by Gaussian noise of a
share of the box diagonal, and reconstructs each at the default settings in a fresh process,
so that each row's peak resident memory (``VmHWM``) is its own. Phases:

* ``load``: reading the sampled cloud (a ``.npy``) into memory;
* ``prepare``: validation, normalisation and the support subsample, up to the first stage;
* ``first_stage``: the oriented fit, or the DiGS stage of unoriented input;
* ``index``: building the cloud's neighbour index (unoriented);
* ``normals``: normal directions, orientation, noise level and distance grids (unoriented);
* ``refinement``: the refinement stage's training (unoriented);
* ``mesh``: marching cubes and cleanup of the final mesh.

``--via submit`` sends each cloud instead to a backend (``siren-recon serve --device cpu``,
started fresh for each row on the loopback) and reads the backend process's peak resident memory
when the final mesh has arrived: ``first_progress`` (until the backend
reports its first training step, which includes sending, decoding and preparing the cloud),
``total`` (until the final mesh is here), and the backend's ``peak_rss_mb`` and CPU seconds.

Each timed phase also reports its CPU seconds (``cpu_<phase>``, all threads of the process), which
say more than wall time on a machine that other work shares.

    python scripts/benchmark_scale.py --points 1000000,10000000 --mode unoriented --noise 0.003 \\
        --json out/benchmark_scale.json
    python scripts/benchmark_scale.py --points 10000000 --via submit --json out/benchmark_submit.json

Not a test: the figures depend on the machine and on what else it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: evaluation/ is not installed

from evaluation.harness import peak_rss_mb  # noqa: E402

DEFAULT_MESH = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "meshes" / "spot.obj"


def sample_cloud(mesh: Path, count: int, noise: float, seed: int, folder: Path) -> tuple[Path, Path]:
    """Points and true normals of ``count`` samples of ``mesh`` written as ``.npy`` files."""
    import open3d as o3d

    from evaluation.metrics import sample_surface

    loaded = o3d.io.read_triangle_mesh(str(mesh))
    vertices, faces = np.asarray(loaded.vertices), np.asarray(loaded.triangles)
    rng = np.random.default_rng(seed)
    points, normals = sample_surface(vertices, faces, count, rng)
    if noise > 0:
        points = points + rng.normal(scale=noise * float(np.linalg.norm(np.ptp(vertices, axis=0))), size=points.shape)
    paths = folder / f"points_{count}.npy", folder / f"normals_{count}.npy"
    np.save(paths[0], points)
    np.save(paths[1], normals.astype(np.float32))
    return paths


def timed(phases: dict[str, float], name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` adding its seconds to ``phases[name]`` and noting the peak memory after it."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started, cpu = time.perf_counter(), time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - started
            phases[f"cpu_{name}"] = phases.get(f"cpu_{name}", 0.0) + time.process_time() - cpu
            phases[f"peak_mb_after_{name}"] = peak_rss_mb()

    return wrapper


def run_one(points_path: Path, normals_path: Path | None, threads: int) -> dict[str, Any]:
    """One reconstruction at the default settings, its phases timed (runs in a fresh process)."""
    import torch

    from siren_recon.engine import pipeline
    from siren_recon.engine.config.reconstruction import ReconstructionConfig, apply_overrides

    phases: dict[str, float] = {}
    started = time.perf_counter()
    points = np.load(points_path)
    normals = np.load(normals_path) if normals_path is not None else None
    phases["load"] = time.perf_counter() - started
    phases["peak_mb_after_load"] = peak_rss_mb()
    torch.set_num_threads(threads)
    stages = [0]
    fit_stage = pipeline.fit_stage

    def staged_fit(*args: Any, **kwargs: Any) -> Any:
        name = "first_stage" if stages[0] == 0 else "refinement"
        if stages[0] == 0:
            phases["prepare"] = time.perf_counter() - run_started
        stages[0] += 1
        return timed(phases, name, fit_stage)(*args, **kwargs)

    pipeline.fit_stage = staged_fit  # type: ignore[assignment]
    pipeline.CloudIndex.build = timed(phases, "index", pipeline.CloudIndex.build)  # type: ignore[method-assign]
    pipeline.refinement_stage = timed(phases, "normals", pipeline.refinement_stage)  # type: ignore[assignment]
    config = apply_overrides(ReconstructionConfig(), {"train.device": "cpu"})
    run_started = time.perf_counter()
    result = pipeline.reconstruct_points(points, normals, config)
    phases["mesh"] = result.timings["mesh"]
    phases["total"] = time.perf_counter() - started
    phases["cpu_total"] = time.process_time()
    return {"phases": phases, "peak_rss_mb": peak_rss_mb(), "faces": int(len(result.faces)),
            "noise_ratio": result.stats.get("noise_ratio")}


def run_submitted(points_path: Path, normals_path: Path | None, folder: Path) -> dict[str, Any]:
    """One reconstruction at the default settings on a fresh CPU backend, sent over the loopback."""
    import signal

    from evaluation.harness import free_port, start_backend
    from siren_recon.protocol.client import reconstruct_remote

    points = np.load(points_path).astype(np.float32)
    normals = np.load(normals_path) if normals_path is not None else None
    address = f"tcp://127.0.0.1:{free_port()}"
    backend = start_backend(address, folder / "backend.log", "--device", "cpu", "--results-dir",
                            str(folder / "results"))
    phases: dict[str, float] = {}
    started = time.perf_counter()

    def on_progress(_: Any) -> None:
        phases.setdefault("first_progress", time.perf_counter() - started)

    try:
        result = reconstruct_remote(points, normals, address=address, on_progress=on_progress)
        phases["total"] = time.perf_counter() - started
        peak = peak_rss_mb(backend.pid)
        cpu = sum(int(v) for v in Path(f"/proc/{backend.pid}/stat").read_text().split(")")[1].split()[11:13])
        phases["cpu_total"] = cpu / os.sysconf("SC_CLK_TCK")
    finally:
        backend.send_signal(signal.SIGTERM)
        backend.wait(timeout=60)
    return {"phases": phases, "peak_rss_mb": peak, "faces": int(len(result.faces)),
            "noise_ratio": result.done.stats.get("noise_ratio")}


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "load_average_at_start": os.getloadavg()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", default="1000000,10000000", help="comma-separated cloud sizes")
    parser.add_argument("--mode", default="unoriented", help="comma-separated: oriented, unoriented")
    parser.add_argument("--mesh", type=Path, default=DEFAULT_MESH)
    parser.add_argument("--noise", type=float, default=0.0, help="Gaussian noise, share of the box diagonal")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--via", choices=("reconstruct", "submit"), default="reconstruct",
                        help="reconstruct in a fresh process, or submit to a fresh backend")
    parser.add_argument("--one", nargs=2, metavar=("POINTS", "NORMALS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        normals = None if args.one[1] == "-" else Path(args.one[1])
        print(json.dumps(run_one(Path(args.one[0]), normals, args.threads)))
        return 0
    if not args.mesh.is_file():
        print(f"no mesh at {args.mesh}: nothing to benchmark", file=sys.stderr)
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for count in (int(c) for c in args.points.split(",")):
            points, normals = sample_cloud(args.mesh, count, args.noise, args.seed, Path(folder))
            for mode in args.mode.split(","):
                load = os.getloadavg()
                if args.via == "submit":
                    measured = run_submitted(points, normals if mode == "oriented" else None, Path(folder))
                else:
                    child = subprocess.run(
                        [sys.executable, __file__, "--threads", str(args.threads), "--one", str(points),
                         str(normals) if mode == "oriented" else "-"],
                        check=True, capture_output=True, text=True,
                    )
                    measured = json.loads(child.stdout.splitlines()[-1])
                row = {"points": count, "mode": mode, "via": args.via, "noise": args.noise,
                       "load_average_before": load, **measured}
                rows.append(row)
                phases = row["phases"]
                print(f"{count:>10,} {mode:<10} total {phases['total']:7.1f} s  peak {row['peak_rss_mb']:7.0f} MB  "
                      + "  ".join(f"{k} {v:.1f}" for k, v in phases.items() if not k.startswith("peak")), flush=True)
    if args.json is not None:
        from evaluation.harness import write_json

        write_json(args.json, {"machine": machine(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
