"""Choice of the torch device."""

from __future__ import annotations

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
