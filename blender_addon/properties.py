"""Settings on the scene (thin bpy)."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from .protocol.client import DEFAULT_ADDRESS

MODE_ITEMS = [
    ("auto", "Auto", "Oriented when the source has normals (a mesh with faces), unoriented otherwise"),
    ("oriented", "Oriented", "Use the source's normals (SIREN loss)"),
    ("unoriented", "Unoriented", "Ignore normals (DiGS loss)"),
]
QUALITY_ITEMS = [
    ("preview", "Preview", "Small network, 500 steps, 128^3 mesh: seconds on a GPU"),
    ("standard", "Standard", "The engine's defaults: 2,000 steps, 256^3 mesh"),
    ("high", "High", "Wide network, 6,000 steps, 384^3 mesh"),
]

TRIM_ITEMS = [
    ("auto", "Auto", "Cut away surface no point supports only when the cloud covers part of the shape "
     "(a scan from one side, a facade, a terrain); closed shapes stay as they are"),
    ("off", "Off", "Always keep the closed surface the field makes"),
    ("distance", "Distance", "Cut away faces farther than Trim Distance from every point"),
]


class SirenSettings(bpy.types.PropertyGroup):
    address: StringProperty(name="Backend", default=DEFAULT_ADDRESS,
                            description="ZeroMQ address of the siren-recon backend")
    backend_command: StringProperty(name="Command", default="siren-recon serve",
                                    description="Command that starts a local backend (--bind is added)")
    mode: EnumProperty(name="Mode", items=MODE_ITEMS, default="auto")
    quality: EnumProperty(name="Quality", items=QUALITY_ITEMS, default="standard")
    trim: EnumProperty(name="Trim", items=TRIM_ITEMS, default="auto",
                       description="Open scans: cut away surface that no point supports")
    trim_distance: FloatProperty(name="Trim Distance", default=0.02, min=0.0001, max=1.0, precision=3,
                                 description="Share of the cloud's box diagonal, with Trim set to Distance")
    show_advanced: BoolProperty(name="Advanced", default=False)
    iterations: IntProperty(name="Iterations", default=0, min=0, description="0: from the quality preset")
    resolution: IntProperty(name="Resolution", default=0, min=0, max=1024, description="0: from the quality preset")
    seed: IntProperty(name="Seed", default=-1, min=-1, description="-1: the engine's default")


class SirenPreferences(bpy.types.AddonPreferences):
    """Key files for a CURVE backend: kept in Blender's preferences, never in a .blend file."""

    bl_idname = __package__

    server_key_file: StringProperty(
        name="Backend Public Key", subtype="FILE_PATH", default="",
        description="The backend's public key file (server.key from 'siren-recon keys generate'); empty: no CURVE",
    )
    client_key_file: StringProperty(
        name="Your Secret Key", subtype="FILE_PATH", default="",
        description="Your secret key file (NAME.key_secret), for a backend started with --allowed-clients",
    )

    def draw(self, context):
        self.layout.prop(self, "server_key_file")
        self.layout.prop(self, "client_key_file")


def key_files(context) -> tuple[str, str]:
    """(server public key file, client secret key file) from the add-on's preferences."""
    addon = context.preferences.addons.get(__package__)
    if addon is None:
        return "", ""
    prefs = addon.preferences
    return bpy.path.abspath(prefs.server_key_file), bpy.path.abspath(prefs.client_key_file)


def register() -> None:
    bpy.utils.register_class(SirenPreferences)
    bpy.utils.register_class(SirenSettings)
    bpy.types.Scene.siren = PointerProperty(type=SirenSettings)


def unregister() -> None:
    del bpy.types.Scene.siren
    bpy.utils.unregister_class(SirenSettings)
    bpy.utils.unregister_class(SirenPreferences)
