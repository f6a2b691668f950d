"""Install, Repair and Remove the backend from the add-on's preferences (thin bpy over backend_install.py)."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty

from . import backend_install, backend_site

ADDON_DIR = Path(__file__).resolve().parent
DEVICE_ITEMS = [
    ("AUTO", "Auto", "The CUDA build of torch where an NVIDIA driver is installed, the CPU build elsewhere"),
    ("CPU", "CPU", "The CPU build of torch (about 1 GB)"),
    ("CUDA", "CUDA", "The CUDA build of torch for an NVIDIA GPU (about 4.5 GB)"),
]
REDRAW_INTERVAL = 0.5
INSTALLER = backend_install.Installer()
"""The one install this Blender runs at a time."""


def user_dir() -> Path:
    """The extension's user folder (kept across add-on updates), where the backend is installed."""
    return Path(bpy.utils.extension_path_user(__package__, create=True))


def python_version() -> str:
    """Blender's Python as ``"3.11"``."""
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


@functools.cache
def addon_version() -> str:
    """The add-on's version, from its manifest."""
    return backend_site.addon_version(ADDON_DIR)


def preferences(context):
    """The add-on's preferences, or ``None`` when it is not enabled under its package name."""
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon is not None else None


def install_options(prefs, device: str) -> backend_install.InstallOptions:
    """The preferences' package sources as installer options."""
    if prefs is None:
        return backend_install.InstallOptions(device=device.lower())
    folder = bpy.path.abspath(prefs.install_wheel_folder).strip() if prefs.install_wheel_folder else ""
    return backend_install.InstallOptions(
        device=device.lower(), index_url=prefs.install_index_url.strip(),
        extra_index_url=prefs.install_extra_index_url.strip(), find_links=folder,
        local_only=prefs.install_local_only,
    )


def redraw_preferences() -> float | None:
    """A ``bpy.app.timers`` callback that redraws the preferences while an install runs."""
    for window in getattr(bpy.context.window_manager, "windows", []):
        for area in window.screen.areas:
            if area.type == "PREFERENCES":
                area.tag_redraw()
    return REDRAW_INTERVAL if INSTALLER.running else None


class SIREN_OT_install_backend(bpy.types.Operator):
    """Install the backend and torch with Blender's Python into the add-on's user folder (again: Repair)"""

    bl_idname = "siren.install_backend"
    bl_label = "Install Backend"

    device: EnumProperty(name="Device", items=DEVICE_ITEMS, default="AUTO")
    wait: BoolProperty(name="Wait", default=False, options={"SKIP_SAVE"},
                       description="Block until the install ends (scripts and tests)")

    def execute(self, context):
        if INSTALLER.running:
            self.report({"ERROR"}, "An install of the backend is already running")
            return {"CANCELLED"}
        wheel = backend_site.find_backend_wheel(ADDON_DIR)
        if wheel is None:
            self.report({"ERROR"}, "This add-on carries no backend wheel (siren_recon-*.whl): reinstall the add-on")
            return {"CANCELLED"}
        options = install_options(preferences(context), self.device)
        if not self.wait:
            INSTALLER.start(sys.executable, wheel, user_dir(), options)
            if not bpy.app.timers.is_registered(redraw_preferences):
                bpy.app.timers.register(redraw_preferences, first_interval=REDRAW_INTERVAL)
            self.report({"INFO"}, "Installing the backend in the background")
            return {"FINISHED"}
        outcome = INSTALLER.run(sys.executable, wheel, user_dir(), options)
        if outcome is None or not outcome.ok:
            self.report({"ERROR"}, outcome.line if outcome else "An install of the backend is already running")
            return {"CANCELLED"}
        self.report({"INFO"}, outcome.line)
        return {"FINISHED"}


class SIREN_OT_cancel_backend_install(bpy.types.Operator):
    """Stop the running install; the backend stays as it was"""

    bl_idname = "siren.cancel_backend_install"
    bl_label = "Cancel Install"

    def execute(self, context):
        INSTALLER.cancel()
        return {"FINISHED"}


class SIREN_OT_remove_backend(bpy.types.Operator):
    """Delete the installed backend and torch from the add-on's user folder"""

    bl_idname = "siren.remove_backend"
    bl_label = "Remove Backend"

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

    def execute(self, context):
        if INSTALLER.running:
            self.report({"ERROR"}, "An install of the backend is running: cancel it first")
            return {"CANCELLED"}
        try:
            removed = backend_site.remove_backend(user_dir())
        except OSError as error:
            self.report({"ERROR"}, f"Could not remove the backend (is it running? stop it first): {error}")
            return {"CANCELLED"}
        self.report({"INFO"}, "Backend removed" if removed else "No backend was installed")
        return {"FINISHED"}


class SIREN_OT_open_install_log(bpy.types.Operator):
    """Open the last install's log"""

    bl_idname = "siren.open_install_log"
    bl_label = "Open Install Log"

    def execute(self, context):
        log = backend_site.log_path(user_dir())
        if not log.exists():
            self.report({"ERROR"}, "No install has run yet")
            return {"CANCELLED"}
        bpy.ops.wm.path_open(filepath=str(log))
        return {"FINISHED"}


def draw_install(layout, prefs) -> None:
    """The preferences' Backend section: status, Install / Repair / Remove, progress, log, disk, sources."""
    folder = user_dir()
    status = backend_site.install_status(folder, addon_version(), python_version())
    box = layout.box()
    box.label(text="Local Backend", icon="PACKAGE")
    box.label(text=status.line, icon="CHECKMARK" if status.state == "installed" else "INFO")
    box.prop(prefs, "install_device")
    device = backend_install.resolve_device(prefs.install_device)
    box.label(text=backend_install.disk_line(folder, device), icon="DISK_DRIVE")
    row = box.row()
    if INSTALLER.running:
        row.label(text=INSTALLER.line, icon="SORTTIME")
        row.operator("siren.cancel_backend_install", text="Cancel", icon="CANCEL")
    else:
        text = {"missing": "Install", "outdated": "Update"}.get(status.state, "Repair")
        row.operator("siren.install_backend", text=text, icon="IMPORT").device = prefs.install_device
        if status.state != "missing":
            row.operator("siren.remove_backend", text="Remove", icon="TRASH")
        if INSTALLER.outcome is not None:
            box.label(text=INSTALLER.outcome.line, icon="CHECKMARK" if INSTALLER.outcome.ok else "ERROR")
    log = backend_site.log_path(folder)
    if log.exists():
        row = box.row()
        row.label(text=f"Log: {log}")
        row.operator("siren.open_install_log", text="Open Log", icon="TEXT")
    sources = box.column(heading="Package Sources")
    sources.prop(prefs, "install_index_url")
    sources.prop(prefs, "install_extra_index_url")
    sources.prop(prefs, "install_wheel_folder")
    sources.prop(prefs, "install_local_only")


CLASSES = (SIREN_OT_install_backend, SIREN_OT_cancel_backend_install, SIREN_OT_remove_backend,
           SIREN_OT_open_install_log)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    INSTALLER.cancel()
    if bpy.app.timers.is_registered(redraw_preferences):
        bpy.app.timers.unregister(redraw_preferences)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
