"""Choice of the torch device, and of the CPU threads a run trains with."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from .errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; otherwise the named device, checked to exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {name!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available on this machine")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {name!r} is not supported (use auto, cpu or cuda)")
    return device


@contextlib.contextmanager
def cpu_threads(threads: int) -> Iterator[int]:
    """torch's CPU threads set to ``threads`` on the calling thread while inside, then set back
    (0: left as they are); yields the count in use.

    torch's own choice is one thread per physical core. The count belongs to the calling thread
    (OpenMP's and MKL's per-thread settings), so two jobs on two threads of one process (a
    server's workers) each keep theirs.
    """
    before = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        if threads > 0:
            torch.set_num_threads(before)
