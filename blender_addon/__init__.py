"""SIREN Reconstruction: point clouds to meshes with a neural SDF, trained by a siren-recon backend.

The add-on never imports torch or the backend: it talks to a backend process (local or remote)
through the vendored ``protocol`` package over ZeroMQ. Blender is imported only when the add-on
is registered, so the plain-logic modules (session, geometry, settings) load without it.
"""

from __future__ import annotations

import atexit


def register() -> None:
    import bpy

    from . import install_operators, operators, panels, properties, state

    properties.register()
    for cls in operators.CLASSES:
        bpy.utils.register_class(cls)
    install_operators.register()
    panels.register()
    if not bpy.app.timers.is_registered(operators.timer_tick):
        bpy.app.timers.register(operators.timer_tick, first_interval=operators.TICK_INTERVAL, persistent=True)
    atexit.register(state.shutdown)


def unregister() -> None:
    import bpy

    from . import install_operators, operators, panels, properties, state

    if bpy.app.timers.is_registered(operators.timer_tick):
        bpy.app.timers.unregister(operators.timer_tick)
    state.shutdown()
    atexit.unregister(state.shutdown)
    panels.unregister()
    install_operators.unregister()
    for cls in reversed(operators.CLASSES):
        bpy.utils.unregister_class(cls)
    properties.unregister()
