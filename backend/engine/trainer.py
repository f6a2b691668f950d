"""The optimisation loop: Adam on the SIREN loss, with progress, previews and cancellation.

The trainer reports through callbacks and never prints; it reads loss values back from the
device only every ``progress_every`` steps, so a GPU is not stalled by host syncs each step.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import torch

from .config import PreviewConfig, ReconstructionConfig
from .errors import Cancelled
from .events import ProgressEvent
from .derivatives import divergence, forward_jets, sdf_and_gradient
from .losses import oriented_loss, unoriented_loss
from .model import Siren
from .sampling import Batch, PointSampler
from .sign_prior import sign_prior_term

ProgressCallback = Callable[[ProgressEvent], None]
PreviewCallback = Callable[[int, int], None]
"""Called as ``preview(iteration, resolution)`` on the preview schedule."""
CancelCheck = Callable[[], bool]


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

    ``auto`` uses them only for steps that need the Laplacian (the divergence term): there they
    replace three extra backward passes, while for the gradient alone autograd measured as fast.
    """
    if config.train.derivatives == "auto":
        return need_laplacian
    return config.train.derivatives == "forward"


def compute_loss(
    model: Siren, batch: Batch, config: ReconstructionConfig, mode: str, divergence_weight: float = 0.0
) -> dict[str, torch.Tensor]:
    """Loss terms of one batch: the SIREN loss when oriented, the DiGS loss when unoriented."""
    s, b = len(batch.surface), len(batch.box)
    need_div = mode == "unoriented" and divergence_weight > 0
    div = None
    if uses_forward_jets(config, need_div):
        off = torch.cat([batch.box, batch.near])
        if need_div:
            # only the off-surface rows need the Laplacian: the surface rows take the cheaper
            # path for value and gradient alone (half the batch without its extra products)
            if config.train.derivatives == "forward":
                f_surface, grad_surface, _ = forward_jets(model, batch.surface, laplacian=False)
            else:
                # a copy: sdf_and_gradient marks its input as requiring grad, in place
                f_surface, grad_surface = sdf_and_gradient(model, batch.surface.clone())
            f_off, grad_off, div = forward_jets(model, off, laplacian=True)
            f, grad = torch.cat([f_surface, f_off]), torch.cat([grad_surface, grad_off])
        else:
            f, grad, _ = forward_jets(model, torch.cat([batch.surface, off]), laplacian=False)
    else:
        points = torch.cat([batch.surface, batch.box, batch.near]).requires_grad_(True)
        f, grad = sdf_and_gradient(model, points)
        if need_div:
            div = divergence(grad, points, slice(s, None))
    if mode == "oriented":
        if batch.normals is None:
            raise ValueError("the oriented loss needs normals")
        terms = oriented_loss(
            f[:s], grad[:s], batch.normals, f[s : s + b], grad[s : s + b], grad[s + b :], config.oriented
        )
        if batch.box_prior is not None:
            terms["sign_prior"] = config.unoriented.refine_sign_prior * sign_prior_term(f[s : s + b], batch.box_prior)
            terms["total"] = terms["total"] + terms["sign_prior"]
        return terms
    return unoriented_loss(
        f[:s], f[s : s + b], [grad[:s], grad[s:]], div, divergence_weight, config.unoriented
    )


def train(
    model: Siren,
    sampler: PointSampler,
    config: ReconstructionConfig,
    mode: str,
    on_progress: ProgressCallback | None = None,
    on_preview: PreviewCallback | None = None,
    should_cancel: CancelCheck | None = None,
) -> dict[str, float]:
    """Run ``config.train.iterations`` steps; return the last loss terms as floats.

    Raises :class:`Cancelled` before the next step once ``should_cancel()`` is true.
    """
    cfg = config.train
    total = cfg.iterations
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    final = cfg.lr_decay_final

    def lr_factor(step: int) -> float:
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * step / max(1, total)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lr_factor)
    previews = dict(preview_schedule(config.preview, total))
    model.train()
    started = time.perf_counter()
    window_start, window_iteration = started, 0
    last: dict[str, float] = {}
    for step in range(1, total + 1):
        if should_cancel is not None and should_cancel():
            raise Cancelled(f"cancelled after {step - 1} of {total} iterations")
        div_weight = config.unoriented.divergence.value(step - 1, total) if mode == "unoriented" else 0.0
        terms = compute_loss(model, sampler.sample(), config, mode, div_weight)
        optimiser.zero_grad(set_to_none=True)
        terms["total"].backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimiser.step()
        scheduler.step()
        if step % cfg.progress_every == 0 or step == total:
            last = {name: float(value.detach()) for name, value in terms.items()}
            now = time.perf_counter()
            rate = (step - window_iteration) / max(now - window_start, 1e-9)
            window_start, window_iteration = now, step
            if on_progress is not None:
                on_progress(ProgressEvent(step, total, last, rate, (total - step) / rate, mode))
        if on_preview is not None and step in previews:
            on_preview(step, previews[step])
    return last
