"""Where jobs train, behind one interface: a :data:`JobRunner` runs one job to its end.

Two executors sit side by side: :mod:`.local` trains in the server's own process, :mod:`.ray`
runs each job as a Ray task on a cluster. The server's worker threads call a runner and do not
know which one it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ...engine.events import MeshEvent, ProgressEvent, ReconstructionResult
from ..jobs import Job

if TYPE_CHECKING:
    from ..config import ServerConfig

JobRunner = Callable[
    [Job, Callable[[ProgressEvent], None], Callable[[MeshEvent], None], Callable[[], bool]],
    ReconstructionResult,
]
"""Runs one job to its end: ``runner(job, on_progress, on_mesh, should_cancel)``.

It raises :class:`Cancelled` once ``should_cancel()`` is true and :class:`ReconstructionError`
for a failure the user should read; the result's ``field`` may be ``None``. The executors
(in-process, Ray) differ only in this function.
"""


def runners(config: ServerConfig) -> list[tuple[JobRunner, str, str]]:
    """One (runner, thread name, device) per job that may run at once, from the configured executor.

    The device is where the worker's jobs train (:func:`~siren_recon.server.devices.train_on`): for
    ``local`` one per device of ``devices`` (see :func:`~siren_recon.server.devices.worker_devices`),
    else ``device``; for ``ray`` ``auto``, the GPU Ray gives the task, else its node's CPU."""
    if config.executor == "ray":
        from .ray import ray_runners  # Ray is an optional extra

        return [(runner, name, "auto") for runner, name in ray_runners(config.ray)]
    from ..devices import worker_devices
    from .local import run_in_process, run_on_device

    if not config.devices.strip():
        return [(run_in_process, f"worker-{config.device}", config.device)]
    devices = worker_devices(config.devices, config.device)
    return [(run_on_device(device), f"worker-{index}-{device}", device) for index, device in enumerate(devices)]
