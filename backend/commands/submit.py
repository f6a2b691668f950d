"""``siren-recon submit``: reconstruct one file on a running backend."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from siren_recon.protocol import MeshUpdate, Progress
from siren_recon.protocol.client import RemoteError, reconstruct_remote

from ..engine.errors import ReconstructionError
from ..open3d_mode import read_point_cloud, write_mesh


def run_submit(args: argparse.Namespace) -> int:
    points, normals, colours = read_point_cloud(args.input)
    overrides = dict(args.overrides)
    if args.iterations is not None:
        overrides["train.iterations"] = args.iterations
    if args.mode is not None:
        overrides["mode"] = args.mode
    bar = tqdm(unit="it", disable=args.no_progress, file=sys.stderr)
    previews = Path(args.previews) if args.previews else None

    def on_progress(event: Progress) -> None:
        bar.total = event.total
        bar.set_postfix(loss=f"{event.losses.get('total', float('nan')):.3g}", mode=event.mode, refresh=False)
        bar.update(event.iteration - bar.n)

    def on_mesh(event: MeshUpdate) -> None:
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
    print(
        f"{args.output}: {len(result.vertices)} vertices, {len(result.faces)} faces, "
        f"mode {result.done.mode}, job {result.job}",
        file=sys.stderr,
    )
    return 0
