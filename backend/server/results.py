"""Finished meshes kept on disk, so a client that drops and comes back still gets its result.

Each result is two files in the store's folder: ``JOB.npz`` (vertices, faces, colours; written
with NumPy's own format and read back with ``allow_pickle=False``) and ``JOB.json`` (owner,
mode, stats, timings). Both are written under a temporary name and renamed, so a crash leaves
no half-written result. The folder is bounded by total size and by age; the oldest go first.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

JOB_ID = re.compile(r"^[0-9a-f]{8,64}$")


@dataclass
class StoredResult:
    job: str
    owner: str
    """Who may fetch it: the client's CURVE public key, or its routing id without CURVE."""
    tag: str
    mode: str
    stats: dict[str, float]
    timings: dict[str, float]
    vertices: np.ndarray
    faces: np.ndarray
    colours: np.ndarray | None
    finished: float
    """Wall-clock time (seconds since the epoch) the job ended."""
    iteration: int = 0
    """Training iteration of the final mesh (the job's last)."""
    resolution: int = 0
    """Grid resolution the final mesh was extracted at (0: unknown, a result filed before it was kept)."""


class ResultStore:
    """A folder of results bounded by ``max_bytes`` and ``max_age`` seconds (thread-safe)."""

    def __init__(self, folder: str | Path, max_bytes: int, max_age: float) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._lock = threading.Lock()
        self.prune()

    def _paths(self, job: str) -> tuple[Path, Path]:
        if not JOB_ID.match(job):
            raise KeyError(job)
        return self.folder / f"{job}.npz", self.folder / f"{job}.json"

    def save(self, result: StoredResult) -> None:
        arrays, meta = self._paths(result.job)
        payload = {"vertices": np.asarray(result.vertices, np.float32), "faces": np.asarray(result.faces, np.uint32)}
        if result.colours is not None:
            payload["colours"] = np.asarray(result.colours, np.float32)
        with self._lock:
            tmp = arrays.with_suffix(".tmp.npz")
            np.savez(tmp, **payload)
            os.replace(tmp, arrays)
            info = {
                "job": result.job, "owner": result.owner, "tag": result.tag, "mode": result.mode,
                "stats": result.stats, "timings": result.timings, "finished": result.finished,
                "iteration": result.iteration, "resolution": result.resolution,
            }
            tmp_meta = meta.with_suffix(".tmp.json")
            tmp_meta.write_text(json.dumps(info))
            os.replace(tmp_meta, meta)
        self.prune()

    def load(self, job: str, owner: str) -> StoredResult | None:
        """The result of ``job`` if it exists, has not expired and belongs to ``owner``."""
        try:
            arrays, meta = self._paths(job)
        except KeyError:
            return None
        with self._lock:
            try:
                info = json.loads(meta.read_text())
                if info.get("owner") != owner or time.time() - float(info["finished"]) > self.max_age:
                    return None
                with np.load(arrays, allow_pickle=False) as data:
                    vertices, faces = data["vertices"].copy(), data["faces"].copy()
                    colours = data["colours"].copy() if "colours" in data.files else None
            except (OSError, ValueError, KeyError) as exc:
                log.warning("result %s unreadable: %s", job, exc)
                return None
        return StoredResult(
            job=job, owner=owner, tag=str(info.get("tag", "")), mode=str(info.get("mode", "")),
            stats={k: float(v) for k, v in info.get("stats", {}).items()},
            timings={k: float(v) for k, v in info.get("timings", {}).items()},
            vertices=vertices, faces=faces, colours=colours, finished=float(info["finished"]),
            iteration=int(info.get("iteration", info.get("stats", {}).get("iterations", 0))),
            resolution=int(info.get("resolution", 0)),
        )

    def prune(self) -> None:
        """Delete expired results, then the oldest until the folder fits ``max_bytes``."""
        with self._lock:
            entries = []
            now = time.time()
            for meta in self.folder.glob("*.json"):
                arrays = meta.with_suffix(".npz")
                try:
                    stamp = meta.stat().st_mtime
                    size = meta.stat().st_size + (arrays.stat().st_size if arrays.exists() else 0)
                except OSError:
                    continue
                if now - stamp > self.max_age or not arrays.exists():
                    self._delete(meta)
                else:
                    entries.append((stamp, size, meta))
            total = sum(size for _, size, _ in entries)
            for _, size, meta in sorted(entries):
                if total <= self.max_bytes:
                    break
                self._delete(meta)
                total -= size
            for stale in self.folder.glob("*.tmp.*"):
                if now - stale.stat().st_mtime > 3600:
                    stale.unlink(missing_ok=True)

    def _delete(self, meta: Path) -> None:
        meta.with_suffix(".npz").unlink(missing_ok=True)
        meta.unlink(missing_ok=True)

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())
