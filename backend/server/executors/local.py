"""The ``local`` executor: jobs train in the server's own process, each on a worker's thread.

A server has one local worker per training device (``serve --devices``); each trains its jobs on
its own thread and device. The engine keeps no state between them: a job's network and sampler
have their own generators, the seeding of torch's global generator for the initialisation is
done under a lock, and each thread keeps its own compiled training passes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from ...engine.events import MeshEvent, ProgressEvent, ReconstructionResult
from ...engine.pipeline import reconstruct_points
from ..jobs import Job
from . import JobRunner


def run_in_process(
    job: Job,
    on_progress: Callable[[ProgressEvent], None],
    on_mesh: Callable[[MeshEvent], None],
    should_cancel: Callable[[], bool],
) -> ReconstructionResult:
    """Train ``job`` here, on the calling thread (a :data:`~siren_recon.server.executors.JobRunner`)."""
    return reconstruct_points(
        job.points, job.normals, job.config, on_progress=on_progress, on_mesh=on_mesh, should_cancel=should_cancel,
        colours=job.colours,
    )


def run_on_device(device: str) -> JobRunner:
    """A runner for the worker of ``device``: its jobs (which the worker set to train there, see
    :func:`~siren_recon.server.devices.train_on`) run with it as the thread's current CUDA device."""

    def run(
        job: Job,
        on_progress: Callable[[ProgressEvent], None],
        on_mesh: Callable[[MeshEvent], None],
        should_cancel: Callable[[], bool],
    ) -> ReconstructionResult:
        # the current CUDA device is per thread: this worker's, for anything that takes the default
        selected = torch.cuda.device(device) if device.startswith("cuda") else contextlib.nullcontext()
        with selected:
            return run_in_process(job, on_progress, on_mesh, should_cancel)

    return run
