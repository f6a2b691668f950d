"""The optimisation loop: Adam on the SIREN loss, with progress, previews and cancellation.

The trainer reports through callbacks and never prints; it reads loss values back from the
device only every ``progress_every`` steps, so a GPU is not stalled by host syncs each step.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence

import torch

from ..config.reconstruction import PreviewConfig, ReconstructionConfig
from ..errors import Cancelled
from ..events import ProgressEvent
from ..field.derivatives import divergence, forward_jets, sdf_and_gradient
from ..field.fused_gradient import fused_settings, value_and_gradient_fused
from ..field.model import Siren
from .convergence import Convergence
from .device_choices import TF32, adam_options, uses_tf32
from .losses import oriented_loss, unoriented_loss
from .regularisers import OffSurface, Regulariser
from .sampling import Batch, PointSampler

ProgressCallback = Callable[[ProgressEvent], None]
PreviewCallback = Callable[[int, int], None]
"""Called as ``preview(iteration, resolution)`` on the preview schedule."""
CancelCheck = Callable[[], bool]
MINE_EVERY = 50
"""Steps between two calls of the regularisers' ``refresh`` (see ``PointSampler.refresh``)."""


def preview_schedule(config: PreviewConfig, iterations: int) -> list[tuple[int, int]]:
    """Iterations and resolutions of the preview meshes.

    The first comes early (``first_iteration``) at a coarse resolution, so a user sees a shape
    within seconds; later ones come at geometrically growing intervals with resolutions rising
    towards ``max_resolution``, so the cost of previews stays a small share of training.
    """
    if not config.enabled:
        return []
    steps: list[int] = []
    it = float(config.first_iteration)
    while it < iterations:
        steps.append(int(it))
        it *= config.growth
    if not steps:
        return []
    if len(steps) == 1:
        return [(steps[0], config.min_resolution)]
    ratio = config.max_resolution / config.min_resolution
    return [
        (step, int(round(config.min_resolution * ratio ** (i / (len(steps) - 1)))))
        for i, step in enumerate(steps)
    ]


def uses_forward_jets(config: ReconstructionConfig, need_laplacian: bool) -> bool:
    """Whether a step computes derivatives forward (see ``TrainConfig.derivatives``).

    Every path but ``autograd`` takes the Laplacian by jets (it replaces three extra backward
    passes); for the gradient alone only ``forward`` does (``auto`` and ``fused`` take the fused
    path, autograd as fast as jets there).
    """
    if need_laplacian:
        return config.train.derivatives != "autograd"
    return config.train.derivatives == "forward"


def value_and_gradient(
    model: Siren, x: torch.Tensor, config: ReconstructionConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """``f`` and ``grad f`` at ``x`` by the path ``train.derivatives`` picks for steps without
    the Laplacian; with autograd, ``x`` itself is made to require grad (a Laplacian of the
    result can then be taken with respect to it)."""
    path = config.train.derivatives
    if path in ("auto", "fused"):
        dtype, compile = fused_settings(config.train.backward_precision, config.train.compile, x.device)
        return value_and_gradient_fused(model, x, dtype, compile)
    if path == "forward":
        f, grad, _ = forward_jets(model, x, laplacian=False)
        return f, grad
    return sdf_and_gradient(model, x)


def sampled_rows(box: int, near: int, share: float) -> tuple[int, int]:
    """How many of the first box and near rows a term sampled at ``share`` is taken at (see
    ``UnorientedLossConfig.divergence_share`` and ``OrientedLossConfig.eikonal_share``)."""
    # less a hair, so that a product that rounds just above a whole number stays on it
    return math.ceil(share * box - 1e-9), math.ceil(share * near - 1e-9)


def compute_loss(
    model: Siren,
    batch: Batch,
    config: ReconstructionConfig,
    mode: str,
    divergence_weight: float = 0.0,
    regularisers: Sequence[Regulariser] = (),
) -> dict[str, torch.Tensor]:
    """Loss terms of one batch: the SIREN loss when oriented, the DiGS loss when unoriented.

    The ``regularisers`` (oriented only) each add their term, in order; ``batch.extra`` holds
    their points in the same order.
    """
    if mode == "oriented":
        return _oriented_loss(model, batch, config, regularisers)
    if regularisers:
        raise ValueError("regularisers act in the oriented loss only")
    s, b = len(batch.surface), len(batch.box)
    need_div = divergence_weight > 0
    if need_div and uses_forward_jets(config, True):
        return _forward_divergence_loss(model, batch, config, divergence_weight)
    points = torch.cat([batch.surface, batch.box, batch.near])
    div = None
    f, grad = value_and_gradient(model, points, config)
    if need_div:  # by autograd: with forward jets the Laplacian took the path above
        lap_box, lap_near = sampled_rows(b, len(batch.near), config.unoriented.divergence_share)
        device = points.device
        rows = torch.cat(
            [torch.arange(s, s + lap_box, device=device), torch.arange(s + b, s + b + lap_near, device=device)]
        )
        div = divergence(grad, points, rows)
    return unoriented_loss(f[:s], f[s : s + b], [grad[:s], grad[s:]], div, divergence_weight, config.unoriented)


def _oriented_loss(
    model: Siren, batch: Batch, config: ReconstructionConfig, regularisers: Sequence[Regulariser]
) -> dict[str, torch.Tensor]:
    """The SIREN loss, with the gradient taken at the surface rows and at the eikonal share of
    the box and near rows; the other box rows take the value alone (three matrix products per
    layer with its backward pass instead of six)."""
    if batch.normals is None:
        raise ValueError("the oriented loss needs normals")
    s, b, m = len(batch.surface), len(batch.box), len(batch.near)
    grad_box, grad_near = sampled_rows(b, m, config.oriented.eikonal_share)
    f, grad = value_and_gradient(
        model, torch.cat([batch.surface, batch.box[:grad_box], batch.near[:grad_near]]), config
    )
    f_box = f[s : s + grad_box]
    if grad_box < b:
        f_box = torch.cat([f_box, model(batch.box[grad_box:])])
    terms = oriented_loss(
        f[:s],
        grad[:s],
        batch.normals,
        f_box,
        grad[s : s + grad_box],
        grad[s + grad_box :],
        config.oriented,
        off_surface_rows=b + m,
    )
    for regulariser, extra in zip(regularisers, batch.extra, strict=True):
        step = OffSurface(batch.box, batch.near, f_box, f[s + grad_box :], extra)
        terms[regulariser.name] = regulariser.loss(model, step)
        terms["total"] = terms["total"] + terms[regulariser.name]
    return terms


def _forward_divergence_loss(
    model: Siren, batch: Batch, config: ReconstructionConfig, divergence_weight: float
) -> dict[str, torch.Tensor]:
    """The DiGS loss with the Laplacian by forward jets, taken at the divergence rows alone; the
    other rows take the path :func:`value_and_gradient` picks for value and gradient alone."""
    s, b = len(batch.surface), len(batch.box)
    lap_box, lap_near = sampled_rows(b, len(batch.near), config.unoriented.divergence_share)
    lap_rows = torch.cat([batch.box[:lap_box], batch.near[:lap_near]])
    plain_rows = torch.cat([batch.surface, batch.box[lap_box:], batch.near[lap_near:]])
    f_plain, grad_plain = value_and_gradient(model, plain_rows, config)
    f_lap, grad_lap, div = forward_jets(model, lap_rows, laplacian=True)
    f_box = torch.cat([f_lap[:lap_box], f_plain[s : s + b - lap_box]])
    return unoriented_loss(f_plain[:s], f_box, [grad_plain, grad_lap], div, divergence_weight, config.unoriented)


def train(
    model: Siren,
    sampler: PointSampler,
    config: ReconstructionConfig,
    mode: str,
    on_progress: ProgressCallback | None = None,
    on_preview: PreviewCallback | None = None,
    should_cancel: CancelCheck | None = None,
    convergence: Convergence | None = None,
    eager_steps: int = 0,
    previews: PreviewTimer | None = None,
) -> dict[str, float]:
    """Run ``config.train.iterations`` steps, or fewer once ``convergence`` says the field has
    settled (its ``stopped_at`` then names the step); return the last loss terms as floats. The
    first ``eager_steps`` run without compilation (see :func:`first_preview`); ``previews`` says
    at which steps ``on_preview`` is called (default: a fresh :class:`PreviewTimer`).

    Raises :class:`Cancelled` before the next step once ``should_cancel()`` is true.
    """
    cfg = config.train
    total = cfg.iterations
    device = next(model.parameters()).device
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, **adam_options(config, device))
    final = cfg.lr_decay_final

    def lr_factor(step: int) -> float:
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * step / max(1, total)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lr_factor)
    with TF32.held(uses_tf32(config, device)):
        if previews is None and on_preview is not None:
            previews = PreviewTimer(config.preview, total)
        return _steps(model, sampler, config, mode, optimiser, scheduler, on_progress, on_preview, should_cancel,
                      convergence, eager_steps, previews)


def _steps(
    model: Siren,
    sampler: PointSampler,
    config: ReconstructionConfig,
    mode: str,
    optimiser: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    on_progress: ProgressCallback | None,
    on_preview: PreviewCallback | None,
    should_cancel: CancelCheck | None,
    convergence: Convergence | None,
    eager_steps: int,
    previews: PreviewTimer | None,
) -> dict[str, float]:
    """The training loop of :func:`train`."""
    cfg = config.train
    total = cfg.iterations
    model.train()
    started = time.perf_counter()
    window_start, window_iteration = started, 0
    last: dict[str, float] = {}
    exact_from = math.ceil(cfg.reduced_precision_until * total)
    exact = dataclasses.replace(config, train=dataclasses.replace(cfg, backward_precision="float32"))
    for step in range(1, total + 1):
        if should_cancel is not None and should_cancel():
            raise Cancelled(f"cancelled after {step - 1} of {total} iterations")
        div_weight = config.unoriented.divergence.value(step - 1, total) if mode == "unoriented" else 0.0
        if step % MINE_EVERY == 0:  # not at the start: a fresh network crosses zero everywhere
            sampler.refresh(model)
        step_config = exact if step > exact_from else config
        if step <= eager_steps:
            step_config = dataclasses.replace(step_config, train=dataclasses.replace(step_config.train, compile="off"))
        terms = compute_loss(model, sampler.sample(), step_config, mode, div_weight, sampler.regularisers)
        optimiser.zero_grad(set_to_none=True)
        terms["total"].backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimiser.step()
        scheduler.step()
        settled = convergence is not None and convergence.settled(model, step)
        if step % cfg.progress_every == 0 or step == total or settled:
            last = {name: float(value.detach()) for name, value in terms.items()}
            now = time.perf_counter()
            rate = (step - window_iteration) / max(now - window_start, 1e-9)
            window_start, window_iteration = now, step
            if on_progress is not None:
                on_progress(ProgressEvent(step, total, last, rate, (total - step) / rate, mode))
        if previews is not None and on_preview is not None:
            resolution = 0 if settled else previews.due(step)
            if resolution:
                previews.shown()
                on_preview(step, resolution)
        if settled:
            break
    return last


def first_preview(config: PreviewConfig, iterations: int) -> int:
    """The step of the first scheduled preview, 0 when there is none. A reconstruction's first fit
    runs the steps up to it without compilation, so that the first preview does not wait for the
    compiler (see ``PreviewConfig.first_iteration``)."""
    schedule = preview_schedule(config, iterations)
    return schedule[0][0] if schedule else 0


class PreviewTimer:
    """Which steps get a preview: the schedule's (:func:`preview_schedule`; with ``followed``, a
    fit that another follows, its last step too), and any step after its first one
    ``every_seconds`` after the last preview began when the schedule's next one is further away."""

    def __init__(self, config: PreviewConfig, iterations: int, last: float | None = None,
                 followed: bool = False) -> None:
        self.schedule = dict(preview_schedule(config, iterations))
        if followed and self.schedule:  # the fit's best field stays in view while the next one sets up
            self.schedule[iterations] = config.max_resolution
        self.every = config.every_seconds if self.schedule else 0.0
        self.iterations = iterations
        self.max_resolution = config.max_resolution
        self.last = time.perf_counter() if last is None else last
        """``time.perf_counter()`` when the last preview began (or the run, a stage before it)."""
        self.first = min(self.schedule, default=0)
        """No timed preview before the schedule's first (a later stage's fresh network, see
        ``fitting.stage.LATER_FIRST_PREVIEW``)."""

    def due(self, step: int) -> int:
        """The resolution of a preview at ``step``, or 0 for none (no timed one at the last step:
        the final mesh, or the next fit's set-up, comes then)."""
        if step in self.schedule:
            return self.schedule[step]
        if (self.every > 0 and self.first < step < self.iterations
                and time.perf_counter() - self.last >= self.every):
            later = [resolution for at, resolution in sorted(self.schedule.items()) if at > step]
            return later[0] if later else self.max_resolution
        return 0

    def shown(self) -> None:
        """A preview is being made: the next timed one counts from now."""
        self.last = time.perf_counter()
