"""A minimal glTF 2.0 writer (.glb binary and single-file .gltf) for triangle meshes.

Open3D 0.20 writes .glb files whose buffer views point past their buffer (readers reject
them) and .gltf files with float32 positions far from the origin, so the CLI writes both
itself: one mesh, positions, normals, vertex colours when there are any, and uint32 indices.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from typing import Any

import numpy as np

from ..geometry.normals import vertex_normals

GLB_MAGIC = 0x46546C67
JSON_CHUNK = 0x4E4F534A
BIN_CHUNK = 0x004E4942
FLOAT, UINT32 = 5126, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963


def _pad(data: bytes, fill: bytes) -> bytes:
    return data + fill * (-len(data) % 4)


def gltf_document(
    vertices: np.ndarray, faces: np.ndarray, colours: np.ndarray | None = None
) -> tuple[dict[str, Any], bytes]:
    """The glTF JSON document and its one binary buffer: positions, normals, colours, indices.

    glTF positions are float32, which rounds a coordinate near 500,000 (UTM metres) to 3 cm. A
    mesh farther from the origin than its own diagonal is therefore stored around its box's
    centre and placed by its node's ``translation``, which the JSON keeps in full float64.
    """
    v = np.asarray(vertices, dtype=np.float64)
    lo, hi = (v.min(axis=0), v.max(axis=0)) if len(v) else (np.zeros(3), np.zeros(3))
    centre = (lo + hi) / 2.0
    far = float(np.abs(centre).max()) > float(np.linalg.norm(hi - lo))
    origin = centre if far else np.zeros(3)
    positions = np.ascontiguousarray(v - origin, dtype=np.float32)
    normals = np.ascontiguousarray(vertex_normals(v, faces), dtype=np.float32)
    indices = np.ascontiguousarray(faces, dtype=np.uint32).reshape(-1)
    arrays: list[tuple[np.ndarray, int, dict[str, Any]]] = [
        (positions, ARRAY_BUFFER, {"componentType": FLOAT, "count": len(positions), "type": "VEC3",
                                   "min": positions.min(axis=0).tolist() if len(positions) else [0.0] * 3,
                                   "max": positions.max(axis=0).tolist() if len(positions) else [0.0] * 3}),
        (normals, ARRAY_BUFFER, {"componentType": FLOAT, "count": len(normals), "type": "VEC3"}),
    ]
    attributes = {"POSITION": 0, "NORMAL": 1}
    if colours is not None:
        rgb = np.ascontiguousarray(np.clip(colours, 0.0, 1.0), dtype=np.float32)
        attributes["COLOR_0"] = len(arrays)
        arrays.append((rgb, ARRAY_BUFFER, {"componentType": FLOAT, "count": len(rgb), "type": "VEC3"}))
    arrays.append((indices, ELEMENT_ARRAY_BUFFER, {"componentType": UINT32, "count": len(indices), "type": "SCALAR"}))
    views, accessors, offset = [], [], 0
    for index, (data, target, accessor) in enumerate(arrays):
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": data.nbytes, "target": target})
        accessors.append({"bufferView": index, **accessor})
        offset += data.nbytes
    binary = _pad(b"".join(data.tobytes() for data, _, _ in arrays), b"\x00")
    node: dict[str, Any] = {"mesh": 0}
    if far:
        node["translation"] = [float(c) for c in origin]
    document = {
        "asset": {"version": "2.0", "generator": "siren-recon"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [node],
        "meshes": [{"primitives": [{"attributes": attributes, "indices": len(arrays) - 1, "mode": 4}]}],
        "buffers": [{"byteLength": len(binary)}],
        "bufferViews": views,
        "accessors": accessors,
    }
    return document, binary


def write_glb(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray,
              colours: np.ndarray | None = None) -> None:
    """Write one triangle mesh (with vertex colours when given) as a binary .glb file."""
    document, binary = gltf_document(vertices, faces, colours)
    text = _pad(json.dumps(document, separators=(",", ":")).encode(), b" ")
    total = 12 + 8 + len(text) + 8 + len(binary)
    with open(path, "wb") as out:
        out.write(struct.pack("<III", GLB_MAGIC, 2, total))
        out.write(struct.pack("<II", len(text), JSON_CHUNK) + text)
        out.write(struct.pack("<II", len(binary), BIN_CHUNK) + binary)


def write_gltf(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray,
               colours: np.ndarray | None = None) -> None:
    """Write one triangle mesh as a single-file .gltf, its buffer embedded as a base64 data URI."""
    document, binary = gltf_document(vertices, faces, colours)
    document["buffers"][0]["uri"] = "data:application/octet-stream;base64," + base64.b64encode(binary).decode("ascii")
    with open(path, "w", encoding="utf-8") as out:
        json.dump(document, out, separators=(",", ":"))
