#!/usr/bin/env python3
"""Benchmark of the ``ray`` executor against the ``local`` one (not a test: timings depend on the machine).

For each executor a real backend process is started on 127.0.0.1 and fed:

* a batch of ``--jobs`` small clouds, all submitted at once (as ``siren-recon batch`` does):
  jobs per hour from the first submit to the last ``job_done``;
* ``--repeats`` single jobs one after another on the warm backend: seconds from submit to the
  first progress and to the first preview. The difference between executors is what Ray adds to
  each job (task scheduling, shipping the cloud, the stream back); the first job on a fresh Ray
  cluster also starts a worker process, reported apart as the cold start.

    python scripts/benchmark_ray.py [--json out/benchmark_ray.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: evaluation/ is not installed

from evaluation.harness import free_port, start_backend, write_json
from siren_recon.protocol import JobAccepted, JobDone, JobFailed, MeshUpdate, Progress
from siren_recon.protocol.client import Client

REPO = Path(__file__).resolve().parents[1]


def load_test_shapes() -> ModuleType:
    """``tests/shapes.py`` (the tests' small configuration and sphere cloud), loaded by its path."""
    spec = importlib.util.spec_from_file_location("siren_test_shapes", REPO / "tests" / "shapes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


shapes = load_test_shapes()
SMALL, sphere_cloud = shapes.SMALL, shapes.sphere_cloud


def start(executor: str, log_path: Path, cpus_per_job: int) -> tuple[subprocess.Popen, str]:
    address = f"tcp://127.0.0.1:{free_port()}"
    extra = ["--executor", executor]
    if executor == "ray":
        extra += ["--ray-cpus-per-job", str(cpus_per_job)]
    process = start_backend(address, log_path, "--device", "cpu", "--results-dir",
                            str(log_path.parent / f"results-{executor}"), *extra, cwd=REPO)
    return process, address


def run_jobs(address: str, clouds: list, overrides: dict) -> dict:
    """Submit every cloud at once; per job: seconds to accepted, first progress, first preview, done."""
    marks: dict[str, dict[str, float]] = {}
    with Client(address=address) as client:
        started = time.monotonic()
        requests = {client.submit(points, normals, overrides=overrides, tag=f"bench{index}"): index
                    for index, (points, normals) in enumerate(clouds)}
        jobs: dict[str, int] = {}
        done = 0
        while done < len(clouds):
            if time.monotonic() - started > 1800:
                raise RuntimeError("the jobs did not finish within 30 minutes")
            for event in client.poll(20):
                now = time.monotonic() - started
                if isinstance(event, JobAccepted) and event.parent in requests:
                    jobs[event.job] = requests[event.parent]
                    marks[event.job] = {"accepted": now}
                elif isinstance(event, Progress) and event.job in marks:
                    marks[event.job].setdefault("first_progress", now)
                elif isinstance(event, MeshUpdate) and event.job in marks and not event.final:
                    marks[event.job].setdefault("first_preview", now)
                elif isinstance(event, JobDone) and event.job in marks:
                    marks[event.job]["done"] = now
                    marks[event.job]["train"] = event.timings.get("train", 0.0)
                    done += 1
                elif isinstance(event, JobFailed):
                    raise RuntimeError(f"job {event.job} failed: {event.code}: {event.message}")
    return {"wall_seconds": max(m["done"] for m in marks.values()), "jobs": list(marks.values())}


def bench(executor: str, args: argparse.Namespace, folder: Path, overrides: dict) -> dict:
    clouds = [sphere_cloud(args.points, radius=1.0 + index, seed=index) for index in range(args.jobs)]
    process, address = start(executor, folder / f"{executor}.log", args.ray_cpus_per_job)
    try:
        cold = run_jobs(address, clouds[:1], overrides)["jobs"][0]
        batch = run_jobs(address, clouds, overrides)
        singles = [run_jobs(address, clouds[:1], overrides)["jobs"][0] for _ in range(args.repeats)]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    first_progress = [job["first_progress"] for job in singles]
    first_preview = [job["first_preview"] for job in singles if "first_preview" in job]
    return {
        "executor": executor,
        "batch_wall_seconds": round(batch["wall_seconds"], 2),
        "jobs_per_hour": round(3600 * args.jobs / batch["wall_seconds"], 1),
        "batch_mean_train_seconds": round(statistics.mean(j["train"] for j in batch["jobs"]), 2),
        "cold_first_progress_seconds": round(cold["first_progress"], 3),
        "warm_first_progress_seconds": round(statistics.median(first_progress), 3),
        "warm_first_preview_seconds": round(statistics.median(first_preview), 3) if first_preview else None,
        "warm_job_seconds": round(statistics.median(j["done"] for j in singles), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="single warm jobs timed per executor")
    parser.add_argument("--ray-cpus-per-job", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0,
                        help="train.threads of every job (0: torch's default, all cores; 1: no oversubscription)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    overrides = {**SMALL, "train.iterations": args.iterations, "train.progress_every": 10, "preview.enabled": True,
                 "preview.first_iteration": 20, "preview.min_resolution": 16, "preview.max_resolution": 32,
                 "train.threads": args.threads}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        results = [bench(executor, args, Path(tmp), overrides) for executor in ("local", "ray")]
    load_after = os.getloadavg()
    local, ray = results
    report = {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_1min_before_after": [round(load_before[0], 2), round(load_after[0], 2)]},
        "settings": {"jobs": args.jobs, "points": args.points, "iterations": args.iterations,
                     "ray_cpus_per_job": args.ray_cpus_per_job, "overrides": overrides},
        "results": results,
        "ray_overhead_first_progress_seconds": round(ray["warm_first_progress_seconds"]
                                                     - local["warm_first_progress_seconds"], 3),
        "ray_overhead_first_preview_seconds": (
            round(ray["warm_first_preview_seconds"] - local["warm_first_preview_seconds"], 3)
            if ray["warm_first_preview_seconds"] is not None and local["warm_first_preview_seconds"] is not None
            else None),
        "ray_cold_start_seconds": round(ray["cold_first_progress_seconds"] - local["cold_first_progress_seconds"], 3),
    }
    print(json.dumps(report, indent=2))
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
