"""``siren-recon``: the command line.

Every error the engine raises on purpose is printed as one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from siren_recon.protocol.client import DEFAULT_ADDRESS

from .engine.config.reconstruction import MODES
from .engine.errors import ReconstructionError
from .io import CLOUD_FORMATS, MESH_FORMATS
from .server.config import EXECUTORS, ON_WORKER_LOST, RayConfig, ServerConfig

EXIT_USAGE = 2
ITERATIONS_HELP = ("exactly this many training steps for every field, each tile's too (default: train.iterations, "
                   "a tile tiles.iteration_share of them, which train.until may cut short)")


def parse_trim(text: str) -> dict[str, Any]:
    """``--trim auto|off|SHARE`` as config overrides."""
    if text in ("auto", "off"):
        return {"mesh.trim": text}
    try:
        share = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects auto, off or a share of the diagonal, got {text!r}") from None
    if not 0.0 < share < float("inf"):
        raise argparse.ArgumentTypeError(f"a trim distance must be a positive share of the diagonal, got {text!r}")
    return {"mesh.trim": "distance", "mesh.trim_distance": share}


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as bool, int, float or string, in that order."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set expects KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    value: Any = raw
    if raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    else:
        for cast in (int, float):
            try:
                value = cast(raw)
                break
            except ValueError:
                continue
    return key.strip(), value


def add_overrides_argument(parser: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE`` (repeatable), collected as ``args.overrides``."""
    parser.add_argument(
        "--set", dest="overrides", action="append", type=parse_override, default=[], metavar="KEY=VALUE",
        help="any config field by dotted name, e.g. --set model.hidden_features=128 (repeatable)",
    )


def add_scene_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tile-size`` and ``--voxel-size``: a scene's tiles and its mesh's detail, in the cloud's units."""
    parser.add_argument(
        "--tile-size", type=float, metavar="SIZE",
        help="fit a scene as overlapping tiles of this edge, a network each (tiles.size; default: one network)",
    )
    parser.add_argument(
        "--voxel-size", type=float, metavar="SIZE",
        help="the final mesh's grid spacing, the smallest detail it shows (mesh.voxel_size; default: from "
        "the resolution)",
    )


def add_remote_job_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of a command that runs jobs on a backend (``submit``, ``batch``): where the backend is,
    how to reach it, and what the jobs change of the engine's settings."""
    parser.add_argument("--backend", default=DEFAULT_ADDRESS)
    parser.add_argument("--iterations", type=int, help=ITERATIONS_HELP)
    parser.add_argument("--mode", choices=MODES)
    add_scene_arguments(parser)
    add_overrides_argument(parser)
    parser.add_argument("--server-key", metavar="FILE", help="the backend's public key file, for a CURVE backend")
    parser.add_argument(
        "--client-key",
        metavar="FILE",
        help="this client's secret key file (default: a fresh key, enough for a backend without --allowed-clients)",
    )
    parser.add_argument("--connect-timeout", type=float, default=10.0)
    parser.add_argument("--no-progress", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    server, ray = ServerConfig(), RayConfig()
    parser = argparse.ArgumentParser(prog="siren-recon", description="Point cloud to mesh with a SIREN SDF.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    rec = sub.add_parser("reconstruct", help="reconstruct a point cloud file into a mesh file")
    rec.add_argument("input", help=f"point cloud: {' '.join(CLOUD_FORMATS)}")
    rec.add_argument(
        "-o", "--output", required=True,
        help=f"mesh: {' '.join(MESH_FORMATS)} (coloured from the input's colours, but .stl)",
    )
    rec.add_argument("--iterations", type=int, help=ITERATIONS_HELP)
    rec.add_argument("--resolution", type=int, help="marching-cubes grid along the longest side")
    rec.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    rec.add_argument("--mode", choices=MODES, help="default auto")
    rec.add_argument("--seed", type=int, help="seed of initialisation and sampling")
    rec.add_argument(
        "--normal-directions", action="store_true",
        help="use the given normals as directions only (scans whose normals may be flipped)",
    )
    rec.add_argument(
        "--trim", type=parse_trim, metavar="auto|off|SHARE",
        help="surface no point supports (open scans): auto (default) cuts it only when the cloud covers part "
        "of the surface; off keeps the closed surface; a number cuts faces farther than that share of the box "
        "diagonal from every point",
    )
    rec.add_argument("--checkpoint", help="also save the trained field here (re-mesh with `mesh`)")
    rec.add_argument("--previews", help="write each preview mesh into this folder")
    rec.add_argument("--render", help="write a PNG picture of the result (no display needed)")
    rec.add_argument("--show", action="store_true", help="live Open3D window (needs a display)")
    rec.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_scene_arguments(rec)
    rec.add_argument(
        "--ray", nargs="?", const="", metavar="ADDRESS",
        help="train a tiled run's tiles side by side as Ray tasks: on the cluster at ADDRESS, or without one on "
        "a private Ray on this machine (needs siren-recon[ray])",
    )
    rec.add_argument(
        "--ray-cpus-per-tile", type=int, default=ray.cpus_per_job,
        help=f"CPU cores each tile asks Ray for where the cluster has no GPU (default {ray.cpus_per_job})",
    )
    add_overrides_argument(rec)

    mesh = sub.add_parser("mesh", help="mesh a saved checkpoint again, at any resolution")
    mesh.add_argument("checkpoint")
    mesh.add_argument("-o", "--output", required=True)
    mesh.add_argument("--resolution", type=int, required=True)
    mesh.add_argument("--device", default="auto")
    mesh.add_argument("--render", help="write a PNG picture of the result")
    serve = sub.add_parser("serve", help="run the headless backend (ZeroMQ)")
    serve.add_argument("--bind", default=server.bind, help="ZeroMQ endpoint (default loopback)")
    serve.add_argument("--device", default=server.device, help="auto, cpu, cuda or cuda:N")
    serve.add_argument(
        "--devices", default=server.devices,
        help="one worker per device, jobs to the first free one: auto (every GPU, else the CPU) or a list, "
        "cuda:0,cuda:1 (default: one worker on --device)",
    )
    serve.add_argument("--heartbeat-timeout", type=float, default=server.heartbeat_timeout,
                       help="seconds before a silent client's jobs are cancelled")
    security = serve.add_argument_group("security (ZeroMQ CURVE)")
    security.add_argument(
        "--curve-secret-key", metavar="FILE",
        help="the server's secret key file (from 'siren-recon keys generate'): encrypt and authenticate",
    )
    security.add_argument("--allowed-clients", metavar="DIR",
                          help="accept only clients whose public key file (*.key) is in DIR (needs --curve-secret-key)")
    security.add_argument("--insecure", action="store_true",
                          help="allow a non-loopback --bind without CURVE (anyone who can reach it can submit jobs)")
    limits = serve.add_argument_group("limits")
    limits.add_argument("--max-message-mb", type=float, default=None,
                        help=f"largest request, MiB (default {server.max_message_bytes / 2**20:g})")
    limits.add_argument("--max-points", type=int, default=None,
                        help=f"most points in one job (default {server.max_points:,})")
    limits.add_argument("--max-queued-jobs", type=int, default=None,
                        help=f"most unfinished jobs per client (default {server.max_queued_jobs})")
    limits.add_argument("--send-hwm", type=int, default=None,
                        help="messages ZeroMQ queues per client before the backend holds them back itself "
                             f"(default {server.send_high_water_mark})")
    limits.add_argument("--results-dir",
                        help="keep finished meshes here for clients that reconnect (default: a user cache folder)")
    limits.add_argument("--results-max-mb", type=float, default=None,
                        help=f"size bound of the results folder, MiB (default {server.results_max_bytes / 2**20:g})")
    limits.add_argument("--results-max-age-hours", type=float, default=None,
                        help=f"age bound of kept results, hours (default {server.results_max_age / 3600:g})")
    execution = serve.add_argument_group("execution")
    execution.add_argument("--executor", choices=EXECUTORS, default=server.executor,
                           help="local: train in this process (default); ray: run each job as a Ray task")
    execution.add_argument(
        "--ray-address", default=ray.address, help="Ray cluster address (default: start a local one)"
    )
    execution.add_argument(
        "--ray-concurrent-jobs",
        type=int,
        default=ray.concurrent_jobs,
        help="jobs running at once on Ray (default: one per GPU, else per --ray-cpus-per-job cores)",
    )
    execution.add_argument(
        "--ray-cpus-per-job", type=int, default=ray.cpus_per_job, help="CPU cores per job when the cluster has no GPU"
    )
    execution.add_argument(
        "--ray-on-worker-lost",
        choices=ON_WORKER_LOST,
        default=ray.on_worker_lost,
        help="a job whose Ray worker dies: fail it with a message, or retry it",
    )
    execution.add_argument(
        "--ray-retries", type=int, default=ray.retries, help="retries with --ray-on-worker-lost retry"
    )

    keys = sub.add_parser("keys", help="make CURVE key pairs for the backend and its clients")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    generate = keys_sub.add_parser("generate", help="write NAME.key (public) and NAME.key_secret into DIR")
    generate.add_argument("directory")
    generate.add_argument("--name", default="server", help="file name stem (default: server)")

    batch = sub.add_parser("batch", help="reconstruct a folder (or glob) of point clouds on a running backend")
    batch.add_argument(
        "inputs",
        help=f"a folder (its {' '.join(CLOUD_FORMATS)} files) or a glob such as 'scans/*.laz'",
    )
    batch.add_argument(
        "-o", "--output-dir", required=True, help="meshes go here as NAME.ply; existing ones are skipped"
    )
    batch.add_argument(
        "--format",
        default="ply",
        choices=[suffix[1:] for suffix in MESH_FORMATS],
        help="mesh file type, the extension of each output (default ply)",
    )
    add_remote_job_arguments(batch)
    batch.add_argument("--max-in-flight", type=int, default=4, help="jobs submitted at once (default 4)")

    submit = sub.add_parser("submit", help="reconstruct a file on a running backend")
    submit.add_argument("input", help="point cloud, as for reconstruct")
    submit.add_argument("-o", "--output", required=True)
    add_remote_job_arguments(submit)
    submit.add_argument("--previews", help="write each preview mesh into this folder")
    submit.add_argument("--detached", action="store_true", help="the job runs on if this command goes away")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "reconstruct":
            from .commands.reconstruct import run_reconstruct

            return run_reconstruct(args)
        if args.command == "mesh":
            from .commands.reconstruct import run_mesh

            return run_mesh(args)
        if args.command == "serve":
            from .commands.serve import run_serve

            return run_serve(args)
        if args.command == "submit":
            from .commands.submit import run_submit

            return run_submit(args)
        if args.command == "keys":
            from .commands.keys import run_keys

            return run_keys(args)
        if args.command == "batch":
            from .commands.batch import run_batch

            return run_batch(args)
    except ReconstructionError as exc:
        print(f"siren-recon: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("siren-recon: interrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
