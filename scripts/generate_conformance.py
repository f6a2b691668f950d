#!/usr/bin/env python3
"""Write the conformance vectors of the wire protocol (``protocol/conformance/``) from the codec.

Each case is a folder holding the frames a client sends, byte for byte (frame 0 as
``stepN.frame0.msgpack``, array frames as ``stepN.frameM.bin``), and ``case.json``: for each
step, the frames to send and the replies to expect (type, parent rule, job rule, body fields).
``backend.json`` holds the ``serve`` flags the backend must run with. How to replay them is in
``protocol/README.md`` ("Conformance vectors"). With ``--check`` nothing is written and the exit
status is 1 when the committed vectors differ from what this script makes.

    python scripts/generate_conformance.py          # rewrite protocol/conformance/
    python scripts/generate_conformance.py --check  # 1 if the committed vectors are stale
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from siren_recon.protocol import (
    CancelJob,
    FetchResult,
    GetSettings,
    Hello,
    ListJobs,
    MeshUpdate,
    Ping,
    Pong,
    SubmitJob,
    Welcome,
    encode,
)
from siren_recon.protocol.messages import Message

FOLDER = Path(__file__).resolve().parents[1] / "protocol" / "conformance"
BACKEND = {
    "serve_flags": ["--device", "cpu", "--max-message-mb", "0.0625", "--max-points", "1000",
                    "--max-queued-jobs", "2"],
    "also": "--results-dir (any empty folder) so that fetch_result finds kept results",
}
"""How the backend under test runs: small limits, so the limit vectors stay small files."""
DELETE = object()
"""A value in :func:`tampered` changes that removes the key."""
TINY = {
    "model.hidden_features": 16, "model.hidden_layers": 1, "model.init": "sphere",
    "sampling.surface_points": 300, "sampling.box_points": 300, "sampling.near_points": 100,
    "train.iterations": 30, "train.progress_every": 10, "train.lr_decay_final": 1, "train.compile": "off",
    "mesh.resolution": 16, "preview.enabled": False,
}
"""A job that trains in about a second on a CPU (``train.lr_decay_final`` is an int for a float)."""
LONG = {**TINY, "train.iterations": 10_000_000}
"""A job that runs until it is cancelled."""
JOB_SKIP = ["progress", "mesh_update"]
"""Replies a step about a running job lets pass between the expected ones (progress, previews)."""

Files = dict[str, bytes]


def sphere(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` points on the unit sphere and their normals, float32."""
    normals = np.random.default_rng(seed).normal(size=(count, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return normals.astype(np.float32), normals.astype(np.float32)


def wire(message: Message) -> list[bytes]:
    """The frames of ``message`` as bytes."""
    return [bytes(frame) for frame in encode(message)]


def tampered(message: Message, **changes: Any) -> list[bytes]:
    """The frames of ``message`` with keys of frame 0 changed (``body__tag`` reaches into the body,
    ``arrays__0__dtype`` into the first array entry; :data:`DELETE` removes a key)."""
    frames = wire(message)
    head = msgpack.unpackb(frames[0], raw=False)
    for key, value in changes.items():
        target = head
        *path, last = key.split("__")
        for part in path:
            target = target[int(part)] if isinstance(target, list) else target[part]
        index: Any = int(last) if isinstance(target, list) else last
        if value is DELETE:
            del target[index]
        else:
            target[index] = value
    return [msgpack.packb(head, use_bin_type=True), *frames[1:]]


def reply(kind: str, parent: str = "request", job: str = "any", **body: Any) -> dict[str, Any]:
    """One expected reply: its ``type``, its ``parent`` and ``job`` rules, and body fields to equal."""
    return {"type": kind, "parent": parent, "job": job, **body}


def refused(code: str, parent: str = "request") -> dict[str, Any]:
    """The ``error`` refusing a request with ``code``."""
    return reply("error", parent, code=code)


def step(frames: list[bytes], msg_id: str, expect: list[dict[str, Any]], job_from_step: int | None = None,
         skip: list[str] | None = None, timeout_s: float = 10.0) -> dict[str, Any]:
    """One request and the replies it gets."""
    return {"frames": frames, "msg_id": msg_id, "job_from_step": job_from_step, "skip": skip or [],
            "timeout_s": timeout_s, "expect": expect}


def single(frames: list[bytes], msg_id: str, code: str, about: str) -> dict[str, Any]:
    """A case of one refused request."""
    return {"about": about, "steps": [step(frames, msg_id, [refused(code, "request" if msg_id else "empty")])]}


def cases() -> dict[str, dict[str, Any]]:
    """Every case by folder name, in replay order."""
    points, normals = sphere(200)
    submit = SubmitJob(msg_id="submit", tag="t", points=points, normals=normals, overrides=TINY)
    out: dict[str, dict[str, Any]] = {}
    out["hello"] = {"about": "hello is answered by welcome", "steps": [
        step(wire(Hello(msg_id="hello", client_name="conformance", client_version="1")), "hello",
             [reply("welcome", job="empty")])]}
    out["get-settings"] = {"about": "get_settings is answered by settings (1.2)", "steps": [
        step(wire(GetSettings(msg_id="settings")), "settings", [reply("settings", job="empty")])]}
    out["ping"] = {"about": "ping is answered by pong", "steps": [
        step(wire(Ping(msg_id="ping")), "ping", [reply("pong", job="empty")])]}
    out["list-jobs-empty"] = {"about": "a new client has no jobs", "steps": [
        step(wire(ListJobs(msg_id="list")), "list", [reply("job_list", job="empty", jobs=[])])]}
    out["job-happy-path"] = {
        "about": "a tiny job runs to job_done; its kept result is fetched; cancelling it then is job_finished",
        "steps": [
            step(wire(submit), "submit", [
                reply("job_accepted", tag="t"),
                reply("mesh_update", parent="empty", job="accepted", final=True, iteration=30, resolution=16),
                reply("job_done", parent="empty", job="accepted", mode="oriented"),
            ], skip=JOB_SKIP, timeout_s=300),
            step(wire(FetchResult(msg_id="fetch", job="")), "fetch", [
                reply("mesh_update", job="sent", final=True, iteration=30, resolution=16),
                reply("job_done", job="sent", mode="oriented"),
            ], job_from_step=0),
            step(wire(CancelJob(msg_id="late-cancel", job="")), "late-cancel",
                 [reply("error", job="sent", code="job_finished")], job_from_step=0),
        ],
    }
    long_job = SubmitJob(msg_id="long-0", tag="long", points=points, normals=normals, overrides=LONG)
    out["cancel-and-queue"] = {
        "about": "a second job waits at queue_position 1, a third is over --max-queued-jobs; each cancel_job is "
                 "answered by job_cancelled naming it, for the queued job and for the running one",
        "steps": [
            step(wire(long_job), "long-0", [reply("job_accepted")], skip=["progress"]),
            step(wire(SubmitJob(msg_id="long-1", tag="long", points=points, normals=normals, overrides=LONG)),
                 "long-1", [reply("job_accepted", queue_position=1)], skip=["progress"]),
            step(wire(SubmitJob(msg_id="long-2", tag="long", points=points, normals=normals, overrides=LONG)),
                 "long-2", [refused("too_many_jobs")], skip=["progress"]),
            step(wire(CancelJob(msg_id="cancel-queued", job="")), "cancel-queued",
                 [reply("job_cancelled", job="sent")], job_from_step=1, skip=["progress"]),
            step(wire(CancelJob(msg_id="cancel-running", job="")), "cancel-running",
                 [reply("job_cancelled", job="sent")], job_from_step=0, skip=["progress"], timeout_s=30),
        ],
    }
    out["job-failed-missing-normals"] = {"about": "mode oriented without normals fails as a job", "steps": [
        step(wire(SubmitJob(msg_id="submit", points=points, overrides={**TINY, "mode": "oriented"})), "submit",
             [reply("job_accepted"), reply("job_failed", parent="empty", job="accepted", code="missing_normals")],
             skip=JOB_SKIP, timeout_s=120)]}
    out["job-failed-no-surface"] = {"about": "a job whose mesh is trimmed away entirely fails with no_surface",
                                    "steps": [
        step(wire(SubmitJob(msg_id="submit", points=points, normals=normals,
                            overrides={**TINY, "mesh.trim": "distance", "mesh.trim_distance": 1e-9})), "submit",
             [reply("job_accepted"), reply("job_failed", parent="empty", job="accepted", code="no_surface")],
             skip=JOB_SKIP, timeout_s=300)]}
    out.update(refusals(submit, points, normals))
    return {f"{i:02d}-{name}": case for i, (name, case) in enumerate(out.items(), start=1)}


def refusals(submit: SubmitJob, points: np.ndarray, normals: np.ndarray) -> dict[str, dict[str, Any]]:
    """One case per way a request is refused, each code of the spec at least once."""
    frames = wire(submit)
    nan = points.copy()
    nan[3, 1] = np.nan
    zero = normals.copy()
    zero[7] = 0.0
    line = np.zeros((50, 3), np.float32)
    line[:, 0] = np.linspace(0, 1, 50)
    big = sphere(6000)[0]
    ext_head = msgpack.unpackb(frames[0], raw=False)
    ext_head["body"] = msgpack.ExtType(1, b"\x80\x04")
    mesh = MeshUpdate(msg_id="mesh", vertices=np.eye(3, dtype=np.float32), faces=np.array([[0, 1, 2]], np.uint32))
    mesh_frames = wire(mesh)
    mesh_frames[2] = np.array([[0, 1, 3]], "<u4").tobytes()

    def with_overrides(name: str, overrides: dict[str, Any]) -> list[bytes]:
        return wire(SubmitJob(msg_id=name, points=points, normals=normals, overrides={**TINY, **overrides}))

    table: list[tuple[str, list[bytes], str, str, str]] = [
        ("malformed-not-msgpack", [b"\xc1\xc1 not msgpack"], "", "malformed", "frame 0 is not msgpack"),
        ("malformed-not-a-map", [msgpack.packb([1, 2, 3])], "", "malformed", "frame 0 is a list"),
        ("malformed-extension-type", [msgpack.packb(ext_head, use_bin_type=True), *frames[1:]], "", "malformed",
         "frame 0 holds a msgpack extension type (it cannot be read, so the parent is empty)"),
        ("malformed-frame-count", frames[:2], "submit", "malformed", "two arrays declared, one array frame sent"),
        ("unsupported-version", tampered(Ping(msg_id="ping"), v="2.0"), "ping", "unsupported_version",
         "another major version"),
        ("bad-version-text", tampered(Ping(msg_id="ping"), v="banana"), "ping", "bad_version",
         "a version not of the form MAJOR.MINOR"),
        ("bad-version-number", tampered(Ping(msg_id="ping"), v=1.2), "ping", "bad_version",
         "a version that is a number, not a string"),
        ("unknown-type", tampered(Ping(msg_id="ping"), type="frobnicate"), "ping", "unknown_type",
         "a type the protocol does not have"),
        *[(f"missing-header-{key.replace('_', '-')}", tampered(submit, **{key: DELETE}),
           "" if key == "msg_id" else "submit", "missing_field", f"header key {key!r} left out")
          for key in ("v", "type", "msg_id", "session", "job", "parent", "body", "arrays")],
        ("missing-body-field", tampered(submit, body__tag=DELETE), "submit", "missing_field",
         "body field 'tag' left out"),
        ("missing-required-array", [tampered(submit, arrays=[])[0]], "submit", "missing_field",
         "no points array"),
        ("bad-field-type-body", tampered(submit, body__detached="no"), "submit", "bad_field_type",
         "detached is a string"),
        ("bad-field-type-msg-id", tampered(Ping(msg_id="ping"), msg_id=7), "", "bad_field_type",
         "msg_id is an integer (so the parent is empty)"),
        ("bad-field-type-array-name", tampered(submit, arrays__0__name="pointz"), "submit", "bad_field_type",
         "an array the message does not have"),
        ("bad-field-type-override", tampered(submit, body__overrides={"train.iterations": [1]}), "submit",
         "bad_field_type", "an override value that is a list"),
        ("bad-dtype", tampered(submit, arrays__0__dtype="float64"), "submit", "bad_dtype", "points as float64"),
        ("bad-shape-columns", tampered(submit, arrays__0__shape=[150, 4]), "submit", "bad_shape",
         "points with 4 columns"),
        ("bad-shape-rows", [tampered(submit, arrays__1__shape=[10, 3])[0], frames[1], normals[:10].tobytes()],
         "submit", "bad_shape",
         "fewer normals than points (declared and sent alike)"),
        ("buffer-length", [frames[0], frames[1][:-4], frames[2]], "submit", "buffer_length",
         "points frame 4 bytes short"),
        ("non-finite", [frames[0], nan.tobytes(), frames[2]], "submit", "non_finite", "a NaN coordinate"),
        ("index-out-of-range", mesh_frames, "mesh", "index_out_of_range",
         "a mesh_update (checked before it is refused as unexpected) whose face names vertex 3 of 3"),
        ("too-large", wire(SubmitJob(msg_id="submit", points=big)), "submit", "too_large",
         "72 kB over --max-message-mb 0.0625"),
        ("bad-config-unknown-key", with_overrides("submit", {"resolution": 64}), "submit", "bad_config",
         "an unknown key (the message names mesh.resolution)"),
        ("bad-config-bool-for-int", with_overrides("submit", {"train.iterations": True}), "submit", "bad_config",
         "a boolean for an integer"),
        ("bad-config-float-for-int", with_overrides("submit", {"train.iterations": 500.0}), "submit",
         "bad_config", "a float for an integer, even a whole one"),
        ("bad-config-out-of-range", with_overrides("submit", {"mesh.resolution": 4}), "submit", "bad_config",
         "mesh.resolution below its range [8, 2048]"),
        ("bad-config-choice", with_overrides("submit", {"mode": "sideways"}), "submit", "bad_config",
         "a mode not among the choices"),
        ("empty-cloud", wire(SubmitJob(msg_id="submit", points=np.zeros((0, 3), np.float32))), "submit",
         "empty_cloud", "no points"),
        ("too-few-points", wire(SubmitJob(msg_id="submit", points=points[:5])), "submit", "too_few_points",
         "5 points"),
        ("degenerate-cloud", wire(SubmitJob(msg_id="submit", points=line)), "submit", "degenerate_cloud",
         "points on a line"),
        ("zero-normals", wire(SubmitJob(msg_id="submit", points=points, normals=zero)), "submit", "zero_normals",
         "a normal of length 0"),
        ("too-many-points", wire(SubmitJob(msg_id="submit", points=sphere(1001)[0])), "submit",
         "too_many_points", "1001 points over --max-points 1000"),
        ("unknown-job-cancel", wire(CancelJob(msg_id="cancel", job="nope")), "cancel", "unknown_job",
         "cancel of a job that never existed"),
        ("unknown-job-fetch", wire(FetchResult(msg_id="fetch", job="0" * 32)), "fetch", "unknown_job",
         "fetch of a result that never existed"),
        ("unexpected-message-pong", wire(Pong(msg_id="pong")), "pong", "unexpected_message",
         "a backend-to-client message sent to the backend"),
        ("unexpected-message-welcome", wire(Welcome(msg_id="welcome")), "welcome", "unexpected_message",
         "a welcome sent to the backend"),
    ]
    return {name: single(sent, msg_id, code, about) for name, sent, msg_id, code, about in table}


def render(all_cases: dict[str, dict[str, Any]]) -> Files:
    """Every file of the vectors folder, by path relative to it."""
    files: Files = {"backend.json": (json.dumps(BACKEND, indent=2) + "\n").encode()}
    for name, case in all_cases.items():
        steps = []
        for index, spec in enumerate(case["steps"]):
            names = []
            for frame_index, frame in enumerate(spec["frames"]):
                file = f"step{index}.frame{frame_index}.{'msgpack' if frame_index == 0 else 'bin'}"
                files[f"{name}/{file}"] = frame
                names.append(file)
            steps.append({**spec, "frames": names})
        files[f"{name}/case.json"] = (json.dumps({"about": case["about"], "steps": steps}, indent=2) + "\n").encode()
    return files


def on_disk(folder: Path = FOLDER) -> Files:
    """The files now in ``folder``, by relative path."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed vectors are stale")
    args = parser.parse_args(argv)
    files = render(cases())
    if args.check:
        stale = files != on_disk()
        if stale:
            print(f"{FOLDER} is stale: run scripts/generate_conformance.py", file=sys.stderr)
        return 1 if stale else 0
    if FOLDER.exists():
        shutil.rmtree(FOLDER)
    for path, data in files.items():
        target = FOLDER / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
