"""OBJ and OFF meshes written as text with every significant digit of float64 coordinates.

Open3D writes both with six significant digits, which turns 4,500,000.654 into 4.5e+06: a
scan in UTM coordinates would come back metres away. Vertex colours go where each format puts
them: OBJ's ``v x y z r g b`` extension (read by Open3D, Blender, MeshLab), OFF's ``COFF``.
"""

from __future__ import annotations

import os
from typing import TextIO

import numpy as np

from ..geometry.normals import vertex_normals

DIGITS = "%.15g"
"""15 significant digits: below a micrometre at 4,500,000 m, and no float64 noise digits."""


def write_obj(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray, colours: np.ndarray | None) -> None:
    """A Wavefront OBJ: vertices (with colours when given), vertex normals, triangles."""
    v = np.asarray(vertices, dtype=np.float64)
    normals = vertex_normals(v, faces)
    columns = [v] if colours is None else [v, np.clip(np.asarray(colours, dtype=np.float64), 0.0, 1.0)]
    with open(path, "w", encoding="ascii") as out:
        out.write("# siren-recon\n")
        write_rows(out, "v", np.hstack(columns), DIGITS)
        write_rows(out, "vn", normals, "%.6g")
        corners = np.asarray(faces, dtype=np.int64) + 1
        write_rows(out, "f", np.repeat(corners, 2, axis=1), "%d//%d %d//%d %d//%d")


def write_off(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray, colours: np.ndarray | None) -> None:
    """An OFF (``COFF`` with 8-bit RGBA per vertex when colours are given)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    with open(path, "w", encoding="ascii") as out:
        out.write("OFF\n" if colours is None else "COFF\n")
        out.write(f"{len(v)} {len(f)} 0\n")
        if colours is None:
            write_rows(out, "", v, DIGITS)
        else:
            rgba = np.hstack([np.round(np.clip(colours, 0.0, 1.0) * 255), np.full((len(v), 1), 255.0)])
            write_rows(out, "", np.hstack([v, rgba]), " ".join([DIGITS] * 3 + ["%d"] * 4))
        write_rows(out, "3", f, "%d")


def write_rows(out: TextIO, prefix: str, rows: np.ndarray, fmt: str) -> None:
    """One line per row: ``prefix`` then the row's values, each with ``fmt`` (or one ``fmt`` for the row)."""
    if len(rows) == 0:
        return
    row_fmt = fmt if fmt.count("%") > 1 else " ".join([fmt] * rows.shape[1])
    lead = f"{prefix} " if prefix else ""
    line = lead + row_fmt + "\n"
    out.write("".join(line % tuple(row) for row in rows.tolist()))


def read_obj(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """The vertices (float64) and triangles (int64) of a Wavefront ``.obj``; polygons are split
    into fans, texture and normal indices are dropped. Needs no Open3D."""
    vertices: list[list[float]] = []
    faces: list[list[int]] = []
    with open(path, encoding="utf-8", errors="replace") as source:
        for line in source:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "v":
                vertices.append([float(value) for value in parts[1:4]])
            elif parts[0] == "f":
                corners = [int(part.split("/")[0]) for part in parts[1:]]
                corners = [c - 1 if c > 0 else len(vertices) + c for c in corners]
                faces += [[corners[0], corners[i], corners[i + 1]] for i in range(1, len(corners) - 1)]
    return np.array(vertices, dtype=np.float64).reshape(-1, 3), np.array(faces, dtype=np.int64).reshape(-1, 3)
