"""``siren-recon reconstruct`` and ``siren-recon mesh``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..engine.config.reconstruction import BOUNDS, ReconstructionConfig, apply_overrides
from ..engine.errors import ConfigError, ReconstructionError
from ..engine.events import MeshEvent, ProgressEvent
from ..engine.field.checkpoint import load_checkpoint, save_checkpoint
from ..engine.pipeline import reconstruct_points
from ..engine.tiling.runs import TileRunner, run_in_turn
from ..engine.tiling.tiled_field import tile_count
from ..io import MESH_FORMATS, read_cloud, write_mesh
from ..io.cloud import check_format
from ..io.open3d_library import import_open3d, to_open3d_mesh
from .job_overrides import iteration_overrides, scene_overrides
from .progress_bar import bar_postfix


def config_from_args(args: argparse.Namespace) -> ReconstructionConfig:
    overrides: dict[str, Any] = dict(args.overrides)
    named = {
        "mesh.resolution": args.resolution,
        "train.device": args.device,
        "mode": args.mode,
        "train.seed": args.seed,
        "oriented.normal_directions_only": True if args.normal_directions else None,
    }
    overrides.update({k: v for k, v in named.items() if v is not None})
    overrides.update(iteration_overrides(args.iterations))
    overrides.update(scene_overrides(args))
    overrides.update(args.trim or {})
    return apply_overrides(ReconstructionConfig(), overrides)


class LiveWindow:
    """An Open3D window whose mesh is replaced by each preview (needs a display)."""

    def __init__(self) -> None:
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise ReconstructionError("--show needs a display (DISPLAY or WAYLAND_DISPLAY is not set); use --render")
        o3d = import_open3d()
        self.vis = o3d.visualization.Visualizer()
        if not self.vis.create_window("siren-recon", 960, 720):
            raise ReconstructionError("--show could not open a window on this display")
        self.mesh: Any = None

    def update(self, event: MeshEvent) -> None:
        mesh = to_open3d_mesh(event.vertices, event.faces)
        mesh.paint_uniform_color([0.75, 0.75, 0.78])
        if self.mesh is None:
            self.vis.add_geometry(mesh, reset_bounding_box=True)
        else:
            self.vis.remove_geometry(self.mesh, reset_bounding_box=False)
            self.vis.add_geometry(mesh, reset_bounding_box=False)
        self.mesh = mesh
        self.poll()

    def poll(self) -> None:
        self.vis.poll_events()
        self.vis.update_renderer()

    def hold(self) -> None:
        """Keep the window open until the user closes it."""
        while self.vis.poll_events():
            self.vis.update_renderer()
        self.vis.destroy_window()


def run_reconstruct(args: argparse.Namespace) -> int:
    check_format(args.output, MESH_FORMATS, "mesh")
    config = config_from_args(args)
    cloud = read_cloud(args.input)
    tiles = tile_count(cloud.points, config)
    if args.checkpoint and tiles > 1:
        raise ConfigError(f"--checkpoint saves one field; this tiled run has {tiles} (--tile-size, --voxel-size)")
    if args.ray is not None and tiles == 1:
        raise ConfigError("--ray trains the tiles of a tiled run, and this cloud is one field: give --tile-size")
    window = LiveWindow() if args.show else None
    bars: list[tqdm] = []

    def on_progress(event: ProgressEvent) -> None:
        if not bars:  # created on the first step, so bad input fails without a bar drawn
            bars.append(tqdm(total=event.total, unit="it", disable=args.no_progress, file=sys.stderr))
        bar = bars[0]
        bar.set_postfix(bar_postfix(event), refresh=False)
        bar.update(event.iteration - bar.n)
        if window is not None:
            window.poll()

    def on_mesh(event: MeshEvent) -> None:
        if args.previews and not event.final:
            write_mesh(
                Path(args.previews) / f"preview_{event.iteration:06d}_r{event.resolution}.ply",
                event.vertices,
                event.faces,
            )
        if window is not None:
            window.update(event)

    tile_runner = ray_tile_runner(args, config) if args.ray is not None else run_in_turn
    try:
        result = reconstruct_points(
            cloud.points, cloud.normals, config, on_progress=on_progress, on_mesh=on_mesh, colours=cloud.colours,
            tile_runner=tile_runner,
        )
    finally:
        for bar in bars:
            bar.close()
    write_mesh(args.output, result.vertices, result.faces, result.colours)
    if args.checkpoint:
        save_checkpoint(result.field, args.checkpoint)
    if args.render:
        from ..rendering import render_mesh_png

        render_mesh_png(result.vertices, result.faces, args.render)
    noise = f", noise {result.stats['noise_ratio']:.2f} spacings" if "noise_ratio" in result.stats else ""
    coloured = ", coloured from the input" if result.colours is not None else ""
    print(
        f"{args.output}: {len(result.vertices)} vertices, {len(result.faces)} faces{coloured}, "
        f"{describe_trim(result.stats)}, "
        f"mode {result.mode}{noise}, train {result.timings['train']:.1f} s ({result.stats['steps']:.0f} steps), "
        f"mesh {result.timings['mesh']:.1f} s",
        file=sys.stderr,
    )
    if window is not None:
        window.hold()
    return 0


def ray_tile_runner(args: argparse.Namespace, config: ReconstructionConfig) -> TileRunner:
    """The tile runner of ``--ray [ADDRESS]``: the tiles as Ray tasks (Ray is an optional extra)."""
    try:
        from ..server.config import RayConfig
        from ..server.executors.ray_tiles import cluster_tile_runner
    except ImportError as exc:
        raise ConfigError("--ray needs Ray: pip install 'siren-recon[ray]'") from exc
    return cluster_tile_runner(RayConfig(address=args.ray, cpus_per_job=args.ray_cpus_per_tile), config.train.threads)


def describe_trim(stats: dict[str, float]) -> str:
    """The trim step in a few words: ``trimmed 38% of the area (no point near it)`` or ``not trimmed``."""
    if stats.get("trimmed"):
        return f"trimmed {100 * stats['trimmed_area_share']:.1f}% of the area (no point near it)"
    return "not trimmed"


def run_mesh(args: argparse.Namespace) -> int:
    check_format(args.output, MESH_FORMATS, "mesh")
    field = load_checkpoint(args.checkpoint, args.device)
    bound = BOUNDS["mesh.resolution"]
    if not bound.contains(args.resolution):
        raise ReconstructionError(f"--resolution must be {bound.requirement()}")
    vertices, faces = field.mesh(args.resolution)
    if len(faces) == 0:
        raise ReconstructionError("the checkpoint's field has no surface at this resolution")
    write_mesh(args.output, vertices, faces)
    if args.render:
        from ..rendering import render_mesh_png

        render_mesh_png(vertices, faces, args.render)
    print(f"{args.output}: {len(vertices)} vertices, {len(faces)} faces", file=sys.stderr)
    return 0
