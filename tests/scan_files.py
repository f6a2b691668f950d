"""Small scanner files written by laspy and pye57 themselves, and coloured meshes read back by hand.

The mesh readers parse each format's text or buffers directly rather than through Open3D, whose
OBJ and glTF readers round coordinates to float32 and ignore a glTF node's translation.
"""

from __future__ import annotations

import base64
import json
import re
import struct
from pathlib import Path

import laspy
import numpy as np
import pye57
from pye57 import libe57

UTM = np.array([500_000.0, 4_500_000.0, 100.0])
"""An offset like a UTM easting and northing, in metres."""


def write_las(path: Path, points: np.ndarray, rgb: np.ndarray | None = None, scale: float = 1e-4,
              offsets: np.ndarray = UTM) -> np.ndarray:
    """A LAS (or, by the suffix, LAZ) file of ``points`` with 16-bit ``rgb``; returns the points as stored."""
    header = laspy.LasHeader(point_format=3 if rgb is not None else 0, version="1.2")
    header.offsets = np.asarray(offsets, dtype=np.float64)
    header.scales = np.array([scale] * 3)
    las = laspy.LasData(header)
    las.x, las.y, las.z = (points[:, i] for i in range(3))
    if rgb is not None:
        las.red, las.green, las.blue = (np.asarray(rgb[:, i], dtype=np.uint16) for i in range(3))
    las.write(str(path))
    return np.column_stack([np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)])


def quaternion(axis: tuple[float, float, float], angle: float) -> np.ndarray:
    """The unit quaternion (w, x, y, z) of a rotation by ``angle`` radians about ``axis``."""
    a = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    return np.array([np.cos(angle / 2), *(np.sin(angle / 2) * a)])


def rotation(q: np.ndarray) -> np.ndarray:
    """The rotation matrix of a unit quaternion (w, x, y, z), by Rodrigues' formula."""
    w, v = q[0], q[1:]
    skew = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + 2 * w * skew + 2 * skew @ skew


def write_e57(path: Path, scans: list[dict]) -> None:
    """An E57 file of ``scans``: each ``local`` points, ``rgb`` 8-bit colours, ``q`` and ``t`` its pose."""
    with pye57.E57(str(path), mode="w") as e57:
        for index, scan in enumerate(scans):
            local = scan["local"]
            data = {"cartesianX": local[:, 0], "cartesianY": local[:, 1], "cartesianZ": local[:, 2]}
            if scan.get("rgb") is not None:
                data.update(colorRed=scan["rgb"][:, 0].astype(np.uint8), colorGreen=scan["rgb"][:, 1].astype(np.uint8),
                            colorBlue=scan["rgb"][:, 2].astype(np.uint8))
            e57.write_scan_raw(data, name=f"station {index + 1}", rotation=scan["q"], translation=scan["t"])


def write_e57_without_coordinates(path: Path, count: int = 50) -> None:
    """An E57 file whose one scan has only an intensity field."""
    with pye57.E57(str(path), mode="w") as e57:
        image = e57.image_file
        scan = libe57.StructureNode(image)
        scan.set("guid", libe57.StringNode(image, "{00000000-0000-0000-0000-000000000001}"))
        scan.set("name", libe57.StringNode(image, "intensity only"))
        prototype = libe57.StructureNode(image)
        prototype.set("intensity", libe57.FloatNode(image, 0.0, libe57.E57_SINGLE, 0.0, 1.0))
        points = libe57.CompressedVectorNode(image, prototype, libe57.VectorNode(image, True))
        scan.set("points", points)
        e57.data3d.append(scan)
        arrays, buffers = e57.make_buffers(["intensity"], count)
        arrays["intensity"][:] = np.linspace(0.0, 1.0, count)
        writer = points.writer(buffers)
        writer.write(count)
        writer.close()


def damage_e57_scan(path: Path, scan: int) -> None:
    """Flip bytes in a page that holds only scan ``scan``'s (0-based) points, so its checksum fails.

    E57 pages are 1024 bytes, the last 4 a checksum; the XML section at the end (its physical
    offset and logical length in the file header) gives each scan's binary section offset.
    """
    data = bytearray(path.read_bytes())
    _, _, _, _, xml_offset, xml_length = struct.unpack("<8sIIQQQ", data[:40])
    logical = b"".join(bytes(data[i:i + 1020]) for i in range(0, len(data), 1024))
    start = (xml_offset // 1024) * 1020 + xml_offset % 1024
    xml = logical[start:start + xml_length].decode()
    offsets = [int(x) for x in re.findall(r'<points type="CompressedVector" fileOffset="(\d+)"', xml)]
    target = (offsets[scan] // 1024 + 2) * 1024 + 100
    end = offsets[scan + 1] if scan + 1 < len(offsets) else xml_offset
    assert target + 50 < end, "the scan is too small to hold a page of its own"
    for i in range(target, target + 50):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def read_coloured_mesh(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Vertices (float64, placed by any glTF node translation) and vertex colours (0..1) of a mesh file."""
    suffix = path.suffix.lower()
    if suffix == ".obj":
        rows = np.array([[float(x) for x in line.split()[1:]] for line in path.read_text().splitlines()
                         if line.startswith("v ")])
        return rows[:, :3], rows[:, 3:6] if rows.shape[1] >= 6 else None
    if suffix == ".ply":
        import open3d as o3d

        mesh = o3d.io.read_triangle_mesh(str(path))
        header = path.read_bytes()[:400]
        assert b"property double x" in header, "PLY vertices must be double"
        colours = np.asarray(mesh.vertex_colors) if mesh.has_vertex_colors() else None
        return np.asarray(mesh.vertices), colours
    if suffix in (".glb", ".gltf"):
        return read_gltf(path)
    raise ValueError(suffix)


def read_gltf(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """POSITION plus the node's translation, and COLOR_0, of a one-mesh .glb or .gltf."""
    raw = path.read_bytes()
    if path.suffix.lower() == ".glb":
        length = struct.unpack("<I", raw[12:16])[0]
        document = json.loads(raw[20:20 + length])
        binary = raw[20 + length + 8:]
    else:
        document = json.loads(raw)
        binary = base64.b64decode(document["buffers"][0]["uri"].split(",", 1)[1])

    def accessor(index: int) -> np.ndarray:
        acc = document["accessors"][index]
        view = document["bufferViews"][acc["bufferView"]]
        assert acc["componentType"] == 5126 and acc["type"] == "VEC3"
        data = np.frombuffer(binary, np.float32, acc["count"] * 3, view.get("byteOffset", 0) + acc.get("byteOffset", 0))
        return data.reshape(-1, 3).astype(np.float64)

    attributes = document["meshes"][0]["primitives"][0]["attributes"]
    translation = np.asarray(document["nodes"][0].get("translation", [0.0, 0.0, 0.0]))
    colours = accessor(attributes["COLOR_0"]) if "COLOR_0" in attributes else None
    return accessor(attributes["POSITION"]) + translation, colours
