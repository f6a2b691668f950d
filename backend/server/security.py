"""CURVE security of the backend's socket: key files, the ZAP authenticator, the bind and loopback checks.

Everything here is libzmq's CurveZMQ and pyzmq's ``zmq.auth``; nothing is home-made crypto.
With a secret key the link is encrypted and the server proves who it is; with a folder of
allowed client keys only those clients get in. ZeroMQ reports the client's public key with each
message (``User-Id``), which the server uses to keep one client's jobs from another.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import zmq
from zmq.auth.thread import ThreadAuthenticator

from siren_recon.protocol.client import load_key_file

from ..engine.errors import ConfigError

log = logging.getLogger(__name__)


def generate_keys(directory: str | Path, name: str = "server") -> tuple[Path, Path]:
    """Write ``NAME.key`` (public, to hand out) and ``NAME.key_secret`` (keep private) in ``directory``."""
    import zmq.auth

    if not zmq.has("curve"):
        raise ConfigError("this pyzmq's libzmq was built without CURVE security")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    secret = folder / f"{name}.key_secret"
    if secret.exists():
        raise ConfigError(f"{secret} exists already; remove it or choose another --name")
    public, secret_path = zmq.auth.create_certificates(str(folder), name)
    Path(secret_path).chmod(0o600)
    return Path(public), Path(secret_path)


def is_loopback(endpoint: str) -> bool:
    """Whether a ZeroMQ endpoint only listens on this machine."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    return is_loopback_host(urlparse(endpoint).hostname or "")


def is_loopback_host(host: str) -> bool:
    """Whether a host name or IP address (no port) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(bind: str, curve: bool, insecure: bool, loopback: bool) -> None:
    """Refuse to listen beyond this machine in plain text unless ``insecure`` says so, loudly."""
    if loopback or curve:
        return
    if not insecure:
        raise ConfigError(
            f"refusing to listen on {bind} without CURVE: give --curve-secret-key (and --allowed-clients), "
            "or --insecure if the network is trusted"
        )
    log.warning(
        "INSECURE: listening on %s without authentication or encryption (--insecure): anyone who can "
        "reach it can submit jobs and read results", bind,
    )


class CurveSecurity:
    """Turns a server socket into a CURVE server and runs the authenticator that vets clients."""

    def __init__(self, context: zmq.Context, secret_key_file: str, allowed_clients: str = "") -> None:
        if not zmq.has("curve"):
            raise ConfigError("this pyzmq's libzmq was built without CURVE security")
        public, secret = load_key_file(secret_key_file)
        if secret is None:
            raise ConfigError(f"{secret_key_file} holds no secret key (give the .key_secret file)")
        if allowed_clients and not Path(allowed_clients).is_dir():
            raise ConfigError(f"--allowed-clients {allowed_clients} is not a folder")
        self.public, self.secret = public, secret
        self.allowed_clients = allowed_clients
        self.authenticator = ThreadAuthenticator(context, log=logging.getLogger(f"{__name__}.zap"))

    def start(self) -> None:
        self.authenticator.start()
        if self.allowed_clients:
            count = len(list(Path(self.allowed_clients).glob("*.key")))
            self.authenticator.configure_curve(domain="*", location=self.allowed_clients)
            log.info("CURVE on: %d client keys allowed from %s", count, self.allowed_clients)
        else:
            self.authenticator.configure_curve(domain="*", location=zmq.auth.CURVE_ALLOW_ANY)
            log.info("CURVE on: encrypted; any client key accepted (no --allowed-clients)")

    def apply(self, sock: Any) -> None:
        sock.curve_server = True
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret

    def stop(self) -> None:
        self.authenticator.stop()
