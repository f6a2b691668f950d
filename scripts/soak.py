#!/usr/bin/env python3
"""Soak the backend link: many clients, random cancels and disconnects, nothing lost or crossed.

Starts a real backend process on 127.0.0.1 and runs ``--clients`` client threads that each
submit ``--jobs`` small jobs, then, while the jobs run, cancel some at random and drop their
connection at random (closing the socket and coming back on the same routing id a moment later,
as a laptop on flaky Wi-Fi does). At the end every job not cancelled by its owner must have
delivered its final mesh and ``job_done`` to that owner, and no client may have seen a message
about anybody else's job. The backend's resident memory is sampled throughout.

    python scripts/soak.py --clients 8 --jobs 4 --json out/soak.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: evaluation/ is not installed

from evaluation.harness import start_backend, write_json
from siren_recon.protocol import Error, JobAccepted, JobCancelled, JobDone, JobFailed, MeshUpdate, Progress
from siren_recon.protocol.client import Client

REPO = Path(__file__).resolve().parents[1]

SMALL = {"model.hidden_features": 32, "model.hidden_layers": 2, "sampling.surface_points": 800,
         "sampling.box_points": 600, "sampling.near_points": 300, "mesh.resolution": 48,
         "preview.first_iteration": 20, "preview.min_resolution": 32, "preview.max_resolution": 48,
         "train.progress_every": 10}


@dataclass
class Tally:
    submitted: int = 0
    done: int = 0
    cancelled_by_owner: int = 0
    failed: list = field(default_factory=list)
    lost: list = field(default_factory=list)
    foreign: int = 0
    """Messages about a job that is not this client's (must stay 0)."""
    disconnects: int = 0
    previews: int = 0


def rss(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def sphere(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = rng.normal(size=(count, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    return (n * rng.uniform(0.5, 3.0)).astype(np.float32), n.astype(np.float32)


def run_client(index: int, address: str, jobs: int, cancel_rate: float, drop_rate: float, deadline: float,
               tally: Tally, lock: threading.Lock) -> None:
    rnd = random.Random(index)
    rng = np.random.default_rng(index)
    identity = uuid.uuid4().bytes
    client = Client(address=address, identity=identity, heartbeat_interval=0.5)
    client.connect()
    requests: dict[str, int] = {}
    mine: dict[str, dict] = {}  # job id -> state
    for _ in range(jobs):
        points, normals = sphere(rnd.randint(400, 1500), rng)
        overrides = {**SMALL, "train.iterations": rnd.randint(80, 250), "train.seed": rnd.randint(0, 9)}
        requests[client.submit(points, normals, overrides=overrides, tag=f"c{index}")] = 1
    with lock:
        tally.submitted += jobs
    unresolved = lambda: len(mine) < jobs or any(s["end"] is None for s in mine.values())  # noqa: E731
    last_tick = time.monotonic()
    while unresolved() and time.monotonic() < deadline:
        for event in client.poll(50):
            if isinstance(event, JobAccepted) and event.parent in requests:
                mine[event.job] = {"end": None, "final": False, "cancel": False}
            elif isinstance(event, Error):
                with lock:
                    tally.failed.append(f"c{index}: error {event.code}: {event.message}")
            elif isinstance(event, (Progress, MeshUpdate, JobDone, JobFailed, JobCancelled)):
                state = mine.get(event.job)
                if state is None:
                    with lock:
                        tally.foreign += 1
                    continue
                if isinstance(event, MeshUpdate):
                    state["final"] |= event.final
                    with lock:
                        tally.previews += not event.final
                elif isinstance(event, JobDone):
                    state["end"] = "done" if state["final"] else "done_without_mesh"
                elif isinstance(event, JobFailed):
                    state["end"] = f"failed {event.code}"
                elif isinstance(event, JobCancelled):
                    state["end"] = "cancelled" if state["cancel"] else f"cancelled by backend: {event.reason}"
        now = time.monotonic()
        if now - last_tick < 1.0:
            continue
        last_tick = now
        running = [job for job, s in mine.items() if s["end"] is None and not s["cancel"]]
        if running and rnd.random() < cancel_rate:
            job = rnd.choice(running)
            mine[job]["cancel"] = True
            client.cancel(job)
        if rnd.random() < drop_rate:  # the link drops for a moment; same routing id afterwards
            client.close()
            time.sleep(rnd.uniform(0.3, 2.0))
            client = Client(address=address, identity=identity, heartbeat_interval=0.5)
            client.connect()
            with lock:
                tally.disconnects += 1
    client.close()
    with lock:
        for job, state in mine.items():
            if state["end"] == "done":
                tally.done += 1
            elif state["end"] == "cancelled":
                tally.cancelled_by_owner += 1
            elif state["end"] is None:
                tally.lost.append(f"c{index} {job}: no end seen")
            else:
                tally.failed.append(f"c{index} {job}: {state['end']}")
        if len(mine) < jobs:
            tally.lost.append(f"c{index}: {jobs - len(mine)} submits never accepted")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=4, help="jobs per client")
    parser.add_argument("--cancel-rate", type=float, default=0.01, help="chance per client-second of a cancel")
    parser.add_argument("--drop-rate", type=float, default=0.05, help="chance per client-second of a link drop")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--port", type=int, default=5791)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    address = f"tcp://127.0.0.1:{args.port}"
    work = Path(tempfile.mkdtemp(prefix="siren-soak-"))
    log_path = work / "backend.txt"
    backend = start_backend(address, log_path, "--device", "cpu", "--results-dir", str(work / "results"),
                            "--heartbeat-timeout", "10", cwd=REPO)
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.monotonic(), rss(backend.pid)))
            time.sleep(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    tally, lock = Tally(), threading.Lock()
    started = time.monotonic()
    deadline = started + args.timeout
    threads = [threading.Thread(target=run_client, args=(i, address, args.jobs, args.cancel_rate, args.drop_rate,
                                                         deadline, tally, lock)) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    stop.set()
    sampler.join()
    alive = backend.poll() is None
    backend.terminate()
    backend.wait(timeout=30)
    memory = [m for _, m in samples]
    half = len(memory) // 2
    figures = {
        "clients": args.clients, "jobs": tally.submitted, "done": tally.done,
        "cancelled_by_owner": tally.cancelled_by_owner, "failed": tally.failed, "lost": tally.lost,
        "foreign_messages": tally.foreign, "disconnects": tally.disconnects, "previews_received": tally.previews,
        "seconds": round(seconds, 1), "backend_alive": alive,
        "rss_mb_first_half_peak": round(max(memory[:half] or [0]) / 2**20, 1),
        "rss_mb_second_half_peak": round(max(memory[half:] or [0]) / 2**20, 1),
        "rss_mb_end": round(memory[-1] / 2**20, 1) if memory else 0,
        "backend_log": str(log_path),
    }
    print(json.dumps(figures, indent=2))
    write_json(args.json, figures)
    ok = alive and not tally.failed and not tally.lost and tally.foreign == 0
    ok &= tally.done + tally.cancelled_by_owner == tally.submitted
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
