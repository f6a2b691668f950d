"""A ZeroMQ client of the siren-recon backend: no threads, driven by :meth:`Client.poll`.

Made to be called from Blender's timer callbacks as well as from scripts: every method returns
at once (``poll`` waits at most the timeout it is given). ZeroMQ reconnects by itself, with an
interval that doubles up to ``reconnect_max`` seconds; the client notices a silent backend by
its heartbeats and a restarted one by its new session id, and reports both as
:class:`ConnectionEvent` s among the messages ``poll`` returns.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from .codec import DEFAULT_MAX_BYTES, decode, encode
from .errors import TOO_LARGE, ProtocolError, SecurityError
from .messages import (
    CancelJob,
    Error,
    FetchResult,
    GetSettings,
    Hello,
    JobAccepted,
    JobCancelled,
    JobDone,
    JobFailed,
    ListJobs,
    MeshUpdate,
    Message,
    Ping,
    Progress,
    SubmitJob,
    Welcome,
)

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"


class NotSent(RuntimeError):
    """ZeroMQ could not take a message now: no backend is connected and the send queue is full."""


def load_key_file(path: str) -> tuple[bytes, bytes | None]:
    """(public, secret or None) from a key file written by ``zmq.auth`` / ``siren-recon keys``."""
    from zmq.auth import load_certificate

    try:
        return load_certificate(path)
    except (OSError, ValueError) as exc:
        raise SecurityError(f"cannot read the key file {path}: {exc}") from exc


def configure_curve_client(sock: Any, server_key_file: str, client_key_file: str = "") -> None:
    """Make ``sock`` a CURVE client of the server whose public key is in ``server_key_file``."""
    if not zmq.has("curve"):
        raise SecurityError("this pyzmq's libzmq was built without CURVE security")
    server_public, _ = load_key_file(server_key_file)
    if client_key_file:
        public, secret = load_key_file(client_key_file)
        if secret is None:
            raise SecurityError(f"{client_key_file} holds no secret key (give the .key_secret file)")
    else:
        public, secret = zmq.curve_keypair()
    sock.curve_serverkey = server_public
    sock.curve_publickey = public
    sock.curve_secretkey = secret


@dataclass(frozen=True)
class ConnectionEvent:
    """Something that happened to the link rather than to a job.

    ``kind`` is ``connected`` (first welcome), ``lost`` (nothing heard for the heartbeat
    timeout after the welcome), ``restored`` (heard again, same backend) or ``restarted`` (heard again from a
    backend with a new session id: jobs of the old session are gone).
    """

    kind: str
    session: str
    detail: str = ""


@dataclass
class Client:
    """One DEALER connection to a backend."""

    address: str = DEFAULT_ADDRESS
    client_name: str = "siren-recon"
    client_version: str = ""
    heartbeat_interval: float = 1.0
    """Seconds between pings."""
    heartbeat_timeout: float = 5.0
    """Seconds of silence after which the backend counts as lost."""
    reconnect_max: float = 5.0
    """Longest wait between reconnection attempts (ZeroMQ doubles it from 0.1 s)."""
    max_bytes: int = DEFAULT_MAX_BYTES
    server_key_file: str = ""
    """The backend's public key file (``siren-recon keys generate``): set, the link uses CURVE."""
    client_key_file: str = ""
    """This client's secret key file; empty with ``server_key_file`` set: a fresh key pair, which a
    backend started without ``--allowed-clients`` accepts."""
    identity: bytes = field(default_factory=lambda: uuid.uuid4().bytes)
    """ZeroMQ routing id, kept across reconnects so the backend still knows whose jobs are whose."""
    context: Any = None
    session: str = ""
    """The backend's session id, once heard."""
    welcome: Welcome | None = None
    lost: bool = False
    unfinished: dict = field(default_factory=dict)
    """Accepted jobs that have not finished, failed or been cancelled by this client, by job id ->
    the ``SubmitJob`` that made them. After a ``restarted`` event these are the jobs the old backend
    took with it, including those it cancelled as it shut down (see :meth:`resubmit`)."""
    _pending: dict = field(default_factory=dict, repr=False)
    _cancelling: set = field(default_factory=set, repr=False)
    _socket: Any = field(default=None, repr=False)
    _last_heard: float = 0.0
    _last_ping: float = 0.0

    def connect(self) -> None:
        """Open the socket and say hello; returns at once (the welcome comes through poll)."""
        if self._socket is not None:
            return
        ctx = self.context or zmq.Context.instance()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTING_ID, self.identity)
        if self.server_key_file:
            configure_curve_client(sock, self.server_key_file, self.client_key_file)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, int(self.reconnect_max * 1000))
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_bytes)
        sock.connect(self.address)
        self._socket = sock
        now = time.monotonic()
        self._last_heard = now
        self._last_ping = now
        self._send_quietly(Hello(client_name=self.client_name, client_version=self.client_version))

    @property
    def connected(self) -> bool:
        return self._socket is not None

    def send(self, message: Message) -> str:
        """Send any message; returns its ``msg_id`` (replies carry it as ``parent``).

        Never blocks: raises :class:`NotSent` when ZeroMQ cannot take the message now (no
        backend has completed the handshake, e.g. a wrong key, and the send queue is full), and
        ``ProtocolError`` (``too_large``) for a message over the backend's announced size limit.
        """
        if self._socket is None:
            raise RuntimeError("the client is not connected: call connect() first")
        frames = encode(message)
        limit = self.welcome.max_message_bytes if self.welcome is not None else 0
        size = sum(len(memoryview(f)) for f in frames)
        if limit and size > limit:
            raise ProtocolError(
                TOO_LARGE, f"{message.TYPE} of {size} bytes is over the backend's limit of {limit} bytes"
            )
        try:
            self._socket.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again as exc:
            raise NotSent(f"{message.TYPE} not sent: no backend is reachable at {self.address}") from exc
        return message.msg_id

    def _send_quietly(self, message: Message) -> None:
        """Heartbeats and hellos: when the link is down they are simply tried again later."""
        try:
            self.send(message)
        except NotSent:
            pass

    def submit(
        self,
        points: np.ndarray,
        normals: np.ndarray | None = None,
        colours: np.ndarray | None = None,
        overrides: dict[str, Any] | None = None,
        tag: str = "",
        detached: bool = False,
    ) -> str:
        """Submit a cloud; returns the request's ``msg_id``.

        The backend answers with ``job_accepted`` (its ``parent`` is this id and its ``job``
        the new job id) or ``error``.
        """
        request = SubmitJob(
            session=self.session,
            tag=tag,
            detached=detached,
            overrides=dict(overrides or {}),
            points=points,
            normals=normals,
            colours=colours,
        )
        self.send(request)
        self._pending[request.msg_id] = request
        return request.msg_id

    def resubmit(self, job_ids: list[str] | None = None) -> dict[str, str]:
        """Submit again the unfinished jobs (all, or ``job_ids``) of a backend that restarted.

        Returns ``{new request msg_id: old job id}``; each answer (``job_accepted`` with that
        ``parent``) names the new job id. The old ids are forgotten.
        """
        out = {}
        for old in list(job_ids if job_ids is not None else self.unfinished):
            request = self.unfinished.pop(old, None)
            if request is None:
                continue
            out[
                self.submit(
                    request.points, request.normals, request.colours, request.overrides, request.tag, request.detached
                )
            ] = old
        return out

    def fetch_result(self, job_id: str) -> str:
        """Ask for the final mesh of a finished job again (after a drop or a reopened scene)."""
        return self.send(FetchResult(session=self.session, job=job_id))

    def cancel(self, job_id: str) -> str:
        self._cancelling.add(job_id)
        return self.send(CancelJob(session=self.session, job=job_id))

    def list_jobs(self) -> str:
        return self.send(ListJobs(session=self.session))

    def get_settings(self) -> str:
        """Ask which engine settings a job may override (1.2); answered by a ``Settings`` message."""
        return self.send(GetSettings(session=self.session))

    def poll(self, timeout_ms: int = 0) -> list[Message | ConnectionEvent]:
        """Everything received so far (waiting at most ``timeout_ms`` for the first), plus link events.

        Messages that fail to decode are logged and skipped: a bad reply must not break the UI.
        """
        if self._socket is None:
            return []
        out: list[Message | ConnectionEvent] = []
        wait = timeout_ms
        while self._socket.poll(wait, zmq.POLLIN):
            wait = 0
            frames = self._socket.recv_multipart(copy=False)
            try:
                message = decode(frames, self.max_bytes)
            except ProtocolError as exc:
                log.warning("dropped a message from the backend: %s", exc)
                continue
            out.extend(self._heard(message))
            self._track(message)
            out.append(message)
        now = time.monotonic()
        # Lost means heard once and then silent. Before the first welcome a backend may still be
        # starting (importing torch takes seconds on a busy machine): callers wait for it with
        # their connect timeout instead.
        if self.welcome is not None and not self.lost and now - self._last_heard > self.heartbeat_timeout:
            self.lost = True
            out.append(ConnectionEvent("lost", self.session, f"no message for {self.heartbeat_timeout:g} s"))
        if now - self._last_ping >= self.heartbeat_interval:
            self._last_ping = now
            self._send_quietly(Ping(session=self.session))
        return out

    def _track(self, message: Message) -> None:
        """Keep :attr:`unfinished` up to date from the backend's answers."""
        if isinstance(message, JobAccepted):
            request = self._pending.pop(message.parent, None)
            if request is not None:
                self.unfinished[message.job] = request
        elif isinstance(message, Error) and message.parent in self._pending:
            del self._pending[message.parent]
        elif isinstance(message, (JobDone, JobFailed)) or (
            isinstance(message, JobCancelled) and message.job in self._cancelling
        ):
            self.unfinished.pop(message.job, None)
            self._cancelling.discard(message.job)

    def _heard(self, message: Message) -> list[ConnectionEvent]:
        self._last_heard = time.monotonic()
        events = []
        if self.lost:
            self.lost = False
            if not message.session or message.session == self.session:
                events.append(ConnectionEvent("restored", self.session))
        if message.session and message.session != self.session:
            if self.session:
                events.append(ConnectionEvent("restarted", message.session, f"backend session {self.session} ended"))
                self._send_quietly(Hello(client_name=self.client_name, client_version=self.client_version))
            self.session = message.session
        if isinstance(message, Welcome):
            if self.welcome is None:
                events.append(ConnectionEvent("connected", message.session, message.device))
            self.welcome = message
        return events

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RemoteError(RuntimeError):
    """A remote reconstruction failed, was cancelled, or its backend went away."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass
class RemoteResult:
    """A finished remote job: its final mesh (with vertex colours when the cloud had colours), its
    ``job_done`` and its id."""

    vertices: np.ndarray
    faces: np.ndarray
    done: JobDone
    job: str
    colours: np.ndarray | None = None


def reconstruct_remote(
    points: np.ndarray,
    normals: np.ndarray | None = None,
    colours: np.ndarray | None = None,
    address: str = DEFAULT_ADDRESS,
    overrides: dict[str, Any] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_mesh: Callable[[MeshUpdate], None] | None = None,
    timeout: float | None = None,
    connect_timeout: float = 10.0,
    tag: str = "",
    server_key_file: str = "",
    client_key_file: str = "",
    detached: bool = False,
    lost_grace: float = 60.0,
) -> RemoteResult:
    """Reconstruct on a backend and wait for the final mesh (blocking, for scripts).

    A backend that stops answering is waited for ``lost_grace`` seconds (a Wi-Fi drop): the
    client keeps its routing id, so what the backend sent meanwhile arrives when it is back.
    Raises :class:`RemoteError` when the backend refuses the job, the job fails or is
    cancelled, the backend stays lost longer than that, or restarts; :class:`TimeoutError` after ``timeout``
    seconds, or ``connect_timeout`` seconds without a welcome.
    """
    client = Client(
        address=address,
        heartbeat_timeout=max(5.0, connect_timeout),
        server_key_file=server_key_file,
        client_key_file=client_key_file,
    )
    client.connect()
    started = time.monotonic()
    request = client.submit(points, normals, colours, overrides, tag, detached)
    job = ""
    last_mesh: MeshUpdate | None = None
    lost_since: float | None = None
    try:
        while True:
            for event in client.poll(100):
                if isinstance(event, ConnectionEvent):
                    if event.kind == "restarted":
                        raise RemoteError("backend_restarted", f"the backend at {address} restarted: {event.detail}")
                    if event.kind == "lost":
                        lost_since = time.monotonic()
                        log.warning("the backend at %s stopped answering; waiting up to %g s", address, lost_grace)
                    elif event.kind == "restored":
                        lost_since = None
                elif isinstance(event, Error) and event.parent in (request, "") and not job:
                    raise RemoteError(event.code, event.message)
                elif isinstance(event, JobAccepted) and event.parent == request:
                    job = event.job
                elif not job or event.job != job:
                    continue
                elif isinstance(event, Progress) and on_progress is not None:
                    on_progress(event)
                elif isinstance(event, MeshUpdate):
                    last_mesh = event
                    if on_mesh is not None:
                        on_mesh(event)
                elif isinstance(event, JobDone):
                    if last_mesh is None or not last_mesh.final:
                        raise RemoteError("no_mesh", "the job finished without sending its final mesh")
                    colours = None if last_mesh.colours is None else np.array(last_mesh.colours)
                    return RemoteResult(np.array(last_mesh.vertices), np.array(last_mesh.faces), event, job, colours)
                elif isinstance(event, JobFailed):
                    raise RemoteError(event.code, event.message)
                elif isinstance(event, JobCancelled):
                    raise RemoteError("cancelled", event.reason or "the job was cancelled")
            elapsed = time.monotonic() - started
            if lost_since is not None and time.monotonic() - lost_since > lost_grace:
                raise RemoteError("backend_lost", f"the backend at {address} has not answered for {lost_grace:g} s")
            if client.welcome is None and elapsed > connect_timeout:
                raise TimeoutError(f"no backend answered at {address} within {connect_timeout:g} s")
            if timeout is not None and elapsed > timeout:
                if job:
                    client.cancel(job)
                raise TimeoutError(f"the job did not finish within {timeout:g} s")
    finally:
        client.close()
