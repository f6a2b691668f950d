"""Writing a mesh in the format its suffix names, with vertex colours where the format has them.

Where each format keeps its coordinates and colours:

* ``.ply``: float64 vertices, 8-bit RGB per vertex (:mod:`.ply_meshes`, the layout Open3D writes);
* ``.obj``, ``.off``: text with 15 significant digits (:mod:`.text_meshes`), RGB per vertex;
* ``.glb``, ``.gltf``: float32 positions placed by a float64 node translation when the mesh is far
  from the origin (:mod:`siren_recon.io.glb`), float RGB per vertex (``COLOR_0``);
* ``.stl`` (Open3D): float32 by the format, no colours.
"""

from __future__ import annotations

import os

import numpy as np

from ..engine.errors import InputError
from .cloud import check_format
from .glb import write_glb, write_gltf
from .open3d_library import import_open3d, to_open3d_mesh
from .ply_meshes import write_ply_mesh
from .text_meshes import write_obj, write_off

MESH_FORMATS = (".ply", ".obj", ".stl", ".glb", ".gltf", ".off")


def write_mesh(
    path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray, colours: np.ndarray | None = None
) -> None:
    """Write a mesh in the format its suffix names (ply, obj, stl, glb, gltf, off).

    ``colours`` (V, 3) in 0..1, one per vertex, go into every format but STL.
    """
    target = check_format(path, MESH_FORMATS, "mesh")
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = target.suffix.lower()
    writers = {".glb": write_glb, ".gltf": write_gltf, ".obj": write_obj, ".off": write_off, ".ply": write_ply_mesh}
    if suffix in writers:
        writers[suffix](target, vertices, faces, colours)
        return
    o3d = import_open3d()
    mesh = to_open3d_mesh(vertices, faces)
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        ok = o3d.io.write_triangle_mesh(str(target), mesh)
    if not ok:
        raise InputError(f"could not write {str(target)!r}", "unwritable_file")
