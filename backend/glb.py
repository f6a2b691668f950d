"""A minimal glTF 2.0 binary (.glb) writer for triangle meshes.

Open3D 0.20 writes .glb files whose buffer views point past their buffer (readers reject
them), so the CLI writes .glb itself: one mesh, positions, normals and uint32 indices.
"""

from __future__ import annotations

import json
import os
import struct

import numpy as np

GLB_MAGIC = 0x46546C67
JSON_CHUNK = 0x4E4F534A
BIN_CHUNK = 0x004E4942
FLOAT, UINT32 = 5126, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963


def _pad(data: bytes, fill: bytes) -> bytes:
    return data + fill * (-len(data) % 4)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (zero-area neighbourhoods get +z)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    face_n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    normals = np.zeros_like(v)
    for corner in range(3):
        np.add.at(normals, f[:, corner], face_n)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.where(length > 0, normals / np.maximum(length, 1e-30), [0.0, 0.0, 1.0])
    return normals


def write_glb(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Write one triangle mesh as a .glb file."""
    positions = np.ascontiguousarray(vertices, dtype=np.float32)
    normals = np.ascontiguousarray(vertex_normals(vertices, faces), dtype=np.float32)
    indices = np.ascontiguousarray(faces, dtype=np.uint32).reshape(-1)
    blobs = [positions.tobytes(), normals.tobytes(), indices.tobytes()]
    offsets = np.cumsum([0] + [len(b) for b in blobs[:-1]]).tolist()
    binary = _pad(b"".join(blobs), b"\x00")
    lo = positions.min(axis=0).tolist() if len(positions) else [0.0, 0.0, 0.0]
    hi = positions.max(axis=0).tolist() if len(positions) else [0.0, 0.0, 0.0]
    document = {
        "asset": {"version": "2.0", "generator": "siren-recon"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "NORMAL": 1}, "indices": 2, "mode": 4}]}],
        "buffers": [{"byteLength": len(binary)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": offsets[0], "byteLength": len(blobs[0]), "target": ARRAY_BUFFER},
            {"buffer": 0, "byteOffset": offsets[1], "byteLength": len(blobs[1]), "target": ARRAY_BUFFER},
            {"buffer": 0, "byteOffset": offsets[2], "byteLength": len(blobs[2]), "target": ELEMENT_ARRAY_BUFFER},
        ],
        "accessors": [
            {"bufferView": 0, "componentType": FLOAT, "count": len(positions), "type": "VEC3", "min": lo, "max": hi},
            {"bufferView": 1, "componentType": FLOAT, "count": len(normals), "type": "VEC3"},
            {"bufferView": 2, "componentType": UINT32, "count": len(indices), "type": "SCALAR"},
        ],
    }
    text = _pad(json.dumps(document, separators=(",", ":")).encode(), b" ")
    total = 12 + 8 + len(text) + 8 + len(binary)
    with open(path, "wb") as out:
        out.write(struct.pack("<III", GLB_MAGIC, 2, total))
        out.write(struct.pack("<II", len(text), JSON_CHUNK) + text)
        out.write(struct.pack("<II", len(binary), BIN_CHUNK) + binary)
