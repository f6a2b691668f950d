#!/usr/bin/env python3
"""Benchmark of the backend link over loopback (not a test: timings depend on the machine).

* latency from submit to the first preview, with a real backend process and a small job;
* mesh_update throughput in MB/s for meshes of 100k and 1M triangles: encode, send over
  tcp://127.0.0.1, receive and fully validate (decode), between two real sockets.

    python scripts/benchmark_protocol.py [--json out/benchmark_protocol.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: evaluation/ is not installed

from evaluation.harness import free_port, start_backend, write_json
from siren_recon.protocol import MeshUpdate, decode, encode
from siren_recon.protocol.client import Client
from siren_recon.protocol.messages import Progress


def mesh_of(triangles: int) -> MeshUpdate:
    rng = np.random.default_rng(0)
    vertices = rng.random((triangles // 2, 3), dtype=np.float32)
    faces = rng.integers(0, len(vertices), (triangles, 3), dtype=np.uint32)
    return MeshUpdate(iteration=1, resolution=256, vertices=vertices, faces=faces)


def throughput(triangles: int, repeats: int) -> dict:
    """Send ``repeats`` mesh updates DEALER -> ROUTER over loopback TCP; decode each on arrival."""
    ctx = zmq.Context.instance()
    port = free_port()
    router = ctx.socket(zmq.ROUTER)
    router.bind(f"tcp://127.0.0.1:{port}")
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(f"tcp://127.0.0.1:{port}")
    message = mesh_of(triangles)
    size = sum(len(memoryview(f)) for f in encode(message))

    def send() -> None:
        for _ in range(repeats):
            dealer.send_multipart(encode(message), copy=False)

    sender = threading.Thread(target=send)
    started = time.perf_counter()
    sender.start()
    for _ in range(repeats):
        frames = router.recv_multipart(copy=False)
        decoded = decode(frames[1:], max_bytes=1 << 31)
        assert len(decoded.faces) == triangles
    seconds = time.perf_counter() - started
    sender.join()
    dealer.close(0)
    router.close(0)
    return {"triangles": triangles, "message_mb": size / 1e6, "mb_per_s": size * repeats / seconds / 1e6,
            "messages_per_s": repeats / seconds}


def first_preview_latency(runs: int, log_path: Path) -> dict:
    port = free_port()
    backend = start_backend(f"tcp://127.0.0.1:{port}", log_path)
    rng = np.random.default_rng(0)
    normals = rng.normal(size=(10_000, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    overrides = {"train.iterations": 400, "preview.first_iteration": 25, "preview.min_resolution": 48}
    latencies, first_progress = [], []
    try:
        with Client(address=f"tcp://127.0.0.1:{port}") as client:
            for _ in range(runs):
                sent = time.perf_counter()
                request = client.submit(normals, normals, overrides=overrides)
                job, progress_at = "", None
                while True:
                    for event in client.poll(5):
                        if getattr(event, "parent", "") == request:
                            job = event.job
                        if isinstance(event, Progress) and progress_at is None:
                            progress_at = time.perf_counter() - sent
                        if isinstance(event, MeshUpdate) and event.job == job:
                            latencies.append(time.perf_counter() - sent)
                            first_progress.append(progress_at)
                            client.cancel(job)
                            break
                    else:
                        continue
                    break
                time.sleep(1.0)
    finally:
        backend.terminate()
        backend.wait()
    return {"runs": runs, "points": 10_000, "preview_iteration": 25, "preview_resolution": 48,
            "first_preview_s_median": float(np.median(latencies)),
            "first_progress_s_median": float(np.median(first_progress))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = {
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores".strip(),
        "throughput": [throughput(100_000, 50), throughput(1_000_000, 10)],
        "latency": first_preview_latency(args.runs, Path(tempfile.mkdtemp()) / "backend.txt"),
    }
    print("| mesh_update | size | MB/s | messages/s |\n|---|---|---|---|")
    for row in results["throughput"]:
        print(
            f"| {row['triangles']:,} triangles | {row['message_mb']:.1f} MB | {row['mb_per_s']:.0f} "
            f"| {row['messages_per_s']:.1f} |"
        )
    lat = results["latency"]
    print(
        f"\nsubmit -> first progress: {lat['first_progress_s_median']:.2f} s; "
        f"submit -> first preview (iteration 25, 48^3): {lat['first_preview_s_median']:.2f} s (median of {lat['runs']})"
    )
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
