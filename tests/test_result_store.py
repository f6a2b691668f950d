"""The on-disk store of finished meshes: bounded by size and age, owner-checked, no pickle."""

from __future__ import annotations

import os
import time

import numpy as np

from siren_recon.server.results import ResultStore, StoredResult


def result(job: str, owner: str = "alice", faces: int = 1000) -> StoredResult:
    rng = np.random.default_rng(len(job))
    return StoredResult(
        job=job, owner=owner, tag="t", mode="oriented", stats={"faces": float(faces)}, timings={"train": 1.0},
        vertices=rng.normal(size=(faces, 3)).astype(np.float32),
        faces=rng.integers(0, faces, size=(faces, 3)).astype(np.uint32), colours=None, finished=time.time(),
    )


def test_a_kept_result_comes_back_only_to_its_owner(tmp_path):
    store = ResultStore(tmp_path, max_bytes=10**8, max_age=3600)
    kept = result("a" * 32)
    store.save(kept)
    loaded = store.load("a" * 32, "alice")
    assert loaded is not None and np.array_equal(loaded.vertices, kept.vertices)
    assert np.array_equal(loaded.faces, kept.faces) and loaded.stats == kept.stats
    assert store.load("a" * 32, "mallory") is None
    assert store.load("../../etc/passwd", "alice") is None  # ids are checked before any path is made
    assert not list(tmp_path.glob("*.tmp.*"))


def test_the_oldest_results_go_first_when_the_folder_is_full(tmp_path):
    one = len(np.zeros((1000, 3), np.float32).tobytes()) * 2
    store = ResultStore(tmp_path, max_bytes=int(3.5 * one), max_age=3600)
    for index in range(6):
        store.save(result(f"{index:032x}"))
        time.sleep(0.02)
    kept = [i for i in range(6) if store.load(f"{i:032x}", "alice") is not None]
    assert kept == [3, 4, 5] and store.size() <= 3.5 * one


def test_expired_results_are_deleted(tmp_path):
    store = ResultStore(tmp_path, max_bytes=10**8, max_age=60)
    store.save(result("b" * 32))
    old = time.time() - 120
    for path in tmp_path.iterdir():
        os.utime(path, (old, old))
    store.prune()
    assert store.load("b" * 32, "alice") is None and not list(tmp_path.iterdir())


def test_a_pickled_array_file_is_refused(tmp_path):
    store = ResultStore(tmp_path, max_bytes=10**8, max_age=3600)
    store.save(result("c" * 32))
    np.savez(tmp_path / ("c" * 32 + ".npz"), vertices=np.array([object()], dtype=object), faces=np.zeros((1, 3)))
    assert store.load("c" * 32, "alice") is None


def test_the_final_meshes_iteration_and_resolution_are_kept(tmp_path):
    import dataclasses
    import json

    store = ResultStore(tmp_path, max_bytes=10**8, max_age=3600)
    store.save(dataclasses.replace(result("b" * 32), iteration=200, resolution=64))
    loaded = store.load("b" * 32, "alice")
    assert loaded is not None and (loaded.iteration, loaded.resolution) == (200, 64)
    # a result filed by a 1.1 backend has neither: the iterations from its stats, resolution 0 (unknown)
    meta = tmp_path / f"{'b' * 32}.json"
    info = json.loads(meta.read_text())
    del info["iteration"], info["resolution"]
    info["stats"]["iterations"] = 150.0
    meta.write_text(json.dumps(info))
    old = store.load("b" * 32, "alice")
    assert old is not None and (old.iteration, old.resolution) == (150, 0)
