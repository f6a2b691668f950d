"""Saving and loading a trained field: network weights, normalisation and config together.

The file is a plain dict of tensors and builtins, loaded with ``torch.load(weights_only=True)``
so that opening a checkpoint never runs code from it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..analysis.normalization import Normalization
from ..config.reconstruction import config_from_dict, config_to_dict
from ..device import resolve_device
from ..errors import CheckpointError, ConfigError
from .model import Siren
from .sdf_field import SdfField

FORMAT = "siren-recon-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(field: SdfField, path: str | os.PathLike) -> None:
    """Write ``field`` to ``path`` (parent folders are created)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mode": field.mode,
        "config": config_to_dict(field.config),
        "normalization": field.normalization.to_dict(),
        "bounds": [list(field.bounds[0]), list(field.bounds[1])],
        "support": torch.from_numpy(field.support),
        "state_dict": {k: v.detach().cpu() for k, v in field.model.state_dict().items()},
    }
    torch.save(payload, target)


def load_checkpoint(path: str | os.PathLike, device: str = "auto") -> SdfField:
    """Read a checkpoint written by :func:`save_checkpoint` onto ``device``."""
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"checkpoint {str(source)!r} does not exist")
    try:
        payload = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise CheckpointError(f"checkpoint {str(source)!r} cannot be read: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{str(source)!r} is not a siren-recon checkpoint")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint format version {payload.get('format_version')!r} is not supported "
            f"(this build reads {FORMAT_VERSION})"
        )
    try:
        config = config_from_dict(with_trim_choice(payload["config"]))
        model = Siren(config.model)
        model.load_state_dict(payload["state_dict"])
        normalization = Normalization.from_dict(payload["normalization"])
        lo, hi = payload["bounds"]
        bounds = (tuple(float(v) for v in lo), tuple(float(v) for v in hi))
        support = payload["support"].numpy().astype("float32")
        if support.ndim != 2 or support.shape[1] != 3:
            raise ValueError(f"support points have shape {tuple(support.shape)}")
    except (KeyError, ValueError, TypeError, RuntimeError, ConfigError) as exc:
        raise CheckpointError(f"checkpoint {str(source)!r} is incomplete or inconsistent: {exc}") from exc
    model.to(resolve_device(device)).eval()
    return SdfField(model, normalization, config, str(payload["mode"]), bounds, support)  # type: ignore[arg-type]


def with_trim_choice(config: dict) -> dict:
    """A saved config as this build reads it: one saved before ``mesh.trim`` existed trimmed
    exactly when its ``mesh.trim_distance`` was above 0, and is re-meshed the same way."""
    mesh = config.get("mesh")
    if not isinstance(mesh, dict) or "trim" in mesh:
        return config
    distance = mesh.get("trim_distance", 0.0)
    trim = "distance" if isinstance(distance, (int, float)) and distance > 0 else "off"
    return {**config, "mesh": {**mesh, "trim": trim}}
