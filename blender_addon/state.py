"""The add-on's running state: one backend session and perhaps one local backend (no bpy)."""

from __future__ import annotations

from .backend_process import LocalBackend
from .session import Session

session: Session | None = None
local_backend = LocalBackend()


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


def shutdown() -> None:
    """Cancel jobs, close the socket and stop a backend we started (add-on disabled, Blender quits)."""
    global session
    if session is not None:
        session.disconnect("the add-on was disabled")
        session = None
    local_backend.stop()
