"""Text point clouds, one point a line: ``.xyz`` (x y z), ``.xyzn`` (and nx ny nz), ``.xyzrgb`` (and r g b).

A line is read as C's ``sscanf("%lf %lf %lf ...")`` reads it, which is how Open3D reads these
files: the leading numbers count, whatever follows them is ignored, and a line with too few
leading numbers (a header, a comment, a blank line) is skipped. ``.xyzrgb`` colours are taken as
written (0..1).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from .cloud import Cloud, unreadable

TEXT_CLOUD_FORMATS = (".xyz", ".xyzn", ".xyzrgb")

COLUMNS = {".xyz": 3, ".xyzn": 6, ".xyzrgb": 6}
"""How many leading numbers make a point, per suffix."""

NUMBER = (rb"[+-]?(?:0x(?:[0-9a-f]+\.?[0-9a-f]*|\.[0-9a-f]+)(?:p[+-]?\d+)?"
          rb"|inf(?:inity)?|nan|(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)")
"""A hexadecimal or decimal number, ``inf`` or ``nan``: what C's ``strtod`` reads at the start of a word."""


def read_text_cloud(source: Path) -> Cloud:
    """The points (and normals or colours, by the suffix) of a text cloud; :func:`unreadable` when it has none."""
    suffix = source.suffix.lower()
    table = numbers(source, COLUMNS[suffix])
    if len(table) == 0:
        raise unreadable(source, "could not be read as a point cloud, or holds no points")
    points = np.ascontiguousarray(table[:, :3])
    rest = np.ascontiguousarray(table[:, 3:6])
    return Cloud(
        points=points,
        normals=rest if suffix == ".xyzn" else None,
        colours=rest if suffix == ".xyzrgb" else None,
    )


def numbers(source: Path, width: int) -> np.ndarray:
    """The first ``width`` numbers of every line that starts with that many, float64 (N, width).

    A file of plain columns is parsed by NumPy in one pass; any other file line by line.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            table = np.loadtxt(source, dtype=np.float64, usecols=range(width), ndmin=2, encoding="latin-1")
        return table.reshape(-1, width)
    except ValueError:
        pass
    pattern = re.compile(rb"\s*" + rb"\s*".join([b"(" + NUMBER + b")"] * width), re.IGNORECASE)
    rows = []
    for line in source.read_bytes().splitlines():
        match = pattern.match(line)
        if match:
            rows.append([to_float(value) for value in match.groups()])
    return np.array(rows, dtype=np.float64).reshape(-1, width)


def to_float(word: bytes) -> float:
    """The value of one :data:`NUMBER`."""
    text = word.decode("ascii")
    return float.fromhex(text) if "x" in text.lower() else float(text)
