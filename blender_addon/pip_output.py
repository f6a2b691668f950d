"""Reading pip's console output: a short progress line while it runs, one reason when it fails (plain logic)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_PROGRESS = re.compile(r"^Progress (\d+) of (\d+)\s*$")
_COLLECTING = re.compile(r"^Collecting (\S+)")
_DOWNLOADING = re.compile(r"^\s*Downloading (\S+?)(?:\.whl|\.tar\.gz|\.zip)?(?: \(([^)]+)\))?\s*$")
_USING_CACHED = re.compile(r"^\s*Using cached (\S+?)(?:\.whl|\.tar\.gz|\.zip)?(?: \(([^)]+)\))?\s*$")
_PROCESSING = re.compile(r"^Processing (\S+)")
_INSTALLING = re.compile(r"^Installing collected packages: (.*)$")
_NO_MATCH = re.compile(r"No matching distribution found for (\S+)(?: \(from ([^)]+)\))?")
_NOT_SUPPORTED = re.compile(r"(\S+\.whl) is not a supported wheel on this platform")
_HOST = re.compile(r"host='([^']+)', port=(\d+)")
_INDEX = re.compile(r"^Looking in indexes: \w+://([^/:\s,]+):?(\d*)", re.M)
"""The first index pip names, for pip releases whose connection errors do not name the host."""


def is_progress(line: str) -> bool:
    """Whether ``line`` is one of ``--progress-bar raw``'s ``Progress N of M`` lines (kept out of the log)."""
    return _PROGRESS.match(line) is not None


def _short_name(filename: str) -> str:
    """``torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64`` -> ``torch 2.13.0+cpu``."""
    parts = filename.rsplit("/", 1)[-1].split("-")
    return " ".join(parts[:2]) if len(parts) > 1 else parts[0]


@dataclass
class PipProgress:
    """What pip is doing now, read line by line from its output: ``line`` is what the add-on shows."""

    line: str = "Starting pip"
    collected: int = 0
    _download: str = ""

    def feed(self, text: str) -> bool:
        """Read one line of pip's output; returns whether :attr:`line` changed."""
        text = text.rstrip("\r\n")
        if match := _PROGRESS.match(text):
            done, total = int(match[1]), int(match[2])
            if not self._download or total <= 0:
                return False
            self.line = f"{self._download} {100 * done // total}%"
            return True
        if match := _COLLECTING.match(text):
            self.collected += 1
            self.line = f"Collecting {match[1]} (package {self.collected})"
            return True
        if match := _DOWNLOADING.match(text):
            size = f" ({match[2]})" if match[2] else ""
            self._download = f"Downloading {_short_name(match[1])}{size}"
            self.line = self._download
            return True
        if match := _USING_CACHED.match(text):
            self._download = ""
            self.line = f"Using cached {_short_name(match[1])}"
            return True
        if match := _PROCESSING.match(text):
            self.line = f"Processing {_short_name(match[1])}"
            return True
        if match := _INSTALLING.match(text):
            count = len([name for name in match[1].split(",") if name.strip()])
            self.line = f"Installing {count} package{'s' if count != 1 else ''}"
            return True
        if text.startswith("Successfully installed"):
            self.line = "Installed; checking it"
            return True
        return False


def _matches(text: str, *needles: str) -> bool:
    lowered = text.lower()
    return any(needle.lower() in lowered for needle in needles)


def classify_failure(output: str) -> str:
    """One short reason for a failed ``pip install`` from its output (and traceback, if any).

    The order matters: an unreachable index also ends in "No matching distribution", so the
    network causes are looked for first.
    """
    if _matches(output, "No space left on device", "[Errno 28]", "Disk quota exceeded", "There is not enough space"):
        return "no space left on the disk"
    if _matches(output, "Permission denied", "Operation not permitted", "[Errno 13]", "[WinError 5]",
                "Access is denied", "Read-only file system"):
        return "no permission to write the install folder"
    if _matches(output, "ProxyError", "Tunnel connection failed", "Proxy Authentication Required",
                "Cannot connect to proxy", "Unable to connect to proxy"):
        return "the proxy refused the connection (check pip's proxy setting or HTTPS_PROXY)"
    if _matches(output, "SSLError", "CERTIFICATE_VERIFY_FAILED", "problem confirming the ssl certificate",
                "check_hostname requires server_hostname"):
        return "SSL error: the index's certificate was not accepted (pip's 'cert' setting may be needed)"
    if _matches(output, "NewConnectionError", "Failed to establish a new connection", "Connection refused",
                "Name or service not known", "Temporary failure in name resolution", "getaddrinfo failed",
                "nodename nor servname", "Network is unreachable", "No route to host", "ConnectTimeoutError",
                "Read timed out", "connection error", "RemoteDisconnected", "Connection reset by peer"):
        host = _HOST.search(output) or _INDEX.search(output)
        where = f" ({host[1]}:{host[2]})" if host and host[2] else f" ({host[1]})" if host else ""
        return f"no network: the package index could not be reached{where}"
    if match := _NO_MATCH.search(output):
        needed_by = f", needed by {match[2]}" if match[2] else ""
        return f"no matching distribution for {match[1]}{needed_by}: no wheel for this Python and platform"
    if match := _NOT_SUPPORTED.search(output):
        return f"no matching distribution: {match[1]} is not a supported wheel for this Python and platform"
    if _matches(output, "ResolutionImpossible", "conflicting dependencies"):
        return "the dependencies conflict (no set of versions fits together)"
    if _matches(output, "THESE PACKAGES DO NOT MATCH THE HASHES", "hash mismatch"):
        return "a download was corrupted (its hash does not match): try Repair"
    if _matches(output, "subprocess-exited-with-error", "Failed building wheel", "metadata-generation-failed"):
        return "a package has no wheel for this Python and would have to be built"
    return ""
