"""The ``local`` executor: jobs train in the server's own process, on the worker's thread."""

from __future__ import annotations

from collections.abc import Callable

from ...engine.events import MeshEvent, ProgressEvent, ReconstructionResult
from ...engine.pipeline import reconstruct_points
from ..jobs import Job


def run_in_process(
    job: Job,
    on_progress: Callable[[ProgressEvent], None],
    on_mesh: Callable[[MeshEvent], None],
    should_cancel: Callable[[], bool],
) -> ReconstructionResult:
    """Train ``job`` here, on the calling thread (a :data:`~siren_recon.server.executors.JobRunner`)."""
    return reconstruct_points(
        job.points, job.normals, job.config, on_progress=on_progress, on_mesh=on_mesh, should_cancel=should_cancel
    )
