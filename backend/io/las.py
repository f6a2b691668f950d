"""LAS and LAZ files (ASPRS LiDAR point records) through laspy, LAZ through its lazrs backend.

A LAS file stores integer coordinates with a scale and an offset per axis (UTM coordinates: an
offset near 500,000 m and a scale of a millimetre or finer); laspy applies both in float64, and
the points stay float64 from here on, so the file's own precision survives.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import laspy
import numpy as np
from laspy.errors import LaspyException, PointFormatNotSupported

from ..engine.errors import InputError
from .cloud import Cloud, unreadable

EIGHT_BIT_MAX = 255
"""Largest colour value of a file that wrote 8-bit colours into LAS's 16-bit fields."""


def read_las(source: Path) -> Cloud:
    """The points of a LAS or LAZ file in its own coordinates, with its RGB colours when it has them."""
    try:
        with quiet_laspy(), laspy.open(source) as reader:
            header = reader.header
            expected = int(header.point_count)
            if expected == 0:
                raise unreadable(source, "holds no points (its header counts 0)", "empty_cloud")
            if not header.are_points_compressed:
                check_uncompressed_length(source, header)
            data = reader.read()
    except InputError:
        raise
    except PointFormatNotSupported as exc:
        raise unreadable(
            source, f"point format {exc} is not a LAS point format: no coordinates to read", "no_coordinates"
        ) from exc
    except LaspyException as exc:
        raise unreadable(source, f"not a readable LAS/LAZ file ({exc})") from exc
    except (RuntimeError, ValueError, EOFError, OSError) as exc:
        raise unreadable(source, f"truncated or damaged point records ({type(exc).__name__}: {exc})") from exc
    if len(data.points) < expected:
        raise unreadable(source, f"truncated: the header counts {expected} points, the file holds {len(data.points)}")
    points = np.column_stack([np.asarray(data.x), np.asarray(data.y), np.asarray(data.z)]).astype(np.float64)
    return Cloud(points=points, colours=las_colours(data))


@contextmanager
def quiet_laspy() -> Iterator[None]:
    """laspy logs a damaged file's error before raising it; the raised error is reported here, once."""
    logger = logging.getLogger("laspy")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def check_uncompressed_length(source: Path, header: laspy.LasHeader) -> None:
    """:func:`unreadable` when a LAS file is shorter than its header's point records need."""
    record = int(header.point_format.size)
    needed = int(header.offset_to_point_data) + int(header.point_count) * record
    have = source.stat().st_size
    if have < needed:
        held = max(0, have - int(header.offset_to_point_data)) // record
        raise unreadable(
            source, f"truncated: the header counts {header.point_count} points, the file holds {held} "
            f"({have} of {needed} bytes)",
        )


def las_colours(data: laspy.LasData) -> np.ndarray | None:
    """RGB in 0..1 of a point format with colours, else ``None``.

    LAS colours are 16-bit; some writers put 8-bit values in those fields, which shows as no
    value above 255: those are scaled by 255, the rest by 65535. A file whose colours are all
    zero has colour fields it never filled (common in point formats 2, 3, 5, 7, 8, 10): ``None``.
    """
    names = set(data.point_format.dimension_names)
    if not {"red", "green", "blue"} <= names:
        return None
    rgb = np.column_stack([np.asarray(data.red), np.asarray(data.green), np.asarray(data.blue)]).astype(np.float64)
    if not rgb.any():
        return None
    top = EIGHT_BIT_MAX if rgb.size and rgb.max() <= EIGHT_BIT_MAX else 65535
    return rgb / top
