"""Operators and the timer that shows meshes as they arrive (thin bpy over session.py)."""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty

from . import state
from .backend_process import Launch, LaunchError, plan_launch
from .backend_site import installed_site
from .blender_io import cloud_from_object, keep_as_mesh, show_mesh
from .geometry import wire_cloud
from .link_checks import LinkError
from .properties import MODE_ITEMS, QUALITY_ITEMS, preferences, remote_link
from .protocol.messages import MIN_POINTS
from .redraw import RedrawGate
from .session import FINISHED, Session
from .settings import job_overrides

TICK_INTERVAL = 0.1
"""Seconds between timer ticks; each tick spends at most a few milliseconds."""
TICK_BUDGET = 0.004
REDRAW_AREAS = ("VIEW_3D", "STATUSBAR")

redraw_gate = RedrawGate()


def apply_updates() -> int:
    """Watch the local backend, drain the session and copy each job's newest mesh into its
    preview; returns meshes shown."""
    changed = state.tick(budget=TICK_BUDGET)
    session = state.session
    if session is None:
        return 0
    shown = 0
    for job in changed:
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


def redraw_views() -> None:
    """Ask Blender to draw the 3D views and the status bar again."""
    for window in getattr(bpy.context.window_manager, "windows", []):
        for area in window.screen.areas:
            if area.type in REDRAW_AREAS:
                area.tag_redraw()


def timer_tick() -> float:
    """The ``bpy.app.timers`` callback: never blocks, keeps itself registered; draws the views
    again only when what they show changed, or while work is under way."""
    apply_updates()
    if redraw_gate.due(state.view_signature(), state.busy()):
        redraw_views()
    return TICK_INTERVAL


def user_folder() -> Path:
    """The add-on's folder for files of its own (the local backend's log and run file)."""
    return Path(bpy.utils.extension_path_user(__package__, create=True))


def local_launch(context) -> Launch:
    """How to start the local backend: the preferences' Backend Python, else the installed backend run
    by Blender's own Python. Raises :class:`LaunchError` when there is neither."""
    prefs = preferences(context)
    own_python = bpy.path.abspath(prefs.backend_python) if prefs is not None and prefs.backend_python else ""
    return plan_launch(own_python, installed_site(user_folder()), sys.executable)


def connect_remote(operator, context) -> Session | None:
    """The session to the preferences' remote backend, connected (waiting up to its connect
    timeout); ``None``, the reason reported, if not."""
    try:
        session = state.session_for(*remote_link(context))
        if session.status == "connected" or session.wait_connected():
            return session
    except LinkError as exc:
        operator.report({"ERROR"}, str(exc))
        return None
    operator.report({"ERROR"}, session.message)
    return None


def start_local(operator, context) -> Session | None:
    """Start (or find) the local backend and a session to it, returning at once; ``None``, the
    reason reported, when it cannot be started."""
    try:
        return state.start_local(local_launch(context), user_folder())
    except (LaunchError, LinkError) as exc:
        operator.report({"ERROR"}, str(exc))
        return None


def working_session(operator, context) -> Session | None:
    """The session to send work through: the one linked now (unless the preferences name another
    remote backend since); else the local backend, started without waiting, when one is installed
    or a Backend Python is chosen; else the remote backend."""
    session = state.session
    if state.orphaned(session):
        return start_local(operator, context)
    if state.linked():
        if state.is_local(session) or (session.address, session.server_key_file,
                                       session.client_key_file) == remote_link(context):
            return session
        return connect_remote(operator, context)
    try:
        local_launch(context)
    except LaunchError:
        return connect_remote(operator, context)
    return start_local(operator, context)


def source_objects(context) -> list:
    return [
        obj for obj in context.selected_objects
        if obj.type in ("MESH", "POINTCLOUD") and "siren_source" not in obj
    ]


class SIREN_OT_connect(bpy.types.Operator):
    bl_idname = "siren.connect"
    bl_label = "Connect"
    bl_description = "Connect to the remote backend set in the add-on's preferences"

    def execute(self, context):
        session = connect_remote(self, context)
        if session is None:
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
    bl_description = ("Run the installed backend (or the preferences' Backend Python) on this machine; "
                      "stopped when Blender quits or the add-on is disabled")

    def execute(self, context):
        session = start_local(self, context)
        if session is None:
            return {"CANCELLED"}
        self.report({"INFO"}, session.message)
        return {"FINISHED"}


class SIREN_OT_stop_backend(bpy.types.Operator):
    bl_idname = "siren.stop_backend"
    bl_label = "Stop"
    bl_description = "Stop the local backend (its running jobs are cancelled)"

    @classmethod
    def poll(cls, context):
        return bool(state.local_backend.pid)

    def execute(self, context):
        state.stop_local()
        self.report({"INFO"}, "the local backend was stopped")
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
        session = working_session(self, context)
        if session is None:
            return {"CANCELLED"}
        overrides = job_overrides(mode, quality, settings.iterations, settings.resolution, settings.seed,
                                  settings.trim, settings.trim_distance, settings.tile_size, settings.detail_size)
        depsgraph = context.evaluated_depsgraph_get()
        jobs = []
        for obj in sources:
            points, normals, colours, matrix = cloud_from_object(obj, depsgraph, settings.surface_samples)
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
        self.report({"INFO"}, f"submitted {len(jobs)} job(s) to {session.address}")
        return {"FINISHED"}


class SIREN_OT_cancel(bpy.types.Operator):
    bl_idname = "siren.cancel"
    bl_label = "Cancel"
    bl_description = "Cancel every reconstruction not yet finished, sent or not"

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
        for job in list(session.jobs.values()) if session is not None else []:
            obj = bpy.data.objects.get(job.preview)
            if job.status != "done" or obj is None:
                continue
            keep_as_mesh(obj, f"{job.source}_mesh")
            session.forget(job)
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
        try:
            launch = local_launch(context) if state.orphaned(state.session) else None
            done = state.resubmit(launch, user_folder())
        except (LaunchError, LinkError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, done)
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
        session = working_session(self, context)
        if session is None:
            return {"CANCELLED"}
        for obj in previews:
            session.fetch(obj.get("siren_source", obj.name), obj.name, obj["siren_job"])
        self.report({"INFO"}, f"asked for {len(previews)} result(s)")
        return {"FINISHED"}


class SIREN_OT_clear(bpy.types.Operator):
    bl_idname = "siren.clear"
    bl_label = "Clear"
    bl_description = "Remove the finished, failed and cancelled jobs from the list (their objects stay)"

    @classmethod
    def poll(cls, context):
        return state.session is not None and any(job.status in FINISHED for job in state.session.jobs.values())

    def execute(self, context):
        cleared = state.session.clear_finished()
        self.report({"INFO"}, f"cleared {cleared} job(s)")
        return {"FINISHED"}


CLASSES = (SIREN_OT_connect, SIREN_OT_disconnect, SIREN_OT_start_backend, SIREN_OT_stop_backend,
           SIREN_OT_reconstruct, SIREN_OT_cancel, SIREN_OT_apply, SIREN_OT_clear, SIREN_OT_resubmit,
           SIREN_OT_fetch_result)
