"""The backend's front end: one ROUTER socket, many clients, one worker per device.

The front end thread owns every socket. It decodes each request, answers bad ones with an
``error`` naming the problem (and carries on), queues jobs, forwards the worker's replies, and
watches heartbeats: a client silent for ``heartbeat_timeout`` seconds has its jobs cancelled
unless it submitted them as detached.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import numpy as np
import zmq

from protocol import (
    DEFAULT_MAX_BYTES,
    CancelJob,
    Error,
    Hello,
    JobAccepted,
    JobCancelled,
    JobList,
    JobSummary,
    ListJobs,
    Message,
    Ping,
    Pong,
    ProtocolError,
    SubmitJob,
    Welcome,
    decode,
    encode,
)

from .. import __version__
from ..engine.config import MODES, ReconstructionConfig, apply_overrides
from ..engine.device import resolve_device
from ..engine.errors import ReconstructionError
from ..engine.validation import validate_normals, validate_points
from .jobs import CANCELLED, FINISHED, QUEUED, FairQueue, Job
from .worker import Worker

log = logging.getLogger(__name__)


@dataclass
class ServerConfig:
    """Settings of ``siren-recon serve``."""

    bind: str = "tcp://127.0.0.1:5555"
    """ZeroMQ endpoint to listen on; loopback unless you mean to expose the backend."""
    device: str = "auto"
    """Training device of the worker: ``auto``, ``cpu``, ``cuda``, ``cuda:N``."""
    heartbeat_interval: float = 1.0
    """Seconds between pings that clients are asked to send."""
    heartbeat_timeout: float = 10.0
    """Seconds of silence after which a client's non-detached jobs are cancelled."""
    max_message_bytes: int = DEFAULT_MAX_BYTES
    """Largest request accepted (socket and decoder)."""
    keep_finished: int = 200
    """Finished jobs remembered for ``list_jobs``."""
    defaults: ReconstructionConfig | None = None
    """Engine settings jobs start from before their overrides (``None``: the engine's defaults)."""


def is_loopback(endpoint: str) -> bool:
    """Whether a ZeroMQ endpoint only listens on this machine."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    host = urlparse(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def describe_device(name: str) -> tuple[str, int]:
    import torch

    device = resolve_device(name)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        return f"cuda:{index} ({props.name})", int(props.total_memory)
    return "cpu", 0


class Server:
    def __init__(self, config: ServerConfig, context: zmq.Context | None = None) -> None:
        self.config = config
        self.context = context or zmq.Context.instance()
        self.session = uuid.uuid4().hex
        self.device_name, self.device_memory = describe_device(config.device)
        self.queue = FairQueue()
        self.jobs: dict[str, Job] = {}
        self.last_seen: dict[bytes, float] = {}
        self._stop = threading.Event()
        self.outbox = f"inproc://siren-outbox-{self.session}"
        self.router: Any = None
        self.pull: Any = None
        self.worker: Worker | None = None
        self.endpoint = ""

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> str:
        """Bind the sockets and start the worker; returns the bound endpoint."""
        self.pull = self.context.socket(zmq.PULL)
        self.pull.bind(self.outbox)
        self.router = self.context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 500)
        self.router.setsockopt(zmq.MAXMSGSIZE, self.config.max_message_bytes)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 0)
        self.router.bind(self.config.bind)
        self.endpoint = self.router.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.worker = Worker(self.queue, self.context, self.outbox, self.session, self.config.device, self._job_finished)
        self.worker.start()
        log.info("serving on %s, session %s, device %s", self.endpoint, self.session, self.device_name)
        return self.endpoint

    def stop(self) -> None:
        """Ask :meth:`serve_forever` to shut down (safe from a signal handler or another thread)."""
        self._stop.set()

    def serve_forever(self, install_signals: bool = False) -> None:
        if self.router is None:
            self.start()
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: self.stop())
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.pull, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(100))
                if self.pull in ready:
                    self._forward_worker_replies()
                if self.router in ready:
                    self._drain_requests()
                self._reap_silent_clients()
                self._forget_old_jobs()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        log.info("shutting down: cancelling %d unfinished jobs", sum(j.state not in FINISHED for j in self.jobs.values()))
        for job in self.jobs.values():
            if job.state not in FINISHED:
                self._cancel(job, "the backend is shutting down")
        if self.worker is not None:
            self.worker.stopping.set()
            self.worker.join(timeout=30)
        self._forward_worker_replies()
        self.router.close(linger=500)
        self.pull.close(linger=0)

    # -- requests ---------------------------------------------------------------------------
    def _drain_requests(self) -> None:
        while True:
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            identity, payload = frames[0].bytes, frames[1:]
            self.last_seen[identity] = time.monotonic()
            try:
                message = decode(payload, self.config.max_message_bytes)
            except ProtocolError as exc:
                log.warning("bad message from %s: %s", identity.hex(), exc)
                self._reply(identity, Error(code=exc.code, message=exc.message))
                continue
            try:
                self._handle(identity, message)
            except ReconstructionError as exc:
                self._reply(identity, Error(job=message.job, parent=message.msg_id, code=exc.code, message=str(exc)))

    def _handle(self, identity: bytes, message: Message) -> None:
        if isinstance(message, Ping):
            self._reply(identity, Pong(parent=message.msg_id))
        elif isinstance(message, Hello):
            self._reply(identity, Welcome(
                parent=message.msg_id, backend_version=__version__, device=self.device_name,
                device_memory=self.device_memory, modes=list(MODES),
                max_message_bytes=self.config.max_message_bytes,
                heartbeat_interval=self.config.heartbeat_interval,
                heartbeat_timeout=self.config.heartbeat_timeout, queue_length=len(self.queue),
            ))
        elif isinstance(message, SubmitJob):
            self._submit(identity, message)
        elif isinstance(message, CancelJob):
            job = self.jobs.get(message.job)
            if job is None or job.client != identity:
                self._reply(identity, Error(job=message.job, parent=message.msg_id, code="unknown_job",
                                            message=f"no job {message.job!r} of yours on this backend"))
            elif job.state in FINISHED:
                self._reply(identity, Error(job=job.id, parent=message.msg_id, code="job_finished",
                                            message=f"job {job.id} has already ended ({job.state})"))
            else:
                self._cancel(job, "cancelled by the client")
        elif isinstance(message, ListJobs):
            mine = [j for j in self.jobs.values() if j.client == identity]
            self._reply(identity, JobList(parent=message.msg_id, jobs=[
                JobSummary(job=j.id, tag=j.tag, state=j.state, iteration=j.iteration, total=j.config.train.iterations)
                for j in mine
            ]))
        else:
            self._reply(identity, Error(parent=message.msg_id, job=message.job, code="unexpected_message",
                                        message=f"a backend does not accept {message.TYPE!r} messages"))

    def _submit(self, identity: bytes, message: SubmitJob) -> None:
        config = apply_overrides(self.config.defaults or ReconstructionConfig(), message.overrides)
        config = apply_overrides(config, {"train.device": self.config.device})
        # Refused here, before queueing, so the client hears of bad input at once; the job keeps
        # the arrays exactly as they arrived, so it trains on what a local run would.
        validate_points(message.points)
        if message.normals is not None:
            validate_normals(message.normals, len(message.points))
        job = Job(
            id=uuid.uuid4().hex[:12], client=identity, tag=message.tag, detached=message.detached,
            points=np.array(message.points), normals=None if message.normals is None else np.array(message.normals),
            colours=None if message.colours is None else np.array(message.colours), config=config,
        )
        self.jobs[job.id] = job
        position = self.queue.put(job)
        log.info("job %s (%s) queued at %d from %s", job.id, job.tag, position, identity.hex())
        self._reply(identity, JobAccepted(job=job.id, parent=message.msg_id, queue_position=position, tag=job.tag))

    def _cancel(self, job: Job, reason: str) -> None:
        job.cancel_reason = reason
        job.cancel.set()
        if job.state == QUEUED and self.queue.remove(job):
            job.state = CANCELLED
            job.finished = time.monotonic()
            job.release_input()
            self._reply(job.client, JobCancelled(job=job.id, reason=reason))

    # -- replies and housekeeping -------------------------------------------------------------
    def _reply(self, identity: bytes, message: Message) -> None:
        message = _with_session(message, self.session)
        try:
            self.router.send_multipart([identity, *encode(message)], copy=False)
        except zmq.ZMQError as exc:
            log.warning("could not send %s to %s: %s", message.TYPE, identity.hex(), exc)

    def _forward_worker_replies(self) -> None:
        while True:
            try:
                frames = self.pull.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                self.router.send_multipart(frames, copy=False)
            except zmq.ZMQError as exc:
                log.warning("could not forward a reply: %s", exc)

    def _job_finished(self, job: Job) -> None:
        job.finished = time.monotonic()

    def _reap_silent_clients(self) -> None:
        now = time.monotonic()
        for identity, seen in list(self.last_seen.items()):
            if now - seen <= self.config.heartbeat_timeout:
                continue
            del self.last_seen[identity]
            for job in self.jobs.values():
                if job.client == identity and not job.detached and job.state not in FINISHED:
                    log.info("client %s silent for %.0f s: cancelling job %s", identity.hex(), now - seen, job.id)
                    self._cancel(job, "the client stopped answering")

    def _forget_old_jobs(self) -> None:
        finished = [j for j in self.jobs.values() if j.state in FINISHED and j.finished]
        for job in sorted(finished, key=lambda j: j.finished)[: max(0, len(finished) - self.config.keep_finished)]:
            del self.jobs[job.id]


def _with_session(message: Message, session: str) -> Message:
    return dataclasses.replace(message, session=session) if message.session != session else message
