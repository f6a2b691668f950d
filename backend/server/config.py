"""Settings of ``siren-recon serve``: one dataclass, with a nested, validated section for Ray.

Every default of the server lives here; the command line builds its flags' defaults from these
classes, and the values are checked once, when the config is made.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from siren_recon.protocol import DEFAULT_MAX_BYTES
from siren_recon.protocol.client import DEFAULT_ADDRESS

from ..engine.config.reconstruction import ReconstructionConfig
from ..engine.errors import ConfigError

EXECUTORS: tuple[str, ...] = ("local", "ray")
"""Where jobs train: ``local`` in the server's own process, ``ray`` as Ray tasks."""
ON_WORKER_LOST: tuple[str, ...] = ("fail", "retry")
"""What the ``ray`` executor does with a job whose Ray worker or node dies."""


def attempts(on_worker_lost: str, retries: int) -> int:
    """Tries of a job whose Ray worker dies: 1, and ``retries`` more with ``on_worker_lost="retry"``."""
    return 1 + (max(0, retries) if on_worker_lost == "retry" else 0)


@dataclass
class RayConfig:
    """The ``ray`` executor's settings (only read with ``executor="ray"``)."""

    address: str = ""
    """Ray cluster to join (``""``: start a local one)."""
    concurrent_jobs: int = 0
    """Jobs running at once on Ray, >= 0 (0: one per GPU in the cluster, else one per ``cpus_per_job``)."""
    cpus_per_job: int = 2
    """CPU cores, >= 1, a job asks Ray for when the cluster has no GPU."""
    on_worker_lost: str = "fail"
    """When a Ray worker or node dies mid-job: ``fail`` the job with a message, or ``retry`` it."""
    retries: int = 1
    """Attempts, >= 0, after the first when ``on_worker_lost="retry"``."""

    @property
    def attempts(self) -> int:
        """How many times a job (or a tiled job's tile) is tried when its worker dies."""
        return attempts(self.on_worker_lost, self.retries)

    def __post_init__(self) -> None:
        checks = [
            (self.concurrent_jobs >= 0, "ray concurrent jobs must be >= 0"),
            (self.cpus_per_job >= 1, "ray CPUs per job must be >= 1"),
            (self.on_worker_lost in ON_WORKER_LOST,
             f"ray on-worker-lost must be one of {ON_WORKER_LOST}, got {self.on_worker_lost!r}"),
            (self.retries >= 0, "ray retries must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


@dataclass
class ServerConfig:
    """Settings of ``siren-recon serve``."""

    bind: str = DEFAULT_ADDRESS
    """ZeroMQ endpoint to listen on; loopback unless you mean to expose the backend."""
    device: str = "auto"
    """Training device of the worker: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` (see ``devices``)."""
    devices: str = ""
    """The ``local`` executor's workers, one per device, each on its own thread: a comma-separated
    list (``cuda:0,cuda:1``; a device may repeat, ``cpu,cpu`` is two CPU workers), or ``auto``:
    one per CUDA device, else one on the CPU. A job goes to the first worker that is free.
    ``""``: one worker on ``device``."""
    heartbeat_interval: float = 1.0
    """Seconds between pings that clients are asked to send."""
    heartbeat_timeout: float = 10.0
    """Seconds of silence after which a client's non-detached jobs are cancelled."""
    max_message_bytes: int = DEFAULT_MAX_BYTES
    """Largest request accepted (socket and decoder)."""
    keep_finished: int = 200
    """Finished jobs remembered for ``list_jobs``."""
    max_points: int = 10_000_000
    """Most points in one job; a submission with more is refused, naming this limit, before its
    arrays are read."""
    max_queued_jobs: int = 32
    """Most unfinished (queued or running) jobs one client may have."""
    send_high_water_mark: int = 64
    """Messages ZeroMQ buffers per client before the backend holds them back itself (then only the
    newest preview of each job is kept for that client; progress and results are never dropped)."""
    curve_secret_key: str = ""
    """Path of the server's secret key file; set, the link is encrypted and authenticated (CURVE)."""
    allowed_clients: str = ""
    """Folder of client public key files; with it only those clients are let in."""
    insecure: bool = False
    """Allow a non-loopback ``bind`` without CURVE."""
    results_dir: str = ""
    """Where finished meshes are kept for clients that come back (``""``: no keeping)."""
    results_max_bytes: int = 2 << 30
    """Size bound of ``results_dir``; the oldest results go first."""
    results_max_age: float = 72 * 3600.0
    """Seconds a result is kept."""
    defaults: ReconstructionConfig | None = None
    """Engine settings jobs start from before their overrides (``None``: the engine's defaults)."""
    executor: str = "local"
    """``local``: jobs train in this process, one at a time; ``ray``: each job is a Ray task."""
    ray: RayConfig = field(default_factory=RayConfig)
    """Settings of the ``ray`` executor."""

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ConfigError(f"unknown executor {self.executor!r} (one of {', '.join(EXECUTORS)})")
        if self.devices.strip() and self.executor != "local":
            raise ConfigError("--devices chooses the local executor's workers; the ray executor asks Ray for devices")
