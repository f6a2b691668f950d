"""E57 files (ASTM E2807, the exchange format of terrestrial scanners) through pye57.

An E57 file holds one or more scans, each in its scanner's own frame with a pose (a rotation
quaternion and a translation) into the file's common frame; every scan's points are moved into
that frame here, so a multi-station file reads as one consistent cloud. Scans stored in
spherical coordinates (range, azimuth, elevation) are converted to cartesian first. Points a
scan marks invalid are dropped. Colours are scaled to 0..1 by the scan's colour limits; a file
in which some scans have colours and others do not reads without colours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pye57
from pye57 import libe57

from ..engine.errors import InputError
from .cloud import Cloud, unreadable

SIGNATURE = b"ASTM-E57"
CARTESIAN = ("cartesianX", "cartesianY", "cartesianZ")
SPHERICAL = ("sphericalRange", "sphericalAzimuth", "sphericalElevation")
COLOURS = ("colorRed", "colorGreen", "colorBlue")


def read_e57(source: Path) -> Cloud:
    """Every scan of an E57 file in the file's common frame, float64, with colours when all scans have them."""
    with open(source, "rb") as handle:
        if handle.read(len(SIGNATURE)) != SIGNATURE:
            raise unreadable(source, "not an E57 file (no ASTM-E57 signature)")
    try:
        image = pye57.E57(str(source))
    except Exception as exc:  # libE57 raises its own exception type for every kind of damage
        raise unreadable(source, f"truncated or damaged E57 file ({first_line(exc)})") from exc
    try:
        count = image.scan_count
        if count == 0:
            raise unreadable(source, "holds no scans", "empty_cloud")
        scans = [read_scan(image, source, index, count) for index in range(count)]
    finally:
        image.close()
    points = np.concatenate([scan.points for scan in scans])
    if len(points) == 0:
        raise unreadable(source, f"holds no points (its {count} scan(s) are empty)", "empty_cloud")
    coloured = all(scan.colours is not None for scan in scans)
    colours = np.concatenate([scan.colours for scan in scans if scan.colours is not None]) if coloured else None
    return Cloud(points=points, colours=colours)


def read_scan(image: pye57.E57, source: Path, index: int, count: int) -> Cloud:
    """Scan ``index`` in the file's frame; an error names the scan by number and name."""
    label = f"scan {index + 1} of {count}"
    try:
        header = image.get_header(index)
        label += f" ({scan_name(header)!r})"
        fields = set(header.point_fields)
        if set(CARTESIAN) <= fields:
            coordinates, invalid_field = CARTESIAN, "cartesianInvalidState"
        elif set(SPHERICAL) <= fields:
            coordinates, invalid_field = SPHERICAL, "sphericalInvalidState"
        else:
            raise unreadable(
                source, f"{label} has no coordinates (its fields: {', '.join(sorted(fields)) or 'none'})",
                "no_coordinates",
            )
        wanted = list(coordinates)
        if invalid_field in fields:
            wanted.append(invalid_field)
        has_colours = set(COLOURS) <= fields
        if has_colours:
            wanted.extend(COLOURS)
        values = read_fields(image, header, wanted)
    except InputError:
        raise
    except Exception as exc:  # damaged pages, bad checksums, odd nodes: all libE57's own exceptions
        raise unreadable(source, f"{label} could not be read ({first_line(exc)})", "unreadable_scan") from exc
    keep = values[invalid_field] == 0 if invalid_field in values else slice(None)
    local = np.column_stack([values[name][keep] for name in coordinates])
    if coordinates == SPHERICAL:
        local = spherical_to_cartesian(local)
    rotation, translation = scan_pose(header)
    points = local @ rotation.T + translation
    colours = None
    if has_colours:
        colours = np.column_stack([scale_colour(header, name, values[name][keep]) for name in COLOURS])
    return Cloud(points=points, colours=colours)


def read_fields(image: pye57.E57, header: Any, names: list[str]) -> dict[str, np.ndarray]:
    """Every point's value of each named field, as float64 (libE57 converts and applies scales)."""
    count = header.point_count
    values = {name: np.empty(count, dtype=np.float64) for name in names}
    buffers = libe57.VectorSourceDestBuffer()
    for name in names:
        buffers.append(libe57.SourceDestBuffer(image.image_file, name, values[name], count, True, True))
    reader = header.points.reader(buffers)
    try:
        got = reader.read()
    finally:
        reader.close()
    if got != count:
        raise ValueError(f"{got} of {count} points could be read")
    return values


def scan_name(header: Any) -> str:
    """The scan's ``name``, or an empty string when it has none."""
    try:
        return str(header["name"].value())
    except Exception:  # the name is optional in E57
        return ""


def scan_pose(header: Any) -> tuple[np.ndarray, np.ndarray]:
    """The rotation matrix and translation that take the scan's points into the file's frame."""
    if not header.has_pose():
        return np.eye(3), np.zeros(3)
    pose = header["pose"]
    rotation = np.eye(3)
    if pose.isDefined("rotation"):
        w, x, y, z = (float(pose["rotation"][axis].value()) for axis in ("w", "x", "y", "z"))
        rotation = quaternion_matrix(w, x, y, z)
    translation = np.zeros(3)
    if pose.isDefined("translation"):
        translation = np.array([float(pose["translation"][axis].value()) for axis in ("x", "y", "z")])
    return rotation, translation


def quaternion_matrix(w: float, x: float, y: float, z: float) -> np.ndarray:
    """The rotation matrix of the quaternion ``w + xi + yj + zk`` (normalised first)."""
    norm = np.sqrt(w * w + x * x + y * y + z * z)
    if norm == 0.0:
        raise ValueError("the scan's pose rotation is a zero quaternion")
    w, x, y, z = w / norm, x / norm, y / norm, z / norm
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def spherical_to_cartesian(rae: np.ndarray) -> np.ndarray:
    """E57's spherical coordinates (range, azimuth, elevation; radians) as x, y, z."""
    distance, azimuth, elevation = rae[:, 0], rae[:, 1], rae[:, 2]
    flat = distance * np.cos(elevation)
    return np.column_stack([flat * np.cos(azimuth), flat * np.sin(azimuth), distance * np.sin(elevation)])


def scale_colour(header: Any, name: str, values: np.ndarray) -> np.ndarray:
    """One colour channel in 0..1: by the scan's ``colorLimits``, else by its field's own limits."""
    low, high = colour_limits(header, name)
    if high <= low:
        return np.zeros_like(values)
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def colour_limits(header: Any, name: str) -> tuple[float, float]:
    """The smallest and largest value a colour channel can take in this scan."""
    if header.node.isDefined("colorLimits"):
        limits = header["colorLimits"]
        low, high = f"{name}Minimum", f"{name}Maximum"
        if limits.isDefined(low) and limits.isDefined(high):
            return float(limits[low].value()), float(limits[high].value())
    field = libe57.StructureNode(header.points.prototype()).get(name)
    if field.type() == libe57.NodeType.E57_INTEGER:
        node = libe57.IntegerNode(field)
        return float(node.minimum()), float(node.maximum())
    return 0.0, 255.0


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text (libE57 appends several lines of debug information)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
