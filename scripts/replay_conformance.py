#!/usr/bin/env python3
"""Replay the conformance vectors of ``protocol/conformance/`` against a running backend.

A reference for other clients: it uses plain ZeroMQ and msgpack, not this project's codec, and
follows the replay rules of ``protocol/README.md`` ("Conformance vectors") step by step. The
backend must run with the flags in ``backend.json``.

    siren-recon serve --device cpu --max-message-mb 0.0625 --max-points 1000 --max-queued-jobs 2 \\
        --results-dir /tmp/results &
    python scripts/replay_conformance.py tcp://127.0.0.1:5555
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import zmq

FOLDER = Path(__file__).resolve().parents[1] / "protocol" / "conformance"
HEARTBEAT = 1.0
"""Seconds between the pings a replaying client sends while it waits (the protocol's heartbeat)."""
HEARTBEAT_ID = "heartbeat-"
"""Prefix of those pings' ``msg_id``; their ``pong`` replies are passed over."""


class Mismatch(AssertionError):
    """A reply that is not the one a case expects, or none in time."""


def case_names(folder: Path = FOLDER) -> list[str]:
    """The cases, in replay order (their folder names sort so)."""
    return sorted(p.name for p in folder.iterdir() if (p / "case.json").is_file())


def replay_case(address: str, case_dir: Path, context: zmq.Context | None = None) -> list[dict[str, Any]]:
    """Run one case on a new DEALER (its own routing id); return every reply seen. Raise
    :class:`Mismatch` at the first reply that breaks the case."""
    case = json.loads((case_dir / "case.json").read_text())
    sock = (context or zmq.Context.instance()).socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTING_ID, os.urandom(16))
    sock.connect(address)
    accepted: dict[int, str] = {}
    seen: list[dict[str, Any]] = []
    try:
        for index, step in enumerate(case["steps"]):
            frames = [(case_dir / name).read_bytes() for name in step["frames"]]
            if step["job_from_step"] is not None:
                head = msgpack.unpackb(frames[0], raw=False)
                head["job"] = accepted[step["job_from_step"]]
                frames[0] = msgpack.packb(head, use_bin_type=True)
            sent_job = msgpack.unpackb(frames[0], raw=False).get("job", "") if step["job_from_step"] is not None else ""
            sock.send_multipart(frames)
            context_ids = {"request": step["msg_id"], "sent": sent_job, "accepted": ""}
            deadline = time.monotonic() + step["timeout_s"]
            for expected in step["expect"]:
                while True:
                    head = _next_reply(sock, deadline, f"{case_dir.name} step {index}: waiting for {expected}")
                    seen.append(head)
                    if _matches(head, expected, context_ids):
                        break
                    if head.get("type") in step["skip"] or _is_heartbeat(head):
                        continue
                    raise Mismatch(f"{case_dir.name} step {index}: expected {expected}, got {_summary(head)}")
                if head["type"] == "job_accepted":
                    context_ids["accepted"] = head["job"]
                    accepted[index] = head["job"]
    finally:
        sock.close()
    return seen


def _next_reply(sock: Any, deadline: float, waiting: str) -> dict[str, Any]:
    """Frame 0 of the next message, as a map; a ping goes out each second of the wait."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Mismatch(f"timed out {waiting}")
        if sock.poll(int(min(remaining, HEARTBEAT) * 1000)):
            break
        _ping(sock)
    head = msgpack.unpackb(sock.recv_multipart()[0], raw=False)
    if not isinstance(head, dict):
        raise Mismatch(f"a reply's frame 0 is not a map: {head!r}")
    return head


def _ping(sock: Any) -> None:
    """Send the heartbeat: a ``ping`` whose ``msg_id`` marks it as the replayer's own."""
    head = {"v": "1.2", "type": "ping", "msg_id": f"{HEARTBEAT_ID}{time.monotonic_ns()}", "session": "",
            "job": "", "parent": "", "body": {}, "arrays": []}
    sock.send_multipart([msgpack.packb(head, use_bin_type=True)])


def _is_heartbeat(head: dict[str, Any]) -> bool:
    """Whether ``head`` is the ``pong`` to one of the replayer's heartbeat pings."""
    return head.get("type") == "pong" and str(head.get("parent", "")).startswith(HEARTBEAT_ID)


def _matches(head: dict[str, Any], expected: dict[str, Any], ids: dict[str, str]) -> bool:
    """Whether ``head`` is the ``expected`` reply: its type, parent and job rules and body fields."""
    if head.get("type") != expected["type"]:
        return False
    rules = {"parent": expected["parent"], "job": expected["job"]}
    for key, rule in rules.items():
        if rule == "any":
            continue
        want = "" if rule == "empty" else ids[rule]
        if head.get(key) != want:
            return False
    body = head.get("body", {})
    return all(body.get(key) == value for key, value in expected.items() if key not in ("type", "parent", "job"))


def _summary(head: dict[str, Any]) -> str:
    body = head.get("body", {})
    fields = {k: v for k, v in body.items() if isinstance(v, (str, int, float, bool))}
    return f"{head.get('type')} parent={head.get('parent')!r} job={head.get('job')!r} {fields}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", help="the backend's endpoint, e.g. tcp://127.0.0.1:5555")
    parser.add_argument("--folder", type=Path, default=FOLDER)
    args = parser.parse_args(argv)
    failed = 0
    for name in case_names(args.folder):
        try:
            replay_case(args.address, args.folder / name)
            print(f"ok    {name}")
        except Mismatch as exc:
            failed += 1
            print(f"FAIL  {name}: {exc}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
