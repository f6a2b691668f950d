#!/usr/bin/env python3
"""Picture of the add-on at work, rendered headless by Blender's Workbench engine.

Builds and installs the extension into a scratch Blender (the ``bpy`` module), starts a local
backend through the add-on, reconstructs the bundled Spot sample (loose vertices with a
``normal`` attribute) through ``bpy.ops.siren.reconstruct(wait=True)``, and renders the source
cloud beside the result:

    python scripts/render_blender_demo.py docs/blender_demo.png [--quality preview]
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

if not os.environ.get("BLENDER_USER_EXTENSIONS"):
    os.environ["BLENDER_USER_EXTENSIONS"] = tempfile.mkdtemp(prefix="siren-ext-")
    atexit.register(shutil.rmtree, os.environ["BLENDER_USER_EXTENSIONS"], True)

import bpy  # noqa: E402
import build_addon  # the sibling script: this folder is on the path of a script run from it
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def spot_cloud() -> tuple[np.ndarray, np.ndarray]:
    """Points and normals of data/spot_sample.ply (binary little-endian, double x y z nx ny nz)."""
    raw = (REPO / "data" / "spot_sample.ply").read_bytes()
    header, body = raw.split(b"end_header\n", 1)
    count = int(next(line.split()[-1] for line in header.decode().splitlines() if line.startswith("element vertex")))
    values = np.frombuffer(body, dtype="<f8", count=count * 6).reshape(count, 6)
    return values[:, :3], values[:, 3:]


def cloud_object(name: str, points: np.ndarray, normals: np.ndarray):
    """A mesh of loose vertices with a ``normal`` attribute: how a scan with normals arrives."""
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(points))
    mesh.vertices.foreach_set("co", points.astype(np.float32).reshape(-1))
    normal = mesh.attributes.new("normal", "FLOAT_VECTOR", "POINT")
    normal.data.foreach_set("vector", normals.astype(np.float32).reshape(-1))
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def show_as_spheres(obj, radius: float) -> None:
    """Loose vertices do not render: a Mesh to Points modifier draws them as small spheres."""
    tree = bpy.data.node_groups.new("points", "GeometryNodeTree")
    tree.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    tree.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    group_in, group_out = tree.nodes.new("NodeGroupInput"), tree.nodes.new("NodeGroupOutput")
    to_points = tree.nodes.new("GeometryNodeMeshToPoints")
    to_points.inputs["Radius"].default_value = radius
    tree.links.new(group_in.outputs[0], to_points.inputs["Mesh"])
    tree.links.new(to_points.outputs["Points"], group_out.inputs[0])
    obj.modifiers.new("points", "NODES").node_group = tree


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output")
    parser.add_argument("--quality", default="preview", choices=("preview", "standard", "high"))
    args = parser.parse_args()

    bpy.ops.wm.read_factory_settings(use_empty=True)
    archive = build_addon.build(Path(tempfile.mkdtemp()), False, REPO / "build" / "wheels")
    bpy.ops.extensions.package_install_files(filepath=str(archive), repo="user_default", enable_on_install=True)
    scene = bpy.context.scene
    scene.siren.quality = args.quality
    preferences = bpy.context.preferences.addons["bl_ext.user_default.siren_recon"].preferences
    preferences.backend_python = sys.executable  # this Python has siren-recon installed

    points, normals = spot_cloud()
    source = cloud_object("Spot", points, normals)
    source.rotation_euler = (np.pi / 2, 0.0, np.radians(200))  # Spot is y-up; Blender is z-up
    bpy.context.view_layer.update()
    bpy.ops.object.select_all(action="DESELECT")
    source.select_set(True)
    try:
        bpy.ops.siren.start_backend()
        bpy.ops.siren.reconstruct(wait=True)
    finally:
        bpy.ops.preferences.addon_disable(module="bl_ext.user_default.siren_recon")
    show_as_spheres(source, 0.006)
    result = bpy.data.objects["Spot_siren"]
    result.location.x += 1.4  # side by side: the cloud, then its reconstruction

    bpy.ops.object.camera_add(location=(0.7, -4.2, 0.9), rotation=(np.radians(80), 0.0, 0.0))
    scene.camera = bpy.context.active_object
    scene.camera.data.lens = 40
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.display.shading.light = "STUDIO"
    scene.display.shading.color_type = "SINGLE"
    scene.display.shading.show_cavity = True
    scene.render.film_transparent = False
    scene.render.resolution_x, scene.render.resolution_y = 1200, 560
    scene.render.filepath = str(Path(args.output).resolve())
    bpy.ops.render.render(write_still=True)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
