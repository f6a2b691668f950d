#!/usr/bin/env python3
"""How long the Blender add-on holds Blender's UI thread while it sends a large cloud.

Runs in a Python with ``bpy`` (the project's environment has Blender 5.0's module). Makes an
object of ``--points`` loose vertices with a ``normal`` attribute and a colour attribute (an
imported scan), starts a fresh CPU backend on the loopback, and does what the Reconstruct
operator and the add-on's timer do, timing each call that runs on the UI thread:

* ``read``: ``cloud_from_object`` (the attributes into float32 arrays with ``foreach_get``);
* ``submit``: ``Session.submit_prepared`` (starts the preparing thread: world space, float32);
* ``longest_tick``: the longest of the timer's ``Session.tick`` calls until the backend has
  accepted the job (one of them sends the message), and ``ticks`` how many there were;
* ``accepted``: seconds from the submit until the backend had accepted the job.

The job is then cancelled. Not a test: the figures depend on the machine.

    python scripts/benchmark_addon_send.py --points 10000000 --json out/benchmark_addon_send.json
"""

from __future__ import annotations

import argparse
import functools
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def scan_object(count: int, seed: int = 0):
    """A mesh object of ``count`` loose vertices on a sphere, with normals and colours."""
    import bpy

    rng = np.random.default_rng(seed)
    points = rng.normal(size=(count, 3)).astype(np.float32)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    mesh = bpy.data.meshes.new("scan")
    mesh.vertices.add(count)
    mesh.vertices.foreach_set("co", points.ravel())
    normal = mesh.attributes.new("normal", "FLOAT_VECTOR", "POINT")
    normal.data.foreach_set("vector", points.ravel())
    colour = mesh.color_attributes.new("Col", "FLOAT_COLOR", "POINT")
    colour.data.foreach_set("color", rng.random((count, 4), dtype=np.float32).ravel())
    mesh.update()
    obj = bpy.data.objects.new("scan", mesh)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def measure(count: int, folder: Path) -> dict[str, float]:
    import bpy

    from blender_addon.backend_process import backend_environment
    from blender_addon.blender_io import cloud_from_object
    from blender_addon.geometry import wire_cloud
    from blender_addon.session import Session
    from evaluation.harness import free_port, start_backend

    obj = scan_object(count)
    figures: dict[str, float] = {"points": count}
    started = time.perf_counter()
    points, normals, colours, matrix = cloud_from_object(obj, bpy.context.evaluated_depsgraph_get())
    figures["read"] = time.perf_counter() - started
    address = f"tcp://127.0.0.1:{free_port()}"
    backend = start_backend(address, folder / "backend.log", "--device", "cpu", "--results-dir",
                            str(folder / "results"), env=backend_environment())
    session = Session(address)
    try:
        session.connect()
        if not session.wait_connected():
            raise RuntimeError(f"no backend at {address}: {session.message}")
        started = time.perf_counter()
        job = session.submit_prepared("scan", functools.partial(wire_cloud, points, normals, colours, matrix),
                                      {"train.iterations": 10})
        figures["submit"] = time.perf_counter() - started
        ticks: list[float] = []
        while not job.job and job.status not in ("failed", "cancelled"):
            tick_started = time.perf_counter()
            session.tick()
            ticks.append(time.perf_counter() - tick_started)
            time.sleep(0.01)
            if time.perf_counter() - started > 300:
                raise TimeoutError("the backend did not accept the job within 300 s")
        if job.status == "failed":
            raise RuntimeError(job.message)
        figures["accepted"] = time.perf_counter() - started
        figures["longest_tick"] = max(ticks)
        figures["ticks"] = len(ticks)
        session.cancel(job)
    finally:
        session.disconnect()
        backend.send_signal(signal.SIGTERM)
        backend.wait(timeout=60)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=10_000_000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        figures = measure(args.points, Path(folder))
    print(json.dumps(figures))
    if args.json is not None:
        from evaluation.harness import write_json

        write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
