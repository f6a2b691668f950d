"""What is wrong with a backend address or key file, said in one line before anything connects (no bpy)."""

from __future__ import annotations

import re

from .protocol.client import load_key_file
from .protocol.errors import SecurityError

TCP_ADDRESS = re.compile(r"^tcp://(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):(\d{1,5})$")
"""``tcp://HOST:PORT`` with a name, an IPv4 address or a bracketed IPv6 address."""
EXAMPLE = "tcp://127.0.0.1:5555"


class LinkError(ValueError):
    """A backend address or key file that cannot be used; its text is one line for the user."""


def address_problem(address: str) -> str | None:
    """Why ``address`` is not a backend address (``tcp://HOST:PORT``), or ``None`` when it is one."""
    text = address.strip()
    if not text:
        return f"no backend address: give one like {EXAMPLE}"
    if "://" not in text:
        return f"the backend address {text!r} needs its scheme: tcp://{text}"
    if not text.startswith("tcp://"):
        return f"the backend address {text!r} must start with tcp:// (like {EXAMPLE})"
    match = TCP_ADDRESS.match(text)
    if match is None:
        return f"the backend address {text!r} is not tcp://HOST:PORT (like {EXAMPLE})"
    if not 0 < int(match.group(2)) < 65536:
        return f"the port of {text!r} must be between 1 and 65535"
    return None


def key_file_problem(path: str, what: str, secret: bool = False) -> str | None:
    """Why the key file ``path`` (``what`` names it for the user) cannot be used, or ``None``.

    An empty path is no problem (no key). A ``secret`` file must hold a secret key.
    """
    if not path:
        return None
    try:
        _, secret_key = load_key_file(path)
    except SecurityError as exc:
        return f"{what}: {' '.join(str(exc).split())}"
    if secret and secret_key is None:
        return f"{what}: {path} holds no secret key (give the .key_secret file)"
    return None


def check_link(address: str, server_key_file: str = "", client_key_file: str = "") -> None:
    """Raise :class:`LinkError` with the first problem of an address and its key files."""
    problem = (
        address_problem(address)
        or key_file_problem(server_key_file, "Backend Public Key")
        or key_file_problem(client_key_file, "Your Secret Key", secret=True)
    )
    if problem is None and client_key_file and not server_key_file:
        problem = "Your Secret Key is set but Backend Public Key is not: set both, or neither"
    if problem is not None:
        raise LinkError(problem)
