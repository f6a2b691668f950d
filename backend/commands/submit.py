"""``siren-recon submit``: reconstruct one file on a running backend."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from siren_recon.protocol import MeshUpdate, Progress
from siren_recon.protocol.client import RemoteError, reconstruct_remote

from ..engine.errors import ReconstructionError
from ..io import read_cloud, write_mesh
from ..protocol.local_frame import LocalFrame
from .job_overrides import job_overrides
from .progress_bar import bar_postfix


def run_submit(args: argparse.Namespace) -> int:
    cloud = read_cloud(args.input)
    frame = LocalFrame.of(cloud.points)
    overrides = job_overrides(args)
    bar = tqdm(unit="it", disable=args.no_progress, file=sys.stderr)
    previews = Path(args.previews) if args.previews else None
    finals: list[MeshUpdate] = []

    def on_progress(event: Progress) -> None:
        bar.total = event.total
        bar.set_postfix(bar_postfix(event), refresh=False)
        bar.update(event.iteration - bar.n)

    def on_mesh(event: MeshUpdate) -> None:
        if event.final:
            finals.append(event)
        elif previews is not None:
            write_mesh(previews / f"preview_{event.iteration:06d}_r{event.resolution}.ply",
                       frame.to_cloud(event.vertices), event.faces)

    try:
        result = reconstruct_remote(
            frame.to_local(cloud.points), cloud.normals, cloud.colours, address=args.backend, overrides=overrides,
            on_progress=on_progress,
            on_mesh=on_mesh, tag=Path(args.input).name, connect_timeout=args.connect_timeout,
            server_key_file=args.server_key or "", client_key_file=args.client_key or "", detached=args.detached,
        )
    except (RemoteError, TimeoutError) as exc:
        raise ReconstructionError(f"remote reconstruction failed: {exc}") from exc
    finally:
        bar.close()
    # the backend colours the final mesh from the cloud's colours when it was sent some
    colours = finals[-1].colours if finals and len(finals[-1].vertices) == len(result.vertices) else None
    write_mesh(args.output, frame.to_cloud(result.vertices), result.faces, colours)
    coloured = ", coloured from the input" if colours is not None else ""
    print(
        f"{args.output}: {len(result.vertices)} vertices, {len(result.faces)} faces{coloured}, "
        f"mode {result.done.mode}, job {result.job}",
        file=sys.stderr,
    )
    return 0
