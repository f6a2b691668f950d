"""The add-on's running state: one backend session and perhaps one local backend (no bpy)."""

from __future__ import annotations

from .backend_process import LocalBackend
from .session import Session

session: Session | None = None
local_backend = LocalBackend()


def session_for(address: str) -> Session:
    """The session for ``address``; a different address replaces (and disconnects) the old one."""
    global session
    if session is not None and session.address != address:
        session.disconnect("address changed")
        session = None
    if session is None:
        session = Session(address=address)
    return session


def shutdown() -> None:
    """Cancel jobs, close the socket and stop a backend we started (add-on disabled, Blender quits)."""
    global session
    if session is not None:
        session.disconnect("the add-on was disabled")
        session = None
    local_backend.stop()
