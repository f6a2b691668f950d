"""``siren-recon batch``: reconstruct a folder (or glob) of point clouds on a running backend.

Up to ``--max-in-flight`` jobs are submitted at once, so a backend with several workers (the Ray
executor) keeps them all busy while this process holds only that many clouds in memory. Each
mesh is written as soon as its job ends, to a temporary name first and then renamed, so an
interrupted batch leaves only whole files; running the same command again skips the inputs whose
mesh exists and does the rest.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from siren_recon.protocol import (
    Error,
    JobAccepted,
    JobCancelled,
    JobDone,
    JobFailed,
    MeshUpdate,
    Progress,
)
from siren_recon.protocol.client import Client, ConnectionEvent

from ..engine.errors import ConfigError, InputError, ReconstructionError
from ..io import CLOUD_FORMATS, MESH_FORMATS, read_cloud, write_mesh
from ..protocol.local_frame import LocalFrame
from .job_overrides import job_overrides

log = logging.getLogger("siren-recon.batch")

EXIT_FAILED = 2
EXIT_INTERRUPTED = 130
CANCEL_WAIT = 3.0
"""Seconds an interrupted batch waits for the backend to confirm its cancels."""

PENDING, RUNNING, DONE, FAILED, CANCELLED, SKIPPED = "pending", "running", "done", "failed", "cancelled", "skipped"


@dataclass
class Item:
    """One input file and what became of it."""

    source: Path
    output: Path
    status: str = PENDING
    points: int = 0
    faces: int = 0
    started: float = 0.0
    seconds: float = 0.0
    error: str = ""
    trimmed: float = 0.0
    """Share of the surface area the backend cut away as unsupported (open scans)."""
    job: str = ""
    final: MeshUpdate | None = None
    frame: LocalFrame | None = None
    """How the cloud was shifted to travel as float32; its mesh is shifted back."""


def find_inputs(spec: str) -> list[Path]:
    """The point clouds ``spec`` names: every cloud file in a folder, or the matches of a glob."""
    path = Path(spec)
    if path.is_dir():
        found = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in CLOUD_FORMATS]
    else:
        found = [Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file()]
    if not found:
        raise InputError(f"no point clouds in {spec!r} (a folder of {', '.join(CLOUD_FORMATS)} files, or a glob)",
                         "no_inputs")
    return sorted(found)


def plan(inputs: list[Path], output_dir: Path, extension: str = "ply") -> list[Item]:
    """One item per input, its mesh ``output_dir/STEM.extension``; two inputs that would write the
    same mesh are refused up front."""
    suffix = "." + extension.lower().lstrip(".")
    if suffix not in MESH_FORMATS:
        raise ConfigError(f"unknown mesh format {extension!r}; use one of {', '.join(f[1:] for f in MESH_FORMATS)}")
    items: list[Item] = []
    by_output: dict[Path, Path] = {}
    for source in inputs:
        output = output_dir / f"{source.stem}{suffix}"
        if output in by_output:
            raise ConfigError(f"{by_output[output]} and {source} would both be written to {output}; rename one")
        by_output[output] = source
        item = Item(source, output)
        if output.exists():
            item.status = SKIPPED
        items.append(item)
    return items


def write_atomically(path: Path, item: Item) -> None:
    """Write the final mesh (coloured when the backend coloured it) under a temporary name in the
    same folder, then rename it into place."""
    if item.final is None:
        raise ReconstructionError(f"the backend finished {item.source.name} without sending its mesh")
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    try:
        vertices = item.frame.to_cloud(item.final.vertices) if item.frame else item.final.vertices
        write_mesh(temporary, vertices, item.final.faces, item.final.colours)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


class Batch:
    """Feeds the items to one backend connection and gathers their results."""

    def __init__(self, items: list[Item], client: Client, overrides: dict[str, Any], max_in_flight: int,
                 bar: tqdm) -> None:
        self.items = items
        self.client = client
        self.overrides = overrides
        self.max_in_flight = max(1, max_in_flight)
        self.bar = bar
        self.todo = [item for item in items if item.status == PENDING]
        self.requests: dict[str, Item] = {}
        """Submitted, not yet accepted: by request msg_id."""
        self.jobs: dict[str, Item] = {}
        """Accepted and not ended: by job id."""

    def in_flight(self) -> int:
        return len(self.requests) + len(self.jobs)

    def run(self) -> None:
        while self.todo or self.in_flight():
            while self.todo and self.in_flight() < self.max_in_flight:
                self._submit(self.todo.pop(0))
            for event in self.client.poll(100):
                self._handle(event)

    def _submit(self, item: Item) -> None:
        try:
            cloud = read_cloud(item.source)
        except ReconstructionError as exc:
            self._end(item, FAILED, str(exc))
            return
        item.points = len(cloud.points)
        item.frame = LocalFrame.of(cloud.points)
        item.started = time.monotonic()
        item.status = RUNNING
        request = self.client.submit(item.frame.to_local(cloud.points), cloud.normals, cloud.colours,
                                     overrides=self.overrides, tag=item.source.name)
        self.requests[request] = item

    def _end(self, item: Item, status: str, error: str = "") -> None:
        item.status = status
        item.error = error
        item.final = None
        if item.started:
            item.seconds = time.monotonic() - item.started
        self.bar.update(1)
        if status != DONE:
            self.bar.write(f"{item.source.name}: {status}{': ' + error if error else ''}", file=sys.stderr)

    def _handle(self, event: Any) -> None:
        if isinstance(event, ConnectionEvent):
            self._link(event)
            return
        if isinstance(event, JobAccepted):
            item = self.requests.pop(event.parent, None)
            if item is not None:
                item.job = event.job
                self.jobs[event.job] = item
            return
        if isinstance(event, Error) and event.parent in self.requests:
            self._end(self.requests.pop(event.parent), FAILED, f"{event.code}: {event.message}")
            return
        item = self.jobs.get(event.job) if event.job else None
        if item is None:
            return
        if isinstance(event, Progress):
            self.bar.set_postfix_str(f"{item.source.name} {event.iteration}/{event.total}", refresh=False)
        elif isinstance(event, MeshUpdate) and event.final:
            item.final = event
        elif isinstance(event, JobDone):
            del self.jobs[event.job]
            item.trimmed = event.stats.get("trimmed_area_share", 0.0) if event.stats.get("trimmed") else 0.0
            try:
                write_atomically(item.output, item)
            except ReconstructionError as exc:
                self._end(item, FAILED, str(exc))
                return
            item.faces = len(item.final.faces) if item.final is not None else 0
            self._end(item, DONE)
        elif isinstance(event, JobFailed):
            del self.jobs[event.job]
            self._end(item, FAILED, f"{event.code}: {event.message}")
        elif isinstance(event, JobCancelled):
            del self.jobs[event.job]
            self._end(item, CANCELLED, event.reason)

    def _link(self, event: ConnectionEvent) -> None:
        if event.kind == "lost":
            self.bar.write(f"backend silent: {event.detail}; waiting for it", file=sys.stderr)
        elif event.kind == "restarted":
            # the old backend took the running jobs with it: submit them again to the new one
            again = self.client.resubmit(list(self.jobs))
            by_old = {item.job: item for item in self.jobs.values()}
            self.jobs.clear()
            for request, old in again.items():
                self.requests[request] = by_old[old]
            self.bar.write(f"backend restarted: submitted {len(again)} jobs again", file=sys.stderr)

    def cancel_outstanding(self) -> None:
        """Cancel every job still running or queued and wait a little for the backend to confirm."""
        for job in list(self.jobs):
            self.client.cancel(job)
        deadline = time.monotonic() + CANCEL_WAIT
        while (self.jobs or self.requests) and time.monotonic() < deadline:
            for event in self.client.poll(100):
                if isinstance(event, JobAccepted) and event.parent in self.requests:
                    self.client.cancel(event.job)  # accepted while we were stopping
                self._handle(event)
        for item in [*self.jobs.values(), *self.requests.values()]:
            self._end(item, CANCELLED, "interrupted")
        self.jobs.clear()
        self.requests.clear()


def print_summary(items: list[Item], stream: TextIO) -> None:
    """A table of every input: name, status, points, faces, trimmed share, seconds, error."""
    header = ("name", "status", "points", "faces", "trimmed", "seconds", "error")
    rows = [
        (item.source.name, item.status, str(item.points or ""), str(item.faces or ""),
         f"{100 * item.trimmed:.1f}%" if item.trimmed else "",
         f"{item.seconds:.1f}" if item.seconds else "", item.error.splitlines()[0] if item.error else "")
        for item in items
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header[:-1])]
    for row in (header, *rows):
        cells = [cell.ljust(width) if i == 0 or i == 1 else cell.rjust(width) for i, (cell, width) in
                 enumerate(zip(row[:-1], widths))]
        print("  ".join([*cells, row[-1]]).rstrip(), file=stream)


def run_batch(args: argparse.Namespace) -> int:
    """The ``batch`` command; 0 when every input has its mesh, 2 when some failed, 130 on Ctrl-C."""
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    items = plan(find_inputs(args.inputs), output_dir, args.format)
    skipped = sum(item.status == SKIPPED for item in items)
    print(f"{len(items)} point clouds, {skipped} skipped (mesh already in {output_dir}), "
          f"{len(items) - skipped} to do on {args.backend}", file=sys.stderr, flush=True)
    overrides = job_overrides(args)
    client = Client(address=args.backend, server_key_file=args.server_key or "", client_key_file=args.client_key or "")
    bar = tqdm(total=len(items) - skipped, unit="job", disable=args.no_progress, file=sys.stderr)
    batch = Batch(items, client, overrides, args.max_in_flight, bar)
    interrupted = False
    try:
        client.connect()
        wait_for_backend(client, args.connect_timeout)
        batch.run()
    except KeyboardInterrupt:
        interrupted = True
        bar.write("interrupted: cancelling the outstanding jobs", file=sys.stderr)
        batch.cancel_outstanding()
    finally:
        bar.close()
        client.close()
    print_summary(items, sys.stderr)
    done = sum(item.status == DONE for item in items)
    print(f"{done} done, {skipped} skipped, {len(items) - done - skipped} not done", file=sys.stderr)
    if interrupted:
        return EXIT_INTERRUPTED
    return 0 if all(item.status in (DONE, SKIPPED) for item in items) else EXIT_FAILED


def wait_for_backend(client: Client, timeout: float) -> None:
    """Wait for the backend's welcome, so a wrong address fails in seconds rather than hanging."""
    deadline = time.monotonic() + timeout
    while client.welcome is None:
        if time.monotonic() > deadline:
            raise ReconstructionError(f"no backend answered at {client.address} within {timeout:g} s")
        client.poll(100)
