"""Settings on the scene (thin bpy)."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, PointerProperty, StringProperty

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


class SirenSettings(bpy.types.PropertyGroup):
    address: StringProperty(name="Backend", default="tcp://127.0.0.1:5555",
                            description="ZeroMQ address of the siren-recon backend")
    backend_command: StringProperty(name="Command", default="siren-recon serve",
                                    description="Command that starts a local backend (--bind is added)")
    mode: EnumProperty(name="Mode", items=MODE_ITEMS, default="auto")
    quality: EnumProperty(name="Quality", items=QUALITY_ITEMS, default="standard")
    show_advanced: BoolProperty(name="Advanced", default=False)
    iterations: IntProperty(name="Iterations", default=0, min=0, description="0: from the quality preset")
    resolution: IntProperty(name="Resolution", default=0, min=0, max=1024, description="0: from the quality preset")
    seed: IntProperty(name="Seed", default=-1, min=-1, description="-1: the engine's default")


def register() -> None:
    bpy.utils.register_class(SirenSettings)
    bpy.types.Scene.siren = PointerProperty(type=SirenSettings)


def unregister() -> None:
    del bpy.types.Scene.siren
    bpy.utils.unregister_class(SirenSettings)
