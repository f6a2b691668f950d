"""A Blender user's first mesh, in an environment that has Blender (bpy) and nothing else of ours.

Run by ``tests/test_first_mesh_in_blender.py`` inside a Blender-only environment (no
``siren_recon`` importable, no ``siren-recon`` on the PATH), with the extension zip and a local
wheel folder it prepares (``SIREN_TEST_ADDON_ZIP``, ``SIREN_TEST_BACKEND_WHEELS``): install the
zip, *Install Backend* from the wheel folder, *Reconstruct Selected* with nothing connected and
nothing started by hand; then the backend killed during a job (the panel shows its log's last
lines, *Resubmit* finishes the job), and the add-on disabled (the backend process is gone).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from .scratch_extensions import use_scratch_extensions

use_scratch_extensions("siren-first-mesh-")
bpy = pytest.importorskip("bpy")

ZIP = os.environ.get("SIREN_TEST_ADDON_ZIP", "")
WHEELS = os.environ.get("SIREN_TEST_BACKEND_WHEELS", "")
MODULE = "bl_ext.user_default.siren_recon"
pytestmark = pytest.mark.skipif(not (ZIP and WHEELS), reason="run by tests/test_first_mesh_in_blender.py")


def pump(until, timeout: float, package) -> bool:
    """Call the add-on's timer as Blender would (module mode never fires timers) until ``until()``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        package.operators.timer_tick()
        if until():
            return True
        time.sleep(0.05)
    return until()


def test_a_first_mesh_from_a_fresh_blender_without_a_terminal():
    assert importlib.util.find_spec("siren_recon") is None and shutil.which("siren-recon") is None
    started = time.monotonic()
    assert bpy.ops.extensions.package_install_files(filepath=ZIP, repo="user_default",
                                                   enable_on_install=True) == {"FINISHED"}
    package = sys.modules[MODULE]
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.install_local_only, prefs.install_wheel_folder = True, WHEELS
    assert bpy.ops.siren.install_backend(device="CPU", wait=True) == {"FINISHED"}
    installed = time.monotonic()

    bpy.ops.mesh.primitive_uv_sphere_add(radius=1.0, location=(2.0, 0.0, 0.0))
    sphere = bpy.context.active_object
    bpy.ops.object.select_all(action="DESELECT")
    sphere.select_set(True)
    bpy.context.view_layer.objects.active = sphere
    assert bpy.ops.siren.reconstruct(quality="preview", wait=True, timeout=900) == {"FINISHED"}
    preview = bpy.data.objects[f"{sphere.name}_siren"]
    vertices = np.array([tuple(v.co) for v in preview.data.vertices]) @ np.asarray(preview.matrix_world)[:3, :3].T
    vertices += np.asarray(preview.matrix_world)[:3, 3]
    assert len(preview.data.polygons) > 1000
    assert np.abs(np.linalg.norm(vertices - (2.0, 0.0, 0.0), axis=1) - 1.0).mean() < 0.02
    first_mesh = time.monotonic()
    install, reconstruction = installed - started, first_mesh - installed
    timings = f"zip and backend installed in {install:.0f} s, a first mesh {reconstruction:.0f} s after that"
    Path(os.environ.get("SIREN_TEST_TIMINGS", os.devnull)).write_text(timings)

    state = package.state
    pid = state.local_backend.pid
    assert pid and state.local_backend.running
    bpy.ops.siren.clear()
    assert bpy.ops.siren.reconstruct(quality="preview") == {"FINISHED"}
    job = next(iter(state.session.jobs.values()))
    assert pump(lambda: job.status == "running" and job.iteration > 0, 300, package), job.describe()
    os.kill(pid, signal.SIGKILL)
    assert pump(lambda: job.status == "interrupted", 30, package), job.describe()
    log_lines = state.exit_report[1:]
    assert state.exit_report[0].startswith("the local backend exited") and log_lines
    log_text = Path(state.local_backend.log_path).read_text()
    assert all(line.strip() in log_text for line in log_lines)
    assert bpy.ops.siren.resubmit() == {"FINISHED"}
    assert pump(lambda: job.status == "done", 900, package), job.describe()
    assert state.local_backend.pid not in (0, pid)

    pid = state.local_backend.pid
    bpy.ops.preferences.addon_disable(module=MODULE)
    assert not package.pids.pid_alive(pid)
