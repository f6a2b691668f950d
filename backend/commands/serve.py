"""``siren-recon serve`` and ``siren-recon submit``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from tqdm import tqdm

from siren_recon.protocol.client import RemoteError, reconstruct_remote

from ..engine.errors import ConfigError, ReconstructionError
from ..open3d_mode import read_point_cloud, write_mesh
from ..server.server import Server, ServerConfig

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
        bind=args.bind, device=args.device, heartbeat_timeout=args.heartbeat_timeout,
        curve_secret_key=args.curve_secret_key or "", allowed_clients=args.allowed_clients or "",
        insecure=args.insecure, results_dir=str(args.results_dir or default_results_dir()),
        executor=args.executor, ray_address=args.ray_address, ray_concurrent_jobs=args.ray_concurrent_jobs,
        ray_cpus_per_job=args.ray_cpus_per_job, ray_on_worker_lost=args.ray_on_worker_lost,
        ray_retries=args.ray_retries, **{k: v for k, v in optional.items() if v is not None},
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


def run_submit(args: argparse.Namespace) -> int:
    points, normals, colours = read_point_cloud(args.input)
    overrides = dict(args.overrides)
    if args.iterations is not None:
        overrides["train.iterations"] = args.iterations
    if args.mode is not None:
        overrides["mode"] = args.mode
    bar = tqdm(unit="it", disable=args.no_progress, file=sys.stderr)
    previews = Path(args.previews) if args.previews else None

    def on_progress(event) -> None:
        bar.total = event.total
        bar.set_postfix(loss=f"{event.losses.get('total', float('nan')):.3g}", mode=event.mode, refresh=False)
        bar.update(event.iteration - bar.n)

    def on_mesh(event) -> None:
        if previews is not None and not event.final:
            write_mesh(previews / f"preview_{event.iteration:06d}_r{event.resolution}.ply", event.vertices, event.faces)

    try:
        result = reconstruct_remote(
            points, normals, colours, address=args.backend, overrides=overrides, on_progress=on_progress,
            on_mesh=on_mesh, tag=Path(args.input).name, connect_timeout=args.connect_timeout,
            server_key_file=args.server_key or "", client_key_file=args.client_key or "", detached=args.detached,
        )
    except (RemoteError, TimeoutError) as exc:
        raise ReconstructionError(f"remote reconstruction failed: {exc}") from exc
    finally:
        bar.close()
    write_mesh(args.output, result.vertices, result.faces)
    print(f"{args.output}: {len(result.vertices)} vertices, {len(result.faces)} faces, mode {result.done.mode}, job {result.job}", file=sys.stderr)
    return 0
