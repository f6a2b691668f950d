"""``siren-recon serve``: the headless backend."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from ..engine.errors import ConfigError
from ..server.config import RayConfig, ServerConfig
from ..server.server import Server

log = logging.getLogger("siren-recon.serve")


def default_results_dir() -> Path:
    """A per-user cache folder for kept results (``$XDG_CACHE_HOME`` or ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "siren-recon" / "results"


def server_config(args: argparse.Namespace) -> ServerConfig:
    """The ``serve`` flags as a :class:`ServerConfig`; flags left out keep its defaults."""
    optional = {
        "max_message_bytes": None if args.max_message_mb is None else int(args.max_message_mb * 2**20),
        "max_points": args.max_points,
        "max_queued_jobs": args.max_queued_jobs,
        "send_high_water_mark": args.send_hwm,
        "results_max_bytes": None if args.results_max_mb is None else int(args.results_max_mb * 2**20),
        "results_max_age": None if args.results_max_age_hours is None else args.results_max_age_hours * 3600.0,
    }
    return ServerConfig(
        bind=args.bind, device=args.device, devices=args.devices, heartbeat_timeout=args.heartbeat_timeout,
        curve_secret_key=args.curve_secret_key or "", allowed_clients=args.allowed_clients or "",
        insecure=args.insecure, results_dir=str(args.results_dir or default_results_dir()),
        executor=args.executor,
        ray=RayConfig(address=args.ray_address, concurrent_jobs=args.ray_concurrent_jobs,
                      cpus_per_job=args.ray_cpus_per_job, on_worker_lost=args.ray_on_worker_lost,
                      retries=args.ray_retries),
        **{k: v for k, v in optional.items() if v is not None},
    )


def run_serve(args: argparse.Namespace) -> int:
    if args.allowed_clients and not args.curve_secret_key:
        raise ConfigError("--allowed-clients needs --curve-secret-key (the server's own key)")
    server = Server(server_config(args))
    endpoint = server.start()
    security = "CURVE" if server.security is not None else "no CURVE"
    print(f"siren-recon backend listening on {endpoint} ({security}, device {server.device_name})",
          file=sys.stderr, flush=True)
    server.serve_forever(install_signals=True)
    return 0
