"""The add-on's running state: one backend session and perhaps one local backend process (no bpy).

Starting the local backend never waits: :func:`start_local` returns as soon as the process is
launched (or an earlier one found), and :func:`tick`, called from Blender's timer, watches the
process and the session: the welcome connects, the process's exit is reported with its log.
"""

from __future__ import annotations

import os

from .backend_process import Launch, LocalBackend
from .session import JobState, Session

START_TIMEOUT = 180.0
"""Seconds a fresh local backend may take to answer (it imports torch first; its exit is seen at once)."""
ADOPT_TIMEOUT = 5.0
"""Seconds a backend found from an earlier Blender's run file has to answer before it is stopped."""

session: Session | None = None
local_backend = LocalBackend()
_pending_launch: Launch | None = None
"""The launch to run when an adopted backend does not answer."""
exit_report: list[str] = []
"""How the local backend ended and its log's last lines, while no new one runs."""
local_address = ""
"""The address of the last local backend started or found: its session outlives its process."""
_resubmit_on_connect = False
"""Send the interrupted jobs again as soon as the restarted local backend answers."""


def session_for(address: str, server_key_file: str = "", client_key_file: str = "") -> Session:
    """The session for ``address`` and key files; other settings replace (and disconnect) the old one."""
    global session
    wanted = (address, server_key_file, client_key_file)
    if session is not None and (session.address, session.server_key_file, session.client_key_file) != wanted:
        session.disconnect("address or keys changed")
        session = None
    if session is None:
        session = Session(address=address, server_key_file=server_key_file, client_key_file=client_key_file)
    return session


def linked() -> bool:
    """Whether a session has a socket open (connected, connecting or waiting for a lost backend)."""
    return session is not None and session.client is not None


def is_local(candidate: Session | None) -> bool:
    """Whether ``candidate`` talks to the local backend process."""
    return candidate is not None and bool(local_backend.pid) and candidate.address == local_backend.address


def orphaned(candidate: Session | None) -> bool:
    """Whether ``candidate`` is the open session of a local backend whose process has ended."""
    return candidate is not None and candidate.client is not None and bool(local_address) \
        and candidate.address == local_address and not local_backend.running


def start_local(launch: Launch, folder: str | os.PathLike) -> Session:
    """Connect to the local backend, starting it first; returns at once, the session ``connecting``.

    A backend left running by an earlier Blender (its run file in ``folder``) is tried first; it
    is stopped and ``launch`` run when it does not answer within :data:`ADOPT_TIMEOUT`. The session
    uses no key files: the local backend listens on the loopback only, without CURVE.
    """
    global _pending_launch
    exit_report.clear()
    if local_backend.running and is_local(session) and linked():
        return session
    if local_backend.running:
        return _connect_local(local_backend.address, START_TIMEOUT,
                              f"connecting to the local backend (pid {local_backend.pid})")
    if orphaned(session):  # started again where the ended one listened: its session and jobs carry on
        address = local_backend.start(launch, folder, address=session.address)
        _pending_launch = None
        return _connect_local(address, START_TIMEOUT, f"starting the local backend again (pid {local_backend.pid})")
    address = local_backend.adopt(folder)
    if address is not None:
        _pending_launch = launch
        return _connect_local(address, ADOPT_TIMEOUT, f"found the backend left running (pid {local_backend.pid})")
    address = local_backend.start(launch, folder)
    _pending_launch = None
    return _connect_local(address, START_TIMEOUT, f"starting the local backend (pid {local_backend.pid})")


def _connect_local(address: str, timeout: float, message: str) -> Session:
    global local_address
    local_address = address
    local = session_for(address)
    local.connect_timeout = timeout
    local.connect()
    local.message = message
    return local


def stop_local(reason: str = "the local backend was stopped") -> None:
    """Stop the local backend (and disconnect its session)."""
    global _pending_launch, _resubmit_on_connect
    if is_local(session) or orphaned(session):
        session.disconnect(reason)
    _resubmit_on_connect = False
    local_backend.stop()
    _pending_launch = None


def resubmit(launch: Launch | None, folder: str | os.PathLike) -> str:
    """Send the interrupted jobs again: at once to a backend that runs, or, when the local backend
    has ended, once ``launch`` has started it again (at the same address). Returns what was done."""
    global _resubmit_on_connect
    if session is None:
        return "nothing to resubmit"
    if orphaned(session) and launch is not None:
        start_local(launch, folder)
        _resubmit_on_connect = True
        return f"starting the local backend again for {len(session.interrupted_jobs())} job(s)"
    return f"resubmitted {len(session.resubmit())} job(s)"


def tick(budget: float = 0.004) -> list[JobState]:
    """Watch the local backend and drain the session; returns the jobs with a new mesh."""
    global _pending_launch, _resubmit_on_connect
    was_local = is_local(session)
    if local_backend.poll_exit():
        exit_report[:] = local_backend.exit_report()
        _pending_launch = None
        if was_local:
            session.backend_gone(exit_report[0])
    if session is None:
        return []
    changed = session.tick(budget=budget)
    if _resubmit_on_connect and session.status == "connected":
        _resubmit_on_connect = False
        session.resubmit()
    if _pending_launch is not None and local_backend.adopted and is_local(session):
        if session.status == "connected":
            _pending_launch = None
            session.message += f" (the backend left running, pid {local_backend.pid})"
        elif session.status == "unreachable":
            launch, folder = _pending_launch, local_backend.folder
            session.disconnect("the backend left running did not answer: stopped")
            local_backend.stop(timeout=2.0)
            start_local(launch, folder)
    elif is_local(session) and session.status == "unreachable" and session.message.startswith("no backend"):
        session.message = (f"the local backend did not answer within {session.connect_timeout:g} s; "
                           f"its log: {local_backend.log_path}")
    return changed


def busy() -> bool:
    """Whether something is under way: a job, or a backend starting."""
    return session is not None and (session.status == "connecting" or bool(session.active_jobs()))


def view_signature() -> tuple:
    """What the panel and status bar show; the views need drawing again only when it changes (or while busy)."""
    return (session.signature() if session is not None else None, local_backend.pid, tuple(exit_report))


def shutdown() -> None:
    """Cancel jobs, close the socket and stop the local backend (add-on disabled, Blender quits)."""
    global session
    if session is not None:
        session.disconnect("the add-on was disabled")
        session = None
    stop_local()
