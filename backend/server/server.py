"""The backend's front end: one ROUTER socket, many clients, one worker per device.

The front end thread owns every socket. It decodes each request, answers bad ones with an
``error`` naming the problem (and carries on), queues jobs, forwards the worker's replies, and
watches heartbeats: a client silent for ``heartbeat_timeout`` seconds has its jobs cancelled
unless it submitted them as detached.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
import time
import uuid
from typing import Any

import numpy as np
import zmq

from siren_recon.protocol import (
    CancelJob,
    Error,
    FetchResult,
    GetSettings,
    Hello,
    JobAccepted,
    JobCancelled,
    JobDone,
    JobList,
    JobSummary,
    ListJobs,
    MeshUpdate,
    Message,
    Ping,
    Pong,
    ProtocolError,
    Settings,
    SubmitJob,
    Welcome,
    decode,
    encode,
)

from .. import __version__
from ..engine.analysis.validation import validate_normals, validate_points
from ..engine.config.reconstruction import MODES, ReconstructionConfig, apply_overrides
from ..engine.config.settings_catalog import relations
from ..engine.device import resolve_device
from ..engine.errors import ReconstructionError
from .config import ServerConfig
from .devices import worker_devices, worker_threads
from .executors import runners
from .jobs import CANCELLED, FINISHED, QUEUED, FairQueue, Job
from .outbox import FINAL, OTHER, Outbox
from .results import ResultStore
from .security import CurveSecurity, check_bind, is_loopback
from .settings import setting_entries
from .worker import Worker

log = logging.getLogger(__name__)


class LimitError(ReconstructionError):
    """A request over one of the backend's configured limits; ``code`` names which."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def describe_device(name: str) -> tuple[str, int]:
    import torch

    device = resolve_device(name)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        return f"cuda:{index} ({props.name})", int(props.total_memory)
    return "cpu", 0


def describe_devices(config: ServerConfig) -> tuple[str, int]:
    """The devices the server trains on, as :func:`describe_device` each, comma-separated, with
    the memory of the smallest (a job must fit whichever worker takes it)."""
    if not config.devices.strip():
        return describe_device(config.device)
    described = [describe_device(name) for name in worker_devices(config.devices, config.device)]
    return ", ".join(name for name, _ in described), min(memory for _, memory in described)


class Server:
    def __init__(self, config: ServerConfig, context: zmq.Context | None = None) -> None:
        self.config = config
        self.context = context or zmq.Context.instance()
        self.session = uuid.uuid4().hex
        self.device_name, self.device_memory = describe_devices(config)
        self.queue = FairQueue()
        self.jobs: dict[str, Job] = {}
        self.last_seen: dict[bytes, float] = {}
        self._last_turn = time.monotonic()  # when the loop last checked on its clients
        self.owners: dict[bytes, str] = {}
        """Each routing id's owner: its CURVE public key, or the routing id itself without CURVE."""
        check_bind(config.bind, bool(config.curve_secret_key), config.insecure, is_loopback(config.bind))
        self.security = (
            CurveSecurity(self.context, config.curve_secret_key, config.allowed_clients)
            if config.curve_secret_key else None
        )
        self.results = (
            ResultStore(config.results_dir, config.results_max_bytes, config.results_max_age)
            if config.results_dir else None
        )
        self._outbox: Outbox | None = None
        self._reported_peak = 0
        self._stop = threading.Event()
        self.inbox = f"inproc://siren-worker-replies-{self.session}"
        self.router: Any = None
        self.pull: Any = None
        self.workers: list[Worker] = []
        self.endpoint = ""

    @property
    def outbox(self) -> Outbox:
        """The queue of replies to send (the server has started)."""
        if self._outbox is None:
            raise RuntimeError("the server has not started")
        return self._outbox

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> str:
        """Bind the sockets and start the worker; returns the bound endpoint."""
        self.pull = self.context.socket(zmq.PULL)
        self.pull.bind(self.inbox)
        self.router = self.context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 500)
        # Twice the decoder's limit: a message up to that size still gets an error reply naming
        # the limit; beyond it libzmq drops the connection before anything is buffered.
        self.router.setsockopt(zmq.MAXMSGSIZE, 2 * self.config.max_message_bytes)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.router.setsockopt(zmq.SNDHWM, self.config.send_high_water_mark)
        if self.security is not None:
            self.security.start()
            self.security.apply(self.router)
        self.router.bind(self.config.bind)
        self._outbox = Outbox(self.router)
        self.endpoint = self.router.getsockopt(zmq.LAST_ENDPOINT).decode()
        runners_and_names = runners(self.config)
        self.queue.slots = len(runners_and_names)
        threads = worker_threads([device for _, _, device in runners_and_names])
        for runner, name, device in runners_and_names:
            worker = Worker(self.queue, self.context, self.inbox, self.session, device,
                            self._job_finished, runner, name, self.results, threads)
            worker.start()
            self.workers.append(worker)
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
        self._last_turn = time.monotonic()
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(20 if self.outbox else 100))
                if self.pull in ready:
                    self._forward_worker_replies()
                if self.router in ready:
                    self._drain_requests()
                self.outbox.flush()
                self._report_slow_readers()
                self._reap_silent_clients()
                self._forget_old_jobs()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        unfinished = sum(j.state not in FINISHED for j in self.jobs.values())
        log.info("shutting down: cancelling %d unfinished jobs", unfinished)
        for job in self.jobs.values():
            if job.state not in FINISHED:
                self._cancel(job, "the backend is shutting down")
        for worker in self.workers:
            worker.stopping.set()
        for worker in self.workers:
            worker.join(timeout=30)
        self._forward_worker_replies()
        self.outbox.flush()
        self.router.close(linger=500)
        self.pull.close(linger=0)
        if self.security is not None:
            self.security.stop()

    # -- requests ---------------------------------------------------------------------------
    def _drain_requests(self) -> None:
        while True:
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            identity, payload = frames[0].bytes, frames[1:]
            self.last_seen[identity] = time.monotonic()
            owner = self._owner(identity, frames[1] if len(frames) > 1 else None)
            if owner is None:
                continue
            try:
                message = decode(payload, self.config.max_message_bytes, self.config.max_points)
            except ProtocolError as exc:
                log.warning("bad message from %s: %s", identity.hex(), exc)
                self._reply(identity, Error(job=exc.job, parent=exc.msg_id, code=exc.code, message=exc.message))
                continue
            try:
                self._handle(identity, message)
            except ReconstructionError as exc:
                self._refuse(identity, message, exc.code, str(exc))

    def _handle(self, identity: bytes, message: Message) -> None:
        if isinstance(message, Ping):
            self._reply(identity, Pong(parent=message.msg_id))
        elif isinstance(message, Hello):
            self._reply(
                identity,
                Welcome(
                    parent=message.msg_id,
                    backend_version=__version__,
                    device=self.device_name,
                    device_memory=self.device_memory,
                    modes=list(MODES),
                    max_message_bytes=self.config.max_message_bytes,
                    heartbeat_interval=self.config.heartbeat_interval,
                    heartbeat_timeout=self.config.heartbeat_timeout,
                    queue_length=len(self.queue),
                    max_points=self.config.max_points,
                    max_queued_jobs=self.config.max_queued_jobs,
                    results_kept_seconds=self.config.results_max_age if self.results is not None else 0.0,
                ),
            )
        elif isinstance(message, SubmitJob):
            self._submit(identity, message)
        elif isinstance(message, CancelJob):
            self._cancel_request(identity, message)
        elif isinstance(message, GetSettings):
            self._reply(
                identity,
                Settings(
                    parent=message.msg_id,
                    backend_version=__version__,
                    settings=setting_entries(self.config.defaults),
                    relations=relations(),
                ),
            )
        elif isinstance(message, FetchResult):
            self._fetch(identity, message)
        elif isinstance(message, ListJobs):
            mine = [j for j in self.jobs.values() if j.owner == self.owners[identity]]
            self._reply(
                identity,
                JobList(
                    parent=message.msg_id,
                    jobs=[
                        JobSummary(
                            job=j.id, tag=j.tag, state=j.state, iteration=j.iteration,
                            total=j.total or j.config.train.iterations
                        )
                        for j in mine
                    ],
                ),
            )
        else:
            self._refuse(identity, message, "unexpected_message",
                         f"a backend does not accept {message.TYPE!r} messages")

    def _submit(self, identity: bytes, message: SubmitJob) -> None:
        owner = self.owners[identity]
        active = sum(1 for j in self.jobs.values() if j.owner == owner and j.state not in FINISHED)
        if active >= self.config.max_queued_jobs:
            raise LimitError(
                f"you have {active} unfinished jobs, this backend's limit per client "
                f"(serve --max-queued-jobs {self.config.max_queued_jobs}); wait for one to end",
                "too_many_jobs",
            )
        config = apply_overrides(self.config.defaults or ReconstructionConfig(), message.overrides)
        # Refused here, before queueing, so the client hears of bad input at once; the job keeps
        # the arrays exactly as they arrived, so it trains on what a local run would.
        validate_points(message.points)
        if message.normals is not None:
            validate_normals(message.normals, len(message.points))
        job = Job(
            id=uuid.uuid4().hex,
            client=identity,
            owner=owner,
            result_owner=self._result_owner(identity),
            tag=message.tag,
            detached=message.detached,
            points=np.array(message.points),
            normals=None if message.normals is None else np.array(message.normals),
            colours=None if message.colours is None else np.array(message.colours),
            config=config,
        )
        self.jobs[job.id] = job
        position = self.queue.put(job)
        log.info("job %s (%s) queued at %d from %s", job.id, job.tag, position, identity.hex())
        self._reply(identity, JobAccepted(job=job.id, parent=message.msg_id, queue_position=position, tag=job.tag))

    def _cancel_request(self, identity: bytes, message: CancelJob) -> None:
        """A client's ``cancel_job``: answered by ``job_cancelled`` naming it once the job has
        stopped, or at once by ``error`` (``unknown_job``, ``job_finished``)."""
        job = self.jobs.get(message.job)
        if job is None or job.owner != self.owners[identity]:
            self._refuse(identity, message, "unknown_job", f"no job {message.job!r} of yours on this backend")
        elif not self._cancel(job, "cancelled by the client", message.msg_id):
            self._refuse(identity, message, "job_finished", f"job {job.id} has already ended ({job.state})")

    def _cancel(self, job: Job, reason: str, request: str = "") -> bool:
        """Stop ``job`` for ``reason`` on behalf of the cancel ``request`` (``""``: the backend's
        own decision); a queued job ends here, a running one at its next step. False: it had ended."""
        if not job.request_cancel(reason, request):
            return False
        if job.state == QUEUED and self.queue.remove(job):
            job.finished = time.monotonic()
            job.release_input()
            for parent in job.end(CANCELLED) or [""]:
                self._reply(job.client, JobCancelled(job=job.id, parent=parent, reason=reason))
        return True

    # -- replies and housekeeping -------------------------------------------------------------
    def _refuse(self, identity: bytes, request: Message, code: str, text: str) -> None:
        """Answer ``request`` with an ``error``: naming it (``parent``) and its job."""
        self._reply(identity, Error(job=request.job, parent=request.msg_id, code=code, message=text))

    def _reply(self, identity: bytes, message: Message, kind: bytes = OTHER) -> None:
        message = _with_session(message, self.session)
        try:
            frames = encode(message)
        except ProtocolError as exc:  # a bug on our side: say so rather than die
            log.error("could not encode %s: %s", message.TYPE, exc)
            frames = encode(
                Error(
                    session=self.session,
                    job=message.job,
                    parent=message.parent,
                    code="internal_error",
                    message=f"the backend could not encode its reply: {exc}",
                )
            )
        self.outbox.send(identity, frames, kind, message.job.encode())

    def _forward_worker_replies(self) -> None:
        """Worker replies arrive as ``[identity, kind, job, *message frames]``."""
        while True:
            try:
                frames = self.pull.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            identity, kind, job = frames[0].bytes, frames[1].bytes, frames[2].bytes
            self.outbox.send(identity, frames[3:], kind, job)

    def _owner(self, identity: bytes, frame: Any) -> str | None:
        """Who sent this: the CURVE key ZeroMQ vouches for, else the routing id. ``None``: refused.

        A routing id first seen with one key and then with another is refused: a client cannot
        take over another's routing id (and so its replies) by reusing it.
        """
        key = ""
        if self.security is not None and frame is not None:
            try:
                key = frame.get("User-Id") or ""
            except zmq.ZMQError:
                key = ""
        owner = key or identity.hex()
        known = self.owners.setdefault(identity, owner)
        if known != owner:
            log.warning("routing id %s reused with another key: ignored", identity.hex())
            return None
        return owner

    def _fetch(self, identity: bytes, message: FetchResult) -> None:
        stored = self.results.load(message.job, self._result_owner(identity)) if self.results is not None else None
        if stored is None:
            self._refuse(identity, message, "unknown_job", f"no kept result of yours for job {message.job!r} "
                         "(never existed, not finished, or expired)")
            return
        self._reply(
            identity,
            MeshUpdate(
                job=stored.job,
                parent=message.msg_id,
                iteration=stored.iteration,
                resolution=stored.resolution,
                final=True,
                vertices=stored.vertices,
                faces=stored.faces,
                colours=stored.colours,
            ),
            FINAL,
        )
        self._reply(
            identity,
            JobDone(
                job=stored.job, parent=message.msg_id, mode=stored.mode, stats=stored.stats, timings=stored.timings
            ),
        )

    def _result_owner(self, identity: bytes) -> str:
        """Results are bound to a CURVE key; without CURVE the (random, 128-bit) job id is the capability."""
        return self.owners[identity] if self.security is not None else ""

    def _job_finished(self, job: Job) -> None:
        """Called on the worker's thread: only plain attribute writes here."""
        job.finished = time.monotonic()

    def _report_slow_readers(self) -> None:
        """Log once each time the held-back messages of slow readers reach a new peak."""
        if self.outbox.peak_bytes > self._reported_peak:
            self._reported_peak = self.outbox.peak_bytes
            log.info(
                "slow readers: at most %d bytes held so far, %d previews replaced by newer ones",
                self.outbox.peak_bytes,
                self.outbox.coalesced,
            )

    def _reap_silent_clients(self) -> None:
        now = time.monotonic()
        if now - self._last_turn > self.config.heartbeat_timeout / 2:
            # This process was frozen (SIGSTOP, a suspended VM) somewhere in the last turn of the
            # loop: the silence was ours, not the clients', so nobody is reaped for it. The check
            # sits here, on the same clock reading as the reaping, so no freeze can fall between.
            log.warning(
                "the backend was stalled for %.1f s; clients get a fresh heartbeat window", now - self._last_turn
            )
            self.last_seen = {identity: now for identity in self.last_seen}
        self._last_turn = now
        for identity, seen in list(self.last_seen.items()):
            if now - seen <= self.config.heartbeat_timeout:
                continue
            del self.last_seen[identity]
            self.outbox.forget(identity)
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
