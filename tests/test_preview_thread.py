"""Previews meshed on a thread of their own: the same meshes, in the same order, as on the
training thread, and training itself untouched."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from siren_recon.engine.errors import Cancelled
from siren_recon.engine.pipeline import reconstruct_points

from .shapes import small_config, sphere_cloud

pytestmark = pytest.mark.slow


def _run(thread: str, mode: str = "oriented", **overrides):
    points, normals = sphere_cloud(1200, radius=1.0)
    config = small_config(
        preview__enabled=True, preview__first_iteration=20, preview__thread=thread, train__iterations=200,
        mode=mode, **overrides,
    )
    events = []
    result = reconstruct_points(points, normals if mode == "oriented" else None, config, on_mesh=events.append)
    return result, events


@pytest.mark.parametrize("mode", ["oriented", "unoriented"])
def test_previews_on_a_thread_are_the_previews_of_the_training_thread(mode):
    inline, inline_events = _run("off", mode)
    threaded, threaded_events = _run("on", mode)
    assert [(e.iteration, e.resolution, e.final) for e in threaded_events] == [
        (e.iteration, e.resolution, e.final) for e in inline_events
    ]
    assert len(threaded_events) >= 4 and threaded_events[-1].final
    assert not any(e.final for e in threaded_events[:-1])
    iterations = [e.iteration for e in threaded_events]
    assert iterations == sorted(iterations)
    for a, b in zip(inline_events, threaded_events, strict=True):
        np.testing.assert_array_equal(a.vertices, b.vertices)
        np.testing.assert_array_equal(a.faces, b.faces)
    assert threaded.stats == inline.stats  # the snapshots do not feed training


def test_a_cancelled_run_leaves_no_preview_behind():
    points, normals = sphere_cloud(1200, radius=1.0)
    config = small_config(preview__enabled=True, preview__first_iteration=10, preview__thread="on",
                          train__iterations=100)
    events, steps = [], []

    def cancel() -> bool:
        steps.append(1)
        return len(steps) > 45

    with pytest.raises(Cancelled):
        reconstruct_points(points, normals, config, on_mesh=events.append, should_cancel=cancel)
    assert all(not e.final and e.iteration <= 45 for e in events)
    assert not [t for t in threading.enumerate() if t.name.startswith("preview-mesher")]


def test_auto_meshes_previews_on_the_training_thread_on_the_cpu():
    from siren_recon.engine.fitting.device_choices import previews_on_thread

    config = small_config()
    assert not previews_on_thread(config, torch.device("cpu"))
    assert previews_on_thread(config, torch.device("cuda"))
    assert previews_on_thread(small_config(preview__thread="on"), torch.device("cpu"))
    assert not previews_on_thread(small_config(preview__thread="off"), torch.device("cuda"))
