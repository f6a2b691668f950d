"""The add-on's link to a backend and the state of its jobs, in plain Python (no bpy).

Blender's UI calls :meth:`Session.tick` from a timer; it drains the client without blocking
(within a time budget) and records, per job, the newest mesh still to be shown. The bpy side
only reads this state and copies meshes into preview objects.
"""

from __future__ import annotations

import math
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from .link_checks import LinkError, check_link
from .protocol import (
    Error,
    JobAccepted,
    JobCancelled,
    JobDone,
    JobFailed,
    MeshUpdate,
    Progress,
    ProtocolError,
)
from .protocol.client import Client, ConnectionEvent, NotSent
from .protocol.errors import SecurityError

ACTIVE = ("preparing", "submitting", "queued", "running", "fetching", "cancelling")
FINISHED = ("done", "failed", "cancelled")
"""Ends that :meth:`Session.clear_finished` clears (``interrupted`` jobs stay: they can be resubmitted)."""
LINK_DOWN = ("disconnected", "unreachable", "exited", "invalid")
"""Session states in which nothing can be sent."""

Arrays = tuple[np.ndarray, np.ndarray | None, np.ndarray | None]
"""Points, normals (or ``None``) and colours (or ``None``) ready to send."""


def trim_note(stats: dict[str, float]) -> str:
    """``, open: trimmed 38%`` when the backend cut unsupported surface away, else nothing."""
    if stats.get("trimmed"):
        return f", open: trimmed {100 * stats.get('trimmed_area_share', 0.0):.0f}%"
    return ""


@dataclass
class JobState:
    """One reconstruction as the add-on sees it."""

    request: str
    """``msg_id`` of the submit: the key until the backend names the job."""
    source: str
    """Name of the source object."""
    preview: str
    """Name of the preview object (``<source>_siren``)."""
    job: str = ""
    status: str = "submitting"
    """``preparing`` (its arrays are being made off the UI thread), ``submitting``, ``queued``,
    ``running``, ``fetching`` (a kept result asked for again), ``cancelling`` (asked to stop),
    ``done``, ``failed``, ``cancelled`` or ``interrupted`` (its backend restarted: resubmittable)."""
    iteration: int = 0
    total: int = 0
    loss: float = math.nan
    eta: float = 0.0
    mode: str = ""
    tile: int = 0
    """The tile being trained (from 1) in a tiled job; 0 otherwise."""
    tiles: int = 0
    """How many tiles a tiled job trains; 0 when it is one field."""
    message: str = ""
    pending_mesh: MeshUpdate | None = field(default=None, repr=False)
    """The newest mesh not yet copied into the preview (older ones are dropped)."""
    shown_iteration: int = -1

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def describe(self) -> str:
        if self.status == "running" and self.total:
            loss = "" if math.isnan(self.loss) else f", loss {self.loss:.3g}"
            tile = f"tile {self.tile} of {self.tiles}, " if self.tiles else ""
            return f"{tile}{self.iteration}/{self.total}{loss}, ETA {self.eta:.0f} s ({self.mode})"
        return self.message or self.status


@dataclass
class Session:
    """A connection to one backend address and the jobs sent through it."""

    address: str
    connect_timeout: float = 3.0
    heartbeat_timeout: float = 5.0
    server_key_file: str = ""
    """The backend's public key file for a CURVE backend (a file, never stored in the .blend)."""
    client_key_file: str = ""
    """This user's secret key file, when the backend only lets listed keys in."""
    status: str = "disconnected"
    """``disconnected``, ``invalid`` (a bad address or key file), ``connecting``, ``connected``,
    ``unreachable``, ``lost`` or ``exited`` (the local backend process ended)."""
    message: str = ""
    device: str = ""
    jobs: dict[str, JobState] = field(default_factory=dict)
    client: Client | None = None
    _connect_started: float = 0.0
    _prepared: queue.SimpleQueue = field(default_factory=queue.SimpleQueue, repr=False)
    """``(job, arrays or the exception that stopped them, overrides)`` from preparing threads."""
    _ready: list = field(default_factory=list, repr=False)
    """Prepared clouds waiting for the welcome (a local backend still loading)."""
    _fetches: list = field(default_factory=list, repr=False)
    """Fetches asked for before the welcome."""

    def connect(self) -> None:
        """Start connecting; returns at once (see :meth:`wait_connected`).

        Raises :class:`LinkError` (one line, also the session's message) for an address or key
        file that cannot be used; the session then stays unconnected, and may be tried again.
        """
        if self.client is not None:
            if self.status in ("unreachable", "exited", "lost"):  # asked again: wait again (ZeroMQ keeps trying)
                self.status, self.message = "connecting", f"connecting to {self.address}"
                self._connect_started = time.monotonic()
            return
        client = Client(address=self.address.strip(), client_name="siren-recon-blender",
                        heartbeat_timeout=self.heartbeat_timeout, server_key_file=self.server_key_file,
                        client_key_file=self.client_key_file)
        try:
            check_link(self.address, self.server_key_file, self.client_key_file)
            try:
                client.connect()
            except (zmq.ZMQError, SecurityError, OSError) as exc:
                client.close()
                raise LinkError(f"cannot connect to {self.address}: {exc}") from None
        except LinkError as exc:
            self.status, self.message = "invalid", str(exc)
            raise
        self.client = client
        self.status, self.message = "connecting", f"connecting to {self.address}"
        self._connect_started = time.monotonic()

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block at most ``timeout`` seconds (default ``connect_timeout``) for the welcome."""
        self.connect()
        deadline = time.monotonic() + (self.connect_timeout if timeout is None else timeout)
        while self.status == "connecting" and time.monotonic() < deadline:
            self.tick(budget=0.05, wait_ms=20)
        if self.status == "connecting":
            self._unreachable()
        return self.status == "connected"

    def _unreachable(self) -> None:
        self.status = "unreachable"
        self.message = f"no backend answers at {self.address} (started? address right?)"

    def disconnect(self, reason: str = "disconnected") -> None:
        """Cancel this session's active jobs and close the socket."""
        if self.client is not None:
            for job in self.jobs.values():
                if job.active and job.job:
                    self.client.cancel(job.job)
            self.client.close()
            self.client = None
        for job in self.jobs.values():
            if job.active:
                job.status, job.message = "cancelled", reason
        self._ready.clear()
        self._fetches.clear()
        self.status, self.message = "disconnected", reason

    def backend_gone(self, reason: str) -> None:
        """The local backend process ended: the jobs it had accepted become ``interrupted`` (their
        clouds are kept: :meth:`resubmit` sends them to the backend started again at the same
        address), the others fail with ``reason``. The socket stays open for that new backend."""
        unfinished = self.client.unfinished if self.client is not None else {}
        for job in self.jobs.values():
            if job.active and job.job in unfinished:
                job.status, job.message = "interrupted", "the local backend ended: Resubmit runs it again"
            elif job.active:
                job.status, job.message = "failed", reason
        self._ready.clear()
        self._fetches.clear()
        self.status, self.message = "exited", reason

    def submit(self, source: str, points: np.ndarray, normals: np.ndarray | None, colours: np.ndarray | None,
               overrides: dict[str, Any]) -> JobState:
        if self.client is None:
            raise RuntimeError("not connected")
        request = self.client.submit(points, normals, colours, overrides, tag=source)
        state = JobState(request=request, source=source, preview=f"{source}_siren")
        self.jobs[request] = state
        return state

    def submit_prepared(self, source: str, prepare: Callable[[], Arrays], overrides: dict[str, Any]) -> JobState:
        """Submit the cloud ``prepare`` makes, made on a thread of its own so the caller (Blender's
        UI) goes on at once; :meth:`tick` sends it when it is ready. The job is ``preparing``
        until then, and ``failed`` with the reason if ``prepare`` raises or the send is refused."""
        if self.client is None:
            raise RuntimeError("not connected")
        state = JobState(request=f"preparing-{uuid.uuid4().hex}", source=source, preview=f"{source}_siren",
                         status="preparing", message="preparing the cloud")
        self.jobs[state.request] = state

        def run() -> None:
            try:
                self._prepared.put((state, prepare(), overrides))
            except Exception as exc:  # any failure of the preparation fails this job, not the UI
                self._prepared.put((state, exc, overrides))

        threading.Thread(target=run, name=f"siren-prepare-{source}", daemon=True).start()
        return state

    def _send_prepared(self) -> None:
        """Send every cloud a preparing thread has finished (on the caller's thread: the socket's),
        once the backend has welcomed this session; a job cancelled meanwhile is dropped unsent."""
        while True:
            try:
                state, arrays, overrides = self._prepared.get_nowait()
            except queue.Empty:
                break
            if state.status != "preparing":
                continue  # cancelled or disconnected meanwhile
            if isinstance(arrays, Exception):
                state.status, state.message = "failed", f"the cloud could not be read: {arrays}"
                continue
            state.message = "ready, waiting for the backend"
            self._ready.append((state, arrays, overrides))
        if self.status in LINK_DOWN:
            for state in [entry[0] for entry in self._ready] + self._fetches:
                if state.active:
                    state.status, state.message = "failed", self.message or self.status
            self._ready.clear()
            self._fetches.clear()
        if self.status != "connected":
            return
        self._send_fetches()
        ready, self._ready = self._ready, []
        for state, arrays, overrides in ready:
            if state.status != "preparing":
                continue
            try:
                request = self.client.submit(*arrays, overrides, tag=state.source) if self.client else ""
            except (NotSent, ProtocolError) as exc:  # unreachable, or over the backend's size limit
                state.status, state.message = "failed", str(exc)
                continue
            del self.jobs[state.request]
            state.request, state.status, state.message = request, "submitting", f"sent {len(arrays[0]):,} points"
            self.jobs[request] = state

    def fetch(self, source: str, preview: str, job_id: str) -> JobState:
        """Ask the backend again for the kept final mesh of ``job_id`` (a reopened .blend, a drop);
        asked once the backend has welcomed this session."""
        if self.client is None:
            raise RuntimeError("not connected")
        for key, old in list(self.jobs.items()):
            if old.job == job_id:
                del self.jobs[key]
        state = JobState(request=f"fetch-{uuid.uuid4().hex}", source=source, preview=preview, job=job_id,
                         status="fetching", message="fetching the kept result")
        self.jobs[state.request] = state
        self._fetches.append(state)
        self._send_prepared()
        return state

    def _send_fetches(self) -> None:
        fetches, self._fetches = self._fetches, []
        for state in fetches:
            if state.status != "fetching" or self.client is None:
                continue
            try:
                request = self.client.fetch_result(state.job)
            except NotSent as exc:
                state.status, state.message = "failed", str(exc)
                continue
            del self.jobs[state.request]
            state.request = request
            self.jobs[request] = state

    def interrupted_jobs(self) -> list[JobState]:
        return [job for job in self.jobs.values() if job.status == "interrupted"]

    def resubmit(self) -> list[JobState]:
        """Send the jobs a restarted backend lost again; each keeps its preview object."""
        if self.client is None:
            return []
        by_job = {job.job: job for job in self.interrupted_jobs()}
        resent = []
        for request, old in self.client.resubmit(list(by_job)).items():
            job = by_job[old]
            del self.jobs[job.request]
            job.request, job.job, job.status, job.message = request, "", "submitting", "resubmitted"
            job.iteration, job.shown_iteration = 0, -1
            self.jobs[request] = job
            resent.append(job)
        return resent

    def cancel(self, state: JobState) -> None:
        """Stop a job whatever its stage: one still preparing is never sent, one sent but not yet
        accepted is cancelled as soon as the backend names it (see ``JobAccepted`` in :meth:`_route`)."""
        if not state.active:
            return
        if state.status in ("preparing", "fetching"):
            state.status, state.message = "cancelled", "cancelled"
            return
        state.status, state.message = "cancelling", "cancelling"
        if self.client is not None and state.job:
            self.client.cancel(state.job)

    def clear_finished(self) -> int:
        """Forget the jobs that are done, failed or cancelled; returns how many."""
        finished = [key for key, job in self.jobs.items() if job.status in FINISHED]
        for key in finished:
            del self.jobs[key]
        return len(finished)

    def forget(self, job: JobState) -> None:
        """Drop ``job`` from the list (its result was applied)."""
        self.jobs.pop(job.request, None)

    def signature(self) -> tuple:
        """What the panel shows of this session: equal signatures draw the same."""
        return (self.status, self.message, tuple((key, job.status, job.describe()) for key, job in self.jobs.items()))

    def active_jobs(self) -> list[JobState]:
        return [job for job in self.jobs.values() if job.active]

    def tick(self, budget: float = 0.005, wait_ms: int = 0) -> list[JobState]:
        """Drain what has arrived, for at most about ``budget`` seconds; return jobs with a new mesh."""
        if self.client is None:
            self._send_prepared()
            return []
        self._send_prepared()
        started = time.monotonic()
        changed: dict[str, JobState] = {}
        while True:
            events = self.client.poll(wait_ms)
            for event in events:
                job = self._route(event)
                if job is not None and job.pending_mesh is not None:
                    changed[job.request] = job
            if not events or time.monotonic() - started > budget:
                break
            wait_ms = 0
        if self.status == "connecting" and time.monotonic() - self._connect_started > self.connect_timeout:
            self._unreachable()
        return list(changed.values())

    def _find(self, job_id: str) -> JobState | None:
        return next((j for j in self.jobs.values() if j.job == job_id and job_id), None)

    def _route(self, event: Any) -> JobState | None:
        if isinstance(event, ConnectionEvent):
            self._link_event(event)
            return None
        if event.TYPE == "welcome":
            self.status, self.device = "connected", event.device
            self.message = f"connected: {event.device}, {event.queue_length} queued"
            if self.interrupted_jobs():
                self.message += f"; the backend restarted: {len(self.interrupted_jobs())} job(s) can be resubmitted"
            return None
        if isinstance(event, JobAccepted):
            job = self.jobs.get(event.parent)
            if job is not None and job.status == "cancelling":
                job.job = event.job
                if self.client is not None:
                    self.client.cancel(event.job)
            elif job is not None:
                job.job = event.job
                job.status = "queued" if event.queue_position else "running"
                job.message = f"queued at {event.queue_position}" if event.queue_position else "starting"
            return job
        if isinstance(event, Error):
            job = self.jobs.get(event.parent) or self._find(event.job)
            if job is not None and job.active:
                job.status, job.message = "failed", f"{event.code}: {event.message}"
            return job
        job = self._find(event.job)
        if job is None or not job.active:
            return None  # unknown, or ended here already (a fetch cancelled before its mesh came)
        if isinstance(event, Progress):
            if job.status != "cancelling":
                job.status = "running"
            job.iteration, job.total = event.iteration, event.total
            job.loss, job.eta, job.mode = event.losses.get("total", math.nan), event.eta_seconds, event.mode
            job.tile, job.tiles = event.tile, event.tiles
        elif isinstance(event, MeshUpdate):
            if event.iteration >= job.shown_iteration:
                job.pending_mesh = event
        elif isinstance(event, JobDone):
            job.status, job.mode = "done", event.mode
            job.message = f"done ({event.mode}{trim_note(event.stats)}, {sum(event.timings.values()):.0f} s)"
        elif isinstance(event, JobFailed):
            job.status, job.message = "failed", f"{event.code}: {event.message}"
        elif isinstance(event, JobCancelled):
            job.status, job.message = "cancelled", event.reason or "cancelled"
        return job

    def _link_event(self, event: ConnectionEvent) -> None:
        if event.kind == "lost":
            self.status, self.message = "lost", f"backend at {self.address} stopped answering"
        elif event.kind == "restored":
            self.status, self.message = "connected", f"connected: {self.device}"
        elif event.kind == "restarted":
            unfinished = self.client.unfinished if self.client is not None else {}
            lost = [job for job in self.jobs.values()
                    if job.job in unfinished or (job.active and job.status != "preparing")]
            for job in lost:
                if job.job in unfinished:
                    job.status, job.message = "interrupted", "the backend restarted: Resubmit runs it again"
                else:
                    job.status, job.message = "failed", "the backend restarted and lost this request"
            self.status = "connected"
            interrupted = sum(j.status == "interrupted" for j in lost)
            self.message = f"the backend restarted; {interrupted} job(s) can be resubmitted"

    def take_mesh(self, job: JobState) -> MeshUpdate | None:
        """The newest unseen mesh of ``job`` (then forgotten), or ``None``."""
        mesh, job.pending_mesh = job.pending_mesh, None
        if mesh is not None:
            job.shown_iteration = mesh.iteration
        return mesh
