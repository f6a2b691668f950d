"""One network fitted to the cloud: a fresh SIREN, its sampler and its training run.

A reconstruction fits one stage (oriented input, or DiGS alone) or two (the unoriented
refinement fits a second, fresh network after the first); :func:`fit_stage` runs one of them.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..analysis.normalization import Normalization
from ..config.reconstruction import ReconstructionConfig
from ..events import MeshEvent, ProgressEvent
from ..field.geometric_init import sphere_init
from ..field.model import Siren
from ..field.sdf_field import SdfField
from .convergence import Convergence
from .device_choices import previews_on_thread
from .preview_thread import PreviewThread
from .regularisers import Regulariser
from .sampling import PointSampler
from .trainer import PreviewTimer, ProgressCallback, first_preview, train

MeshCallback = Callable[[MeshEvent], None]
LATER_FIRST_PREVIEW = 80
"""A later stage's first scheduled preview comes no earlier than this step of its own: before it,
a fresh network's surface is coarser than the one the stage before left in the viewport."""
_GLOBAL_RNG = threading.Lock()
"""Held while torch's global generator is seeded and drawn from (see :func:`fit_stage`)."""


@dataclass
class Stage:
    """What one stage fits, and how."""

    index: int
    """0 for the first network, 1 for the refinement's: offsets the seed of its init and sampling."""
    loss_mode: str
    """``oriented`` (the SIREN loss) or ``unoriented`` (the DiGS loss)."""
    iterations: int
    normals: np.ndarray | None
    """(N, 3) normals in unit coordinates for the oriented loss, ``None`` for the DiGS loss."""
    init: str
    """``siren``, ``sphere`` or ``mfgi`` (resolved, never ``auto``)."""
    learning_rate: float
    offset: int = 0
    """Iterations done by the stages before this one (progress counts across stages)."""
    normal_weight: float | None = None
    """Weight of the normal term instead of ``oriented.normal``; ``None``: that one."""
    regularisers: Sequence[Regulariser] = ()
    points: np.ndarray | None = None
    """(M, 3) unit points the stage trains on when not all of the cloud's (the refinement of a cloud
    reduced to its working set; ``normals`` then has their rows); ``None``: ``TrainingCloud.unit``."""
    spacing: float = 0.0
    """Median spacing of the points in unit coordinates, by which the stage may stop once its
    surface has settled (``train.until``); 0: it runs all its iterations."""
    followed: bool = False
    """Whether a later stage follows (DiGS before the refinement): the stage's last step is
    previewed, its best field, which stays in view while the next stage sets up."""


@dataclass
class TrainingCloud:
    """The cloud and what every stage of one reconstruction shares."""

    unit: np.ndarray
    """(N, 3) the points in the network's unit coordinates."""
    normalization: Normalization
    bounds: tuple[tuple[float, float, float], tuple[float, float, float]]
    support: np.ndarray
    device: torch.device
    mode: str
    """The mode reported in progress events and kept with the field (``oriented``/``unoriented``)."""


@dataclass
class Reporting:
    """Where a stage's progress and previews go; ``total`` counts the iterations of all stages."""

    total: int
    on_progress: ProgressCallback | None = None
    on_mesh: MeshCallback | None = None
    should_cancel: Callable[[], bool] | None = None
    last_preview: float = dataclasses.field(default_factory=time.perf_counter)
    """``time.perf_counter()`` when the last preview began (at first: the start), so that a later
    stage's timed previews (``preview.every_seconds``) count from the earlier stage's last one."""


def stage_config(config: ReconstructionConfig, stage: Stage) -> ReconstructionConfig:
    """``config`` with the stage's iterations, learning rate and normal weight (and, for a later
    stage, its first preview no earlier than ``LATER_FIRST_PREVIEW``)."""
    staged = replace(
        config, train=replace(config.train, iterations=stage.iterations, learning_rate=stage.learning_rate)
    )
    if stage.index > 0:
        first = max(config.preview.first_iteration, LATER_FIRST_PREVIEW)
        staged = replace(staged, preview=replace(config.preview, first_iteration=first))
    if stage.normal_weight is not None:
        staged = replace(staged, oriented=replace(config.oriented, normal=stage.normal_weight))
    return staged


def fit_stage(
    stage: Stage, cloud: TrainingCloud, config: ReconstructionConfig, reporting: Reporting
) -> tuple[SdfField, dict[str, float]]:
    """Fit a fresh network for ``stage``; return the field (in eval mode) and its last losses."""
    # the initialisers draw from torch's one global generator: seeded and used under a lock,
    # so two reconstructions on two threads (a server's workers) each get their seed's network
    with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed + stage.index)
        model = Siren(config.model)
        if stage.init != "siren":
            sphere_init(model, config.model.init_radius, stage.init == "mfgi")
    model.to(cloud.device)
    generator = torch.Generator(device=cloud.device)
    generator.manual_seed(config.train.seed + stage.index)
    normals = stage.normals
    points = cloud.unit if stage.points is None else stage.points
    sampler = PointSampler(
        torch.as_tensor(points, dtype=torch.float32, device=cloud.device),
        torch.as_tensor(normals, dtype=torch.float32, device=cloud.device) if normals is not None else None,
        config.sampling,
        generator,
        stage.regularisers,
    )
    field = SdfField(model, cloud.normalization, config, cloud.mode, cloud.bounds, cloud.support)
    convergence = None
    if config.train.until == "converged" and stage.spacing > 0 and stage.loss_mode == "oriented":
        convergence = Convergence(sampler.points, stage.spacing, config.train.converged_spacings, config.train.seed)
    background: PreviewThread | None = None
    on_preview: Callable[[int, int], None] | None = None
    if reporting.on_mesh is not None:
        if previews_on_thread(config, cloud.device):
            on_preview = background = PreviewThread(field, stage.offset, reporting.on_mesh)
        else:
            on_preview = _preview(field, stage.offset, reporting.on_mesh)
    staged = stage_config(config, stage)
    # by the settings, not by whether anyone listens: a run gives the same field either way
    eager = first_preview(staged.preview, stage.iterations) if stage.index == 0 else 0
    timer = None
    if on_preview is not None:
        timer = PreviewTimer(staged.preview, stage.iterations, reporting.last_preview, stage.followed)
    try:
        losses = train(
            model,
            sampler,
            staged,
            stage.loss_mode,
            _progress(stage.offset, cloud.mode, reporting, background),
            on_preview,
            reporting.should_cancel,
            convergence,
            eager,
            timer,
        )
    except BaseException:
        if background is not None:
            background.abandon()
        raise
    if background is not None:
        background.finish()
    if timer is not None:
        reporting.last_preview = timer.last
    model.eval()
    stopped = convergence.stopped_at if convergence is not None else None
    field.steps = stage.offset + (stopped or stage.iterations)
    return field, losses


def _progress(offset: int, mode: str, reporting: Reporting, background: PreviewThread | None) -> ProgressCallback:
    """A stage's progress as progress of the whole reconstruction; the previews ``background``
    has finished are handed on first."""
    total = reporting.total

    def progress(event: ProgressEvent) -> None:
        if background is not None:
            background.deliver_ready()
        if reporting.on_progress is not None:
            done = event.iteration + offset
            reporting.on_progress(
                replace(
                    event,
                    iteration=done,
                    total=total,
                    mode=mode,
                    eta_seconds=(total - done) / max(event.iterations_per_second, 1e-9),
                )
            )

    return progress


def _preview(field: SdfField, offset: int, on_mesh: MeshCallback) -> Callable[[int, int], None]:
    """Mesh ``field`` at a preview's resolution and hand it on as a non-final mesh."""

    def preview(iteration: int, resolution: int) -> None:
        vertices, faces = field.mesh(resolution)
        on_mesh(MeshEvent(iteration + offset, resolution, vertices, faces, final=False))

    return preview
