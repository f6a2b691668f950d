"""Where a server's jobs train: each worker's device (``serve --device``/``--devices``), and a job on it."""

from __future__ import annotations

import dataclasses

import torch

from ..engine.config.reconstruction import ReconstructionConfig
from ..engine.device import resolve_device
from ..engine.errors import ConfigError


def train_on(config: ReconstructionConfig, device: str, threads: int = 0) -> ReconstructionConfig:
    """A job's ``config`` set to train on ``device``, the device of the worker that runs it
    (:func:`~siren_recon.server.executors.runners` names one per worker): whatever device the client
    named, a backend trains where its operator said. ``threads`` (see :func:`worker_threads`), when
    not 0, is the job's CPU threads unless the job named its own."""
    train = dataclasses.replace(config.train, device=device)
    if threads > 0 and train.threads == 0:
        train = dataclasses.replace(train, threads=threads)
    return dataclasses.replace(config, train=train)


def worker_threads(devices: list[str], cores: int | None = None) -> int:
    """CPU threads for the jobs of each CPU worker among the workers of ``devices``: the ``cores``
    (default: torch's count, one per physical core) shared among them when there are several, so
    that jobs running side by side do not fight over the cores; 0 (torch's choice) for one."""
    cpu_workers = sum(1 for device in devices if device == "cpu")
    if cpu_workers < 2:
        return 0
    return max(1, (cores or torch.get_num_threads()) // cpu_workers)


def worker_devices(devices: str, device: str) -> list[str]:
    """One device name per local worker, each checked to exist on this machine.

    ``devices`` is ``auto`` (every CUDA device, else the CPU), a comma-separated list, or ``""``
    for the one ``device`` (itself possibly ``auto``: the first CUDA device, else the CPU).
    """
    if devices.strip() == "auto":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [f"cuda:{index}" for index in range(count)] or ["cpu"]
    if not devices.strip():
        resolve_device(device)
        return [device]
    names = [name.strip() for name in devices.split(",")]
    if any(not name for name in names):
        raise ConfigError(f"--devices {devices!r} has an empty entry (write e.g. cuda:0,cuda:1)")
    resolved = []
    for name in names:
        if name == "auto":
            raise ConfigError("auto stands alone in --devices (it means every CUDA device)")
        found = resolve_device(name)
        if found.type == "cuda":
            index = found.index if found.index is not None else torch.cuda.current_device()
            if index >= torch.cuda.device_count():
                raise ConfigError(f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} GPUs")
            resolved.append(f"cuda:{index}")
        else:
            resolved.append("cpu")
    return resolved
