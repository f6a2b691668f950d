"""Reading clouds out of Blender objects and writing meshes into preview objects (thin bpy)."""

from __future__ import annotations

import bpy
import numpy as np

from .geometry import (
    SURFACE_SAMPLES,
    blender_mesh_arrays,
    corner_to_point,
    point_colour_attribute,
    sample_triangles,
    to_world,
)

ObjectCloud = tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray]
"""Points, normals (or ``None``) and colours (or ``None``) as read, with the 4x4 matrix that takes
them to world space (``geometry.wire_cloud`` applies it, off the UI thread)."""

COLOUR_LAYER = "siren_colour"


def _attribute(data, name: str, field: str, width: int) -> np.ndarray | None:
    """A per-point attribute as (N, width) float32, or ``None`` when absent or not per point."""
    attribute = data.attributes.get(name)
    if attribute is None or attribute.domain != "POINT":
        return None
    values = np.empty(len(attribute.data) * width, dtype=np.float32)
    attribute.data.foreach_get(field, values)
    return values.reshape(-1, width)


def _vertex_colours(mesh) -> np.ndarray | None:
    layer = mesh.color_attributes.active_color
    if layer is None:
        return None
    values = np.empty(len(layer.data) * 4, dtype=np.float32)
    layer.data.foreach_get("color", values)
    values = values.reshape(-1, 4)[:, :3]
    if layer.domain == "POINT":
        return values
    corner_vertex = np.empty(len(mesh.loops), dtype=np.int64)
    mesh.loops.foreach_get("vertex_index", corner_vertex)
    return corner_to_point(values, corner_vertex, len(mesh.vertices))


def _point_cloud_arrays(data, matrix: np.ndarray) -> ObjectCloud:
    """Points, normals and colours of a ``PointCloud`` datablock, read into float32 arrays."""
    points = _attribute(data, "position", "vector", 3)
    normals = _attribute(data, "normal", "vector", 3)
    layers = [(a.name, a.data_type, a.domain) for a in data.attributes]
    colour_name = point_colour_attribute(layers)
    colours = None if colour_name is None else _attribute(data, colour_name, "color", 4)
    return points, normals, colours, matrix


def _generated_cloud(evaluated, matrix: np.ndarray) -> ObjectCloud | None:
    """The points that an object's modifiers output (e.g. geometry nodes' Mesh to Points), or ``None``."""
    if not hasattr(evaluated, "evaluated_geometry"):  # Blender before 4.3
        return None
    geometry = evaluated.evaluated_geometry()  # owns the point cloud: read it while this lives
    cloud = geometry.pointcloud
    if cloud is None or not len(cloud.points):
        return None
    return _point_cloud_arrays(cloud, matrix)


def cloud_from_object(obj, depsgraph, samples: int = SURFACE_SAMPLES) -> ObjectCloud:
    """Points, normals (or ``None``) and colours (or ``None``) of an object, with the matrix to
    world space (see :data:`ObjectCloud`); attributes are read with ``foreach_get`` into
    preallocated float32 arrays.

    A mesh with faces is sampled at ``samples`` points on its evaluated surface (modifiers
    applied) with face normals;
    a mesh of loose vertices (an imported scan) gives its vertices, with normals only when it
    carries a ``normal`` attribute; a point cloud object, or a mesh whose modifiers turn it into
    points (geometry nodes' Mesh to Points), gives its points, with a ``normal`` attribute as
    normals and its colour attribute as colours.
    """
    evaluated = obj.evaluated_get(depsgraph)
    matrix = np.array(obj.matrix_world, dtype=np.float64)
    if obj.type == "POINTCLOUD":
        return _point_cloud_arrays(evaluated.data, matrix)
    mesh = evaluated.to_mesh()
    try:
        count = len(mesh.vertices)
        if count == 0 and (generated := _generated_cloud(evaluated, matrix)) is not None:
            return generated
        co = _attribute(mesh, "position", "vector", 3)  # 30x faster than vertices' "co" at 10M
        if co is None:
            co = np.empty(count * 3, dtype=np.float32)
            mesh.vertices.foreach_get("co", co)
            co = co.reshape(-1, 3)
        colours = _vertex_colours(mesh)
        if len(mesh.polygons):
            mesh.calc_loop_triangles()
            tris = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int64)
            mesh.loop_triangles.foreach_get("vertices", tris)
            world = to_world(co, matrix)
            points, normals, colours = sample_triangles(world, tris.reshape(-1, 3), samples, colours)
            return points, normals, colours, np.eye(4)
        return co, _attribute(mesh, "normal", "vector", 3), colours, matrix
    finally:
        evaluated.to_mesh_clear()


def show_mesh(name: str, source_name: str, vertices: np.ndarray, faces: np.ndarray,
              colours: np.ndarray | None, collection, job_id: str = "") -> bpy.types.Object:
    """Replace the geometry of the preview object ``name`` in place (creating it the first time).

    The object remembers its job id (``siren_job``), so a reopened .blend can fetch the result again.
    """
    obj = bpy.data.objects.get(name)
    if obj is None:
        mesh = bpy.data.meshes.new(name)
        obj = bpy.data.objects.new(name, mesh)
        obj["siren_source"] = source_name
        collection.objects.link(obj)
    if job_id:
        obj["siren_job"] = job_id
    mesh = obj.data
    arrays = blender_mesh_arrays(vertices, faces)
    mesh.clear_geometry()
    mesh.vertices.add(len(vertices))
    mesh.loops.add(len(arrays["vertex_index"]))
    mesh.polygons.add(len(faces))
    mesh.vertices.foreach_set("co", arrays["co"])
    mesh.loops.foreach_set("vertex_index", arrays["vertex_index"])
    mesh.polygons.foreach_set("loop_start", arrays["loop_start"])
    if colours is not None and len(colours) == len(vertices):
        layer = (mesh.color_attributes.get(COLOUR_LAYER)
                 or mesh.color_attributes.new(COLOUR_LAYER, "FLOAT_COLOR", "POINT"))
        rgba = np.ones((len(vertices), 4), dtype=np.float32)
        rgba[:, :3] = colours
        layer.data.foreach_set("color", rgba.reshape(-1))
    mesh.update()
    return obj


PREVIEW_TAGS = ("siren_source", "siren_job")
"""Custom properties that make an object a preview: its source's name, its job id."""


def keep_as_mesh(obj, name: str) -> None:
    """Make a preview an ordinary mesh called ``name``: no longer a preview, so no later job or
    *Fetch Result* writes into it."""
    for tag in PREVIEW_TAGS:
        obj.pop(tag, None)
    obj.name = name
    obj.data.name = obj.name
