"""A point cloud as read from a file, and the errors that name the file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..engine.errors import InputError


@dataclass
class Cloud:
    """A cloud file's points in the file's own coordinates, with what else it carried."""

    points: np.ndarray
    """float64 (N, 3): float64 because scanner files carry large offsets (UTM metres)."""
    normals: np.ndarray | None = None
    """float64 (N, 3), or ``None`` when the file has none."""
    colours: np.ndarray | None = None
    """float64 (N, 3) RGB in 0..1, or ``None`` when the file has none."""


def unreadable(path: str | os.PathLike, problem: str, code: str = "unreadable_file") -> InputError:
    """An :class:`InputError` naming the file and, on one line, the problem."""
    first_line = " ".join(str(problem).strip().splitlines()[:1]) or "unknown problem"
    return InputError(f"{str(path)!r}: {first_line}", code)


def check_format(path: str | os.PathLike, formats: tuple[str, ...], what: str) -> Path:
    """``path`` as a Path, or :class:`InputError` when its suffix is not one of ``formats``."""
    target = Path(path)
    if target.suffix.lower() not in formats:
        raise InputError(
            f"{str(target)!r}: unknown {what} format {target.suffix or '(none)'!r}; use one of {', '.join(formats)}",
            "unknown_format",
        )
    return target


def check_exists(path: Path) -> None:
    """:class:`InputError` when ``path`` is not a file."""
    if not path.is_file():
        raise InputError(f"{str(path)!r} does not exist", "unreadable_file")
