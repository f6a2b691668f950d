"""Operators and the timer that shows meshes as they arrive (thin bpy over session.py)."""

from __future__ import annotations

import functools
import time

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty

from . import state
from .blender_io import cloud_from_object, show_mesh
from .geometry import wire_cloud
from .properties import MODE_ITEMS, QUALITY_ITEMS, key_files
from .settings import MIN_POINTS, job_overrides

TICK_INTERVAL = 0.1
"""Seconds between timer ticks; each tick spends at most a few milliseconds."""
TICK_BUDGET = 0.004


def apply_updates() -> int:
    """Drain the session and copy each job's newest mesh into its preview; returns meshes shown."""
    session = state.session
    if session is None:
        return 0
    shown = 0
    for job in session.tick(budget=TICK_BUDGET):
        mesh = session.take_mesh(job)
        if mesh is None:
            continue
        source = bpy.data.objects.get(job.source)
        if source is not None and source.users_collection:
            collection = source.users_collection[0]
        else:
            collection = bpy.context.scene.collection
        show_mesh(job.preview, job.source, mesh.vertices, mesh.faces, mesh.colours, collection, job.job)
        shown += 1
    return shown


def timer_tick() -> float:
    """The ``bpy.app.timers`` callback: never blocks, keeps itself registered."""
    apply_updates()
    for window in getattr(bpy.context.window_manager, "windows", []):
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "STATUSBAR"):
                area.tag_redraw()
    return TICK_INTERVAL


def connected_session(operator, context):
    """The session for the panel's address and key files, connected; ``None`` (reported) if not."""
    session = state.session_for(context.scene.siren.address, *key_files(context))
    if session.status != "connected" and not session.wait_connected():
        operator.report({"ERROR"}, session.message)
        return None
    return session


def source_objects(context) -> list:
    return [
        obj for obj in context.selected_objects
        if obj.type in ("MESH", "POINTCLOUD") and "siren_source" not in obj
    ]


class SIREN_OT_connect(bpy.types.Operator):
    bl_idname = "siren.connect"
    bl_label = "Connect"
    bl_description = "Connect to the backend at the address above"

    def execute(self, context):
        session = state.session_for(context.scene.siren.address, *key_files(context))
        if not session.wait_connected():
            self.report({"ERROR"}, session.message)
            return {"CANCELLED"}
        self.report({"INFO"}, session.message)
        return {"FINISHED"}


class SIREN_OT_disconnect(bpy.types.Operator):
    bl_idname = "siren.disconnect"
    bl_label = "Disconnect"
    bl_description = "Cancel this session's jobs and close the connection"

    def execute(self, context):
        if state.session is not None:
            state.session.disconnect()
        return {"FINISHED"}


class SIREN_OT_start_backend(bpy.types.Operator):
    bl_idname = "siren.start_backend"
    bl_label = "Start Local Backend"
    bl_description = "Run the backend command on this machine (stopped when Blender quits or the add-on is disabled)"

    def execute(self, context):
        settings = context.scene.siren
        try:
            state.local_backend.start(settings.backend_command, settings.address)
        except ValueError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        session = state.session_for(settings.address, *key_files(context))
        session.connect_timeout = 30.0  # a fresh backend imports torch first
        connected = session.wait_connected()
        session.connect_timeout = 3.0
        if not connected:
            self.report({"ERROR"}, f"the local backend did not answer: {session.message}")
            return {"CANCELLED"}
        self.report({"INFO"}, session.message)
        return {"FINISHED"}


class SIREN_OT_reconstruct(bpy.types.Operator):
    bl_idname = "siren.reconstruct"
    bl_label = "Reconstruct Selected"
    bl_description = "Send the selected mesh or point cloud objects to the backend; previews appear as they train"
    bl_options = {"REGISTER"}

    mode: EnumProperty(name="Mode", items=MODE_ITEMS, default="auto")
    quality: EnumProperty(name="Quality", items=QUALITY_ITEMS, default="standard")
    wait: BoolProperty(name="Wait", default=False,
                       description="Block until every job ends (for scripts and batch runs)")
    timeout: FloatProperty(name="Timeout", default=3600.0, min=1.0, description="Seconds to wait at most, with Wait")

    def execute(self, context):
        settings = context.scene.siren
        mode = self.mode if self.properties.is_property_set("mode") else settings.mode
        quality = self.quality if self.properties.is_property_set("quality") else settings.quality
        sources = source_objects(context)
        if not sources:
            self.report({"ERROR"}, "select one or more mesh or point cloud objects to reconstruct")
            return {"CANCELLED"}
        session = connected_session(self, context)
        if session is None:
            return {"CANCELLED"}
        overrides = job_overrides(mode, quality, settings.iterations, settings.resolution, settings.seed,
                                  settings.trim, settings.trim_distance)
        depsgraph = context.evaluated_depsgraph_get()
        jobs = []
        for obj in sources:
            points, normals, colours, matrix = cloud_from_object(obj, depsgraph)
            if len(points) < MIN_POINTS:
                self.report({"WARNING"}, f"{obj.name}: {len(points)} points, at least {MIN_POINTS} are needed; skipped")
                continue
            # world space, float32 and the encoding happen on a thread; the timer sends when ready
            jobs.append(session.submit_prepared(
                obj.name, functools.partial(wire_cloud, points, normals, colours, matrix), overrides))
        if not jobs:
            self.report({"ERROR"}, "nothing to reconstruct: every selected object has too few points")
            return {"CANCELLED"}
        if self.wait:
            deadline = time.monotonic() + self.timeout
            while any(job.active for job in jobs) and time.monotonic() < deadline:
                apply_updates()
                time.sleep(0.02)
            apply_updates()
            failed = [f"{job.source}: {job.message}" for job in jobs if job.status != "done"]
            if failed:
                self.report({"ERROR"}, "; ".join(failed))
                return {"CANCELLED"}
        self.report({"INFO"}, f"submitted {len(jobs)} job(s) to {settings.address}")
        return {"FINISHED"}


class SIREN_OT_cancel(bpy.types.Operator):
    bl_idname = "siren.cancel"
    bl_label = "Cancel"
    bl_description = "Cancel every running or queued reconstruction"

    def execute(self, context):
        session = state.session
        active = session.active_jobs() if session is not None else []
        for job in active:
            session.cancel(job)
        self.report({"INFO"}, f"cancelling {len(active)} job(s)")
        return {"FINISHED"}


class SIREN_OT_apply(bpy.types.Operator):
    bl_idname = "siren.apply"
    bl_label = "Apply"
    bl_description = "Keep the finished results as ordinary mesh objects (later runs make new previews)"

    def execute(self, context):
        session = state.session
        kept = 0
        for key, job in list(session.jobs.items()) if session is not None else []:
            obj = bpy.data.objects.get(job.preview)
            if job.status != "done" or obj is None:
                continue
            del obj["siren_source"]
            obj.name = f"{job.source}_mesh"
            obj.data.name = obj.name
            del session.jobs[key]
            kept += 1
        self.report({"INFO"}, f"kept {kept} mesh(es)")
        return {"FINISHED"}


class SIREN_OT_resubmit(bpy.types.Operator):
    bl_idname = "siren.resubmit"
    bl_label = "Resubmit"
    bl_description = "Run again the jobs a restarted backend lost; their preview objects are kept"

    @classmethod
    def poll(cls, context):
        return state.session is not None and bool(state.session.interrupted_jobs())

    def execute(self, context):
        resent = state.session.resubmit()
        self.report({"INFO"}, f"resubmitted {len(resent)} job(s)")
        return {"FINISHED"}


class SIREN_OT_fetch_result(bpy.types.Operator):
    bl_idname = "siren.fetch_result"
    bl_label = "Fetch Result"
    bl_description = "Get the finished mesh of the selected previews' jobs from the backend again (kept there for days)"

    def execute(self, context):
        previews = [obj for obj in context.selected_objects if obj.get("siren_job")]
        if not previews:
            self.report({"ERROR"}, "select a SIREN preview object (one that has a job id)")
            return {"CANCELLED"}
        session = connected_session(self, context)
        if session is None:
            return {"CANCELLED"}
        for obj in previews:
            session.fetch(obj.get("siren_source", obj.name), obj.name, obj["siren_job"])
        self.report({"INFO"}, f"asked for {len(previews)} result(s)")
        return {"FINISHED"}


CLASSES = (SIREN_OT_connect, SIREN_OT_disconnect, SIREN_OT_start_backend, SIREN_OT_reconstruct,
           SIREN_OT_cancel, SIREN_OT_apply, SIREN_OT_resubmit, SIREN_OT_fetch_result)
