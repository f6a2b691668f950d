"""The SIREN tab in the 3D view's sidebar, and a line in the status bar (thin bpy)."""

from __future__ import annotations

import bpy

from . import state
from .session import FINISHED


class SIREN_PT_main(bpy.types.Panel):
    bl_idname = "SIREN_PT_main"
    bl_label = "SIREN Reconstruction"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "SIREN"

    def draw(self, context):
        settings = context.scene.siren
        session = state.session
        layout = self.layout
        box = layout.box()
        row = box.row(align=True)
        if session is not None and session.client is not None:
            row.operator("siren.disconnect", icon="UNLINKED")
        else:
            row.operator("siren.connect", icon="LINKED")
        if state.local_backend.pid:
            row.operator("siren.stop_backend", icon="PAUSE", text="Stop Local")
        else:
            row.operator("siren.start_backend", icon="PLAY", text="Start Local")
        status = session.message if session is not None else "not connected"
        failed = session is not None and session.status in ("unreachable", "lost", "exited", "invalid")
        box.label(text=status, icon="ERROR" if failed else "INFO")
        for line in state.exit_report[1:]:
            box.label(text=line)

        layout.prop(settings, "mode")
        layout.prop(settings, "quality")
        row = layout.row(align=True)
        row.prop(settings, "trim")
        if settings.trim == "distance":
            row.prop(settings, "trim_distance", text="")
        layout.prop(settings, "show_advanced", icon="TRIA_DOWN" if settings.show_advanced else "TRIA_RIGHT")
        if settings.show_advanced:
            col = layout.column(align=True)
            col.prop(settings, "iterations")
            col.prop(settings, "resolution")
            col.prop(settings, "seed")
            col.prop(settings, "tile_size")
            col.prop(settings, "detail_size")
            col.prop(settings, "surface_samples")

        row = layout.row(align=True)
        row.scale_y = 1.4
        row.operator("siren.reconstruct", icon="MESH_ICOSPHERE")
        row.operator("siren.cancel", icon="CANCEL", text="")
        if session is not None:
            for job in session.jobs.values():
                line = layout.row()
                if job.status == "running" and job.total:
                    line.progress(factor=job.iteration / job.total, type="BAR", text=f"{job.source}: {job.describe()}")
                else:
                    line.label(text=f"{job.source}: {job.describe()}", icon="TIME" if job.active else "CHECKMARK")
            row = layout.row(align=True)
            if any(job.status == "done" for job in session.jobs.values()):
                row.operator("siren.apply", icon="CHECKMARK")
            if any(job.status in FINISHED for job in session.jobs.values()):
                row.operator("siren.clear", icon="TRASH")
            if session.interrupted_jobs():
                layout.operator("siren.resubmit", icon="FILE_REFRESH")
        if any(obj.get("siren_job") for obj in context.selected_objects):
            layout.operator("siren.fetch_result", icon="IMPORT")


def draw_status(self, context) -> None:
    session = state.session
    if session is None:
        return
    for job in session.active_jobs():
        self.layout.label(text=f"SIREN {job.source}: {job.describe()}")


def register() -> None:
    bpy.utils.register_class(SIREN_PT_main)
    bpy.types.STATUSBAR_HT_header.append(draw_status)


def unregister() -> None:
    bpy.types.STATUSBAR_HT_header.remove(draw_status)
    bpy.utils.unregister_class(SIREN_PT_main)
