"""A fit stops once its surface has settled, never past its ceiling, and exactly at an explicit count;
previews come early and at least every ``preview.every_seconds``."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from siren_recon.engine.config.reconstruction import ModelConfig, PreviewConfig
from siren_recon.engine.events import MeshEvent, ProgressEvent
from siren_recon.engine.field.model import Siren
from siren_recon.engine.fitting.convergence import Convergence
from siren_recon.engine.fitting.trainer import PreviewTimer, first_preview
from siren_recon.engine.pipeline import reconstruct_points

from .shapes import small_config, sphere_cloud

SPACING = 0.01


def probe_points() -> torch.Tensor:
    return torch.as_tensor(sphere_cloud(500)[0] * 0.5, dtype=torch.float32)


def small_network() -> Siren:
    torch.manual_seed(0)
    return Siren(ModelConfig(hidden_features=32, hidden_layers=2))


def shift(model: Siren, amount: float) -> None:
    """Move the field's values everywhere by ``amount`` (the last layer's bias)."""
    with torch.no_grad():
        list(model.parameters())[-1].add_(amount)


def test_a_field_that_stays_put_settles_after_two_calm_looks():
    model = small_network()
    watch = Convergence(probe_points(), SPACING, tolerance=0.05)
    seen = [watch.settled(model, step) for step in range(1, 301)]
    assert seen.index(True) == 299 and sum(seen) == 1  # looks at 100 and 200 and 300: settled at 300
    assert watch.stopped_at == 300
    assert [step for step, _ in watch.movements] == [200, 300]
    assert all(movement == 0 for _, movement in watch.movements)


def test_a_field_still_moving_does_not_settle():
    model = small_network()
    watch = Convergence(probe_points(), SPACING, tolerance=0.05)
    for step in range(100, 2001, 100):
        shift(model, 0.2 * SPACING)  # the surface moves a fifth of a spacing between two looks
        assert not watch.settled(model, step)
    assert watch.stopped_at is None
    assert all(movement == pytest.approx(0.2, rel=1e-3) for _, movement in watch.movements)


def test_one_calm_look_between_moves_is_not_enough():
    model = small_network()
    watch = Convergence(probe_points(), SPACING, tolerance=0.05)
    moves = [0.0, 0.3, 0.0, 0.3, 0.0, 0.3]  # calm, moving, calm, ...: never twice calm in a row
    for look, amount in enumerate(moves, start=1):
        shift(model, amount * SPACING)
        assert not watch.settled(model, 100 * look)
    shift(model, 0.0)
    assert watch.settled(model, 700) is False and watch.settled(model, 800) is True


@pytest.fixture(scope="module")
def sphere():
    return sphere_cloud(1500, radius=1.0)


def run(sphere, **overrides):
    points, normals = sphere
    progress: list[ProgressEvent] = []
    meshes: list[MeshEvent] = []
    config = small_config(train__progress_every=25, **overrides)
    result = reconstruct_points(points, normals, config, on_progress=progress.append, on_mesh=meshes.append)
    return result, progress, meshes


def test_a_settled_fit_stops_early_and_says_at_which_step(sphere):
    result, progress, meshes = run(sphere, train__iterations=800, train__until="converged",
                                   train__converged_spacings=50.0)
    assert result.stats["steps"] == 300 == result.field.steps
    assert progress[-1].iteration == 300 and progress[-1].total == 800
    assert [m.iteration for m in meshes if m.final] == [300]
    radii = np.linalg.norm(result.vertices, axis=1)
    assert abs(float(np.median(radii)) - 1.0) < 0.05


def test_the_ceiling_holds_when_the_fit_never_settles(sphere):
    result, progress, _ = run(sphere, train__iterations=250, train__until="converged", train__converged_spacings=0.0)
    assert result.stats["steps"] == 250 and progress[-1].iteration == 250


def test_until_iterations_runs_every_step_however_settled(sphere):
    result, progress, _ = run(sphere, train__iterations=400, train__until="iterations",
                              train__converged_spacings=50.0)
    assert result.stats["steps"] == 400 and progress[-1].iteration == 400


def test_the_unoriented_refinement_stops_once_settled_and_digs_runs_its_share(sphere):
    points, _ = sphere
    config = small_config(train__iterations=800, train__until="converged", train__converged_spacings=50.0,
                          refinement__share=0.5)
    result = reconstruct_points(points, None, config)
    assert result.stats["steps"] == 400 + 300  # DiGS's 400, the refinement settled at its 300th


def test_explicit_iterations_on_the_command_line_mean_exactly_that_many(tmp_path, sphere):
    points, normals = sphere
    cloud = tmp_path / "sphere.xyzn"
    np.savetxt(cloud, np.hstack([points, normals]))
    small = [item for key, value in small_config_items() for item in ("--set", f"{key}={value}")]

    def steps(*flags: str) -> str:
        run = subprocess.run([sys.executable, "-m", "siren_recon", "reconstruct", str(cloud), "-o",
                              str(tmp_path / "out.ply"), *small, "--set", "train.converged_spacings=50", *flags],
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr
        return run.stderr.strip().splitlines()[-1]

    assert "(300 steps)" in steps("--set", "train.until=converged", "--set", "train.iterations=800")
    assert "(350 steps)" in steps("--set", "train.until=converged", "--iterations", "350")
    assert "(400 steps)" in steps("--set", "train.iterations=400")  # the default: every step


def small_config_items() -> list[tuple[str, object]]:
    """The test network's settings, but for the stop rule (the engine's default or the flags')."""
    from .shapes import SMALL

    return [(key, value) for key, value in SMALL.items() if key != "train.until"]


def test_the_first_preview_comes_at_step_ten():
    assert PreviewConfig().first_iteration == 10
    assert first_preview(PreviewConfig(), 2000) == 10
    assert first_preview(PreviewConfig(enabled=False), 2000) == 0


def test_previews_come_at_least_every_few_seconds_between_scheduled_ones():
    timer = PreviewTimer(PreviewConfig(first_iteration=10, growth=1000.0, every_seconds=0.2,
                                       min_resolution=32, max_resolution=64), 5000)
    assert timer.due(10) == 32
    timer.shown()
    assert timer.due(11) == 0
    time.sleep(0.25)
    assert timer.due(12) == 64  # no scheduled one is left: the largest resolution
    timer.shown()
    assert timer.due(13) == 0
    time.sleep(0.25)
    assert timer.due(5000) == 0  # the last step has the final mesh


def test_every_seconds_zero_keeps_to_the_schedule():
    timer = PreviewTimer(PreviewConfig(first_iteration=10, growth=2.0, every_seconds=0.0), 100)
    time.sleep(0.05)
    assert [step for step in range(1, 101) if timer.due(step)] == [10, 20, 40, 80]


def test_no_timed_preview_before_the_first_scheduled_one():
    timer = PreviewTimer(PreviewConfig(first_iteration=80, growth=1000.0, every_seconds=0.01), 500, last=0.0)
    assert [step for step in range(1, 80) if timer.due(step)] == []  # the last preview is long ago
    assert timer.due(80) and timer.due(81)


def test_an_unoriented_run_times_its_previews_across_both_stages(sphere):
    points, _ = sphere
    meshes: list[MeshEvent] = []
    config = small_config(train__iterations=400, refinement__share=0.5, preview__enabled=True,
                          preview__first_iteration=10, preview__every_seconds=0.01)
    reconstruct_points(points, None, config, on_mesh=meshes.append)
    steps = [m.iteration for m in meshes if not m.final]
    digs, refinement = [s for s in steps if s <= 200], [s - 200 for s in steps if s > 200]
    assert digs[0] == 10 and len(digs) > 20 and digs[-1] == 200  # DiGS's last field stays in view
    assert refinement[0] == 80 and len(refinement) > 20  # the fresh network shows from its step 80
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
