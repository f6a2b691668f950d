"""The add-on's settings: per scene what to make, in the preferences where the backend is (thin bpy)."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from .geometry import SURFACE_SAMPLES
from .install_operators import DEVICE_ITEMS, draw_install
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
    """What the scene's reconstructions are made with (saved in the .blend)."""

    mode: EnumProperty(name="Mode", items=MODE_ITEMS, default="auto")
    quality: EnumProperty(name="Quality", items=QUALITY_ITEMS, default="standard")
    trim: EnumProperty(name="Trim", items=TRIM_ITEMS, default="auto",
                       description="Open scans: cut away surface that no point supports")
    trim_distance: FloatProperty(name="Trim Distance", default=0.02, min=0.0001, max=1.0, precision=3,
                                 description="Share of the cloud's box diagonal, with Trim set to Distance")
    show_advanced: BoolProperty(name="Advanced", default=False)
    iterations: IntProperty(name="Iterations", default=0, min=0,
                            description="Exactly this many training steps; 0: at most the quality preset's, "
                            "fewer once the surface has settled")
    resolution: IntProperty(name="Resolution", default=0, min=0, max=1024, description="0: from the quality preset")
    seed: IntProperty(name="Seed", default=-1, min=-1, description="-1: the engine's default")
    tile_size: FloatProperty(
        name="Tile Size", default=0.0, min=0.0, unit="LENGTH",
        description="Edge of the overlapping tiles a scene (a building, a street) is cut into, a network each, so "
                    "that it keeps its edges and small structures; 0: automatic (by Detail Size)",
    )
    detail_size: FloatProperty(
        name="Detail Size", default=0.0, min=0.0, unit="LENGTH",
        description="Spacing of the final mesh's grid, the smallest detail it can show; a scene longer than 200 "
                    "of these is cut into tiles of 200. 0: from Resolution, one network",
    )
    surface_samples: IntProperty(name="Surface Samples", default=SURFACE_SAMPLES, min=1000, max=10_000_000,
                                 description="Points sampled on a mesh with faces (a point cloud sends all its points)")


class SirenPreferences(bpy.types.AddonPreferences):
    """Where the backend is: a remote address with its key files, or the local backend's command.

    Kept in Blender's preferences (the same for every .blend), never in a .blend file.
    """

    bl_idname = __package__

    address: StringProperty(
        name="Remote Backend", default=DEFAULT_ADDRESS,
        description="ZeroMQ address (tcp://HOST:PORT) of a siren-recon backend that Connect joins",
    )
    backend_python: StringProperty(
        name="Backend Python", subtype="FILE_PATH", default="",
        description="A Python that has siren-recon installed (e.g. a virtual environment's python) to run the "
                    "local backend; empty: the backend installed here, run by Blender's Python",
    )
    server_key_file: StringProperty(
        name="Backend Public Key", subtype="FILE_PATH", default="",
        description="The backend's public key file (server.key from 'siren-recon keys generate'); empty: no CURVE",
    )
    client_key_file: StringProperty(
        name="Your Secret Key", subtype="FILE_PATH", default="",
        description="Your secret key file (NAME.key_secret), for a backend started with --allowed-clients",
    )
    install_device: EnumProperty(name="Torch Build", items=DEVICE_ITEMS, default="AUTO",
                                 description="Which torch the backend install brings")
    install_index_url: StringProperty(
        name="Index URL", default="",
        description="pip's --index-url for the backend install (a studio mirror); empty: pip's configuration",
    )
    install_extra_index_url: StringProperty(
        name="Extra Index URL", default="", description="pip's --extra-index-url for the backend install",
    )
    install_wheel_folder: StringProperty(
        name="Wheel Folder", subtype="DIR_PATH", default="",
        description="A local folder of wheels pip may install from (--find-links)",
    )
    install_local_only: BoolProperty(
        name="Only the Wheel Folder", default=False,
        description="Install from the wheel folder alone, without any index (--no-index)",
    )

    def draw(self, context):
        self.layout.prop(self, "address")
        self.layout.prop(self, "server_key_file")
        self.layout.prop(self, "client_key_file")
        self.layout.prop(self, "backend_python")
        draw_install(self.layout, self)


def preferences(context) -> SirenPreferences | None:
    """The add-on's preferences (``None`` while it is not enabled)."""
    addon = context.preferences.addons.get(__package__)
    return None if addon is None else addon.preferences


def remote_link(context) -> tuple[str, str, str]:
    """(address, server public key file, client secret key file) of the remote backend."""
    prefs = preferences(context)
    if prefs is None:
        return DEFAULT_ADDRESS, "", ""
    return prefs.address.strip(), bpy.path.abspath(prefs.server_key_file), bpy.path.abspath(prefs.client_key_file)


def register() -> None:
    bpy.utils.register_class(SirenPreferences)
    bpy.utils.register_class(SirenSettings)
    bpy.types.Scene.siren = PointerProperty(type=SirenSettings)


def unregister() -> None:
    del bpy.types.Scene.siren
    bpy.utils.unregister_class(SirenSettings)
    bpy.utils.unregister_class(SirenPreferences)
