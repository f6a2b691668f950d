#!/usr/bin/env python3
"""Training-step and meshing speed: the engine against the autograd reference, side by side.

In one run, same network, batch and device:

* training steps: (a) the reference formulation of the official SIREN/DiGS code — gradients by
  double backward through autograd, the divergence by three more grad calls — and (b) the
  engine's own path (``compute_loss`` at the defaults: ``train.derivatives=auto``, the fused
  value-and-gradient pass with the default ``train.backward_precision`` and ``train.compile``,
  the divergence at ``unoriented.divergence_share`` of the off-surface points); beside it the
  fused pass at its other backward precision, compiled or not (whichever the defaults do not
  pick on the device), unoriented steps with the divergence at every point and oriented ones
  with the eikonal at a tenth of them (``oriented.eikonal_share``); at widths 64/128/256 (4 sine
  layers), median ms per step, their ratio and peak memory;
* meshing: dense grid evaluation against the engine's narrow band at 128^3/256^3(/512^3) on a
  trained network, seconds and the largest deviation between the two surfaces;
* with ``--full-run``: one whole unoriented reconstruction end to end at the GPU target's
  settings (10,000 steps, 15,000 surface + 15,000 off-surface points a step, 4 x 256 sine
  layers) of 30,000 points sampled from ``data/spot.obj`` without normals, previews on, the
  final 256^3 mesh included; ``--full-run-iterations`` scales it down for a CPU.

    python scripts/benchmark_engine.py --quick --json out/benchmark_engine.json
    python scripts/benchmark_engine.py --device cuda --full-run --json out/benchmark_engine_gpu.json

The JSON is written after each table (a crash keeps what was measured) and records the device,
the torch/CUDA/Triton versions and what every speed setting resolved to.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: evaluation/ is not installed

from evaluation.harness import write_json
from evaluation.metrics import compare_meshes, sample_surface
from siren_recon.engine.config.reconstruction import ReconstructionConfig, apply_overrides
from siren_recon.engine.device import resolve_device
from siren_recon.engine.field.derivatives import divergence, sdf_and_gradient
from siren_recon.engine.field.fused_gradient import cpp_compiler_found, fused_settings, triton_found
from siren_recon.engine.field.model import FoldedSiren, Siren
from siren_recon.engine.fitting.device_choices import adam_options, previews_on_thread, uses_tf32
from siren_recon.engine.fitting.losses import oriented_loss, unoriented_loss
from siren_recon.engine.fitting.sampling import Batch, PointSampler
from siren_recon.engine.fitting.trainer import compute_loss, train
from siren_recon.engine.meshing import extract_mesh
from siren_recon.engine.pipeline import reconstruct_points, refinement_iterations, train_field
from siren_recon.io.text_meshes import read_obj

REPO = Path(__file__).resolve().parents[1]


def reference_loss(model: Siren, batch: Batch, config: ReconstructionConfig, mode: str, div_weight: float):
    """The research code's formulation: autograd for everything, divergence by 3 grad calls."""
    points = torch.cat([batch.surface, batch.box, batch.near]).requires_grad_(True)
    f, grad = sdf_and_gradient(model, points)
    s, b = len(batch.surface), len(batch.box)
    if mode == "oriented":
        return oriented_loss(
            f[:s], grad[:s], batch.normals, f[s : s + b], grad[s : s + b], grad[s + b :], config.oriented
        )
    div = divergence(grad, points, slice(s, None))
    return unoriented_loss(f[:s], f[s : s + b], [grad[:s], grad[s:]], div, div_weight, config.unoriented)


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(methods: dict, batch, config, mode, device, repeats: int) -> dict[str, tuple[float, float]]:
    """Median ms per step and peak memory (MB) of each ``name: (loss_fn, model)``; on the CPU the
    memory is the process's peak resident set so far, not one method's own.

    The methods take turns step by step, so a change in the machine's load (these machines are
    shared) falls on all of them alike instead of on whichever ran during it.
    """
    optimisers = {name: torch.optim.Adam(model.parameters(), lr=1e-5) for name, (_, model) in methods.items()}
    times: dict[str, list[float]] = {name: [] for name in methods}
    peaks = dict.fromkeys(methods, 0.0)
    for i in range(repeats + 2):
        for name, (loss_fn, model) in methods.items():
            synchronise(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            started = time.perf_counter()
            terms = loss_fn(model, batch, config, mode, 100.0)
            optimisers[name].zero_grad(set_to_none=True)
            terms["total"].backward()
            optimisers[name].step()
            synchronise(device)
            if i >= 2:  # warm-up steps are not counted
                times[name].append(time.perf_counter() - started)
            peak = (
                torch.cuda.max_memory_allocated(device) / 2**20
                if device.type == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            )
            peaks[name] = max(peaks[name], peak)
    return {name: (1000 * statistics.median(times[name]), peaks[name]) for name in methods}


def make_batch(points: int, device: torch.device) -> Batch:
    gen = torch.Generator(device="cpu").manual_seed(0)
    normals = torch.randn(points // 2, 3, generator=gen)
    normals /= normals.norm(dim=1, keepdim=True)
    surface = normals * 0.6
    box = torch.rand(points * 7 // 20, 3, generator=gen) * 2 - 1
    near = surface[: points * 3 // 20] + 0.02 * torch.randn(points * 3 // 20, 3, generator=gen)
    return Batch(surface.to(device), normals.to(device), box.to(device), near.to(device))


def _with_overrides(config: ReconstructionConfig, overrides: dict):
    """``compute_loss`` on ``config`` changed by ``overrides``, whatever config it is called with."""
    changed = apply_overrides(config, overrides)
    return lambda model, batch, _config, mode, weight: compute_loss(model, batch, changed, mode, weight)


def train_table(device: torch.device, widths: list[int], points: int, repeats: int) -> list[dict]:
    rows = []
    batch = make_batch(points, device)
    for width in widths:
        config = apply_overrides(ReconstructionConfig(), {"model.hidden_features": width, "model.hidden_layers": 3})
        # the engine at its defaults, and beside it: the fused pass at its other backward
        # precision and on the other side of compile from what the defaults pick on this device
        # (both modes), oriented steps with the eikonal at a tenth of the off-surface points (a speed option
        # that costs some accuracy), unoriented ones with the divergence at every off-surface
        # point, as the reference takes it
        other = "float32" if config.train.backward_precision == "bfloat16" else "bfloat16"
        precision = {f"{other} backward": {"train.backward_precision": other}}
        _, compiled = fused_settings(config.train.backward_precision, config.train.compile, device)
        compile_variant = (
            {"not compiled": {"train.compile": "off"}} if compiled else {"compiled": {"train.compile": "on"}}
        )
        variants = {
            "oriented": {
                **precision,
                **compile_variant,
                "eikonal at a tenth of the off-surface points": {"oriented.eikonal_share": 0.1},
            },
            "unoriented": {
                **precision,
                **compile_variant,
                "divergence at every point": {"unoriented.divergence_share": 1.0},
            },
        }
        engines = {
            mode: {
                "engine": compute_loss,
                **{label: _with_overrides(config, overrides) for label, overrides in labelled.items()},
            }
            for mode, labelled in variants.items()
        }
        for mode, engine in engines.items():
            methods = {}
            for name, fn in (("reference", reference_loss), *engine.items()):
                torch.manual_seed(0)
                methods[name] = (fn, Siren(config.model).to(device))
            results = time_interleaved(methods, batch, config, mode, device, repeats)
            for name in engine:
                label = mode if name == "engine" else f"{mode}, {name}"
                row = {
                    "mode": label,
                    "width": width,
                    "points": points,
                    "reference_ms": results["reference"][0],
                    "engine_ms": results[name][0],
                    "speedup": results["reference"][0] / results[name][0],
                    "reference_peak_mb": results["reference"][1],
                    "engine_peak_mb": results[name][1],
                }
                rows.append(row)
                print(
                    f"| {label} | {width} | {row['reference_ms']:.0f} | {row['engine_ms']:.0f} "
                    f"| {row['speedup']:.2f}x |",
                    flush=True,
                )
    return rows


def mesh_table(device: torch.device, resolutions: list[int]) -> list[dict]:
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(0)
    normals = rng.normal(size=(4000, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    points = normals * np.array([1.0, 0.7, 0.5])
    config = apply_overrides(
        ReconstructionConfig(),
        {"train.iterations": 300, "model.hidden_features": 256, "train.device": str(device), "preview.enabled": False},
    )
    field, _ = train_field(points, normals, config)
    lo, hi = np.array(field.bounds[0]), np.array(field.bounds[1])
    rows = []
    for resolution in resolutions:
        timings, meshes = {}, {}
        # the reference: every grid point through the network as trained; the engine: the
        # narrow band through the evaluation-only folded network (model.FoldedSiren)
        for name, band, evaluate in (("dense", False, field.model), ("band", True, FoldedSiren(field.model))):
            synchronise(device)
            started = time.perf_counter()
            meshes[name] = extract_mesh(evaluate, lo, hi, resolution, 1 << 18, device, band=band)
            synchronise(device)
            timings[name] = time.perf_counter() - started
        voxel = float((hi - lo).max()) / (resolution - 1)
        a, b = meshes["dense"][0], meshes["band"][0]
        deviation = max(cKDTree(a).query(b)[0].max(), cKDTree(b).query(a)[0].max()) / voxel
        row = {
            "resolution": resolution,
            "dense_s": timings["dense"],
            "band_s": timings["band"],
            "speedup": timings["dense"] / timings["band"],
            "max_deviation_voxels": float(deviation),
        }
        rows.append(row)
        print(
            f"| {resolution}^3 | {row['dense_s']:.1f} | {row['band_s']:.1f} | {row['speedup']:.1f}x "
            f"| {deviation:.2g} |",
            flush=True,
        )
    return rows


FULL_RUN = {
    "mode": "unoriented",
    "model.hidden_features": 256,
    "model.hidden_layers": 3,
    "sampling.surface_points": 15_000,
    "sampling.box_points": 10_500,
    "sampling.near_points": 4_500,
}
"""The full reconstruction of the GPU target (under 20 s on an H100/H200); the off-surface points keep the defaults'
70 / 30 split between the box and the band round the surface."""


def full_run(device: torch.device, iterations: int, overrides: dict | None = None) -> dict:
    """Seconds of one whole unoriented reconstruction at :data:`FULL_RUN` (training with
    previews, then the final mesh) and the Chamfer of its mesh to ``data/spot.obj``; from the
    events' arrival times, each stage's steps per second, the first preview's time, the seconds
    previews held training up (or, meshed on their own thread, came after their iteration) and
    the stall between the two stages."""
    gt_v, gt_f = read_obj(REPO / "data" / "spot.obj")
    points, _ = sample_surface(gt_v, gt_f, 30_000, np.random.default_rng(0))
    config = apply_overrides(
        ReconstructionConfig(),
        {**FULL_RUN, "train.iterations": iterations, "train.device": str(device), **(overrides or {})},
    )
    marks: list[tuple[str, int, float]] = []
    started = time.perf_counter()
    result = reconstruct_points(
        points, None, config,
        on_progress=lambda event: marks.append(("progress", event.iteration, time.perf_counter() - started)),
        on_mesh=lambda event: marks.append(("mesh", event.iteration, time.perf_counter() - started)),
    )
    synchronise(device)
    seconds = time.perf_counter() - started
    scores = compare_meshes(result.vertices, result.faces, gt_v, gt_f, samples=100_000)
    return {
        "iterations": iterations,
        "seconds": seconds,
        "train_s": result.timings["train"],
        "mesh_s": result.timings["mesh"],
        "meshes_streamed": sum(kind == "mesh" for kind, _, _ in marks),
        "chamfer_l1": scores.chamfer_l1,
        **stage_figures(marks, iterations - refinement_iterations(config, "unoriented"), config.train.progress_every),
        "settings": resolved_settings(config, device),
        **{key: setting(config, key) for key in FULL_RUN if key != "mode"},
    }


def setting(config: ReconstructionConfig, name: str) -> object:
    """The value of the dotted setting ``name`` in ``config``."""
    value: object = config
    for part in name.split("."):
        value = getattr(value, part)
    return value


def stage_figures(marks: list[tuple[str, int, float]], first_stage: int, every: int) -> dict:
    """Per-stage steps per second, preview seconds and the stall between stages, from
    ``(kind, iteration, seconds)`` marks of the progress and mesh events."""
    progress = [(it, t) for kind, it, t in marks if kind == "progress"]
    stages = [[(it, t) for it, t in progress if it <= first_stage], [(it, t) for it, t in progress if it > first_stage]]
    figures: dict = {}
    for index, rows in enumerate(stages, start=1):
        if len(rows) >= 2:
            steps, seconds = rows[-1][0] - rows[0][0], rows[-1][1] - rows[0][1]
            figures[f"stage{index}_iterations_per_second"] = steps / max(seconds, 1e-9)
    if stages[0] and len(stages[1]) >= 2:
        (last_it, last_t), (next_it, next_t) = stages[0][-1], stages[1][0]
        step = 1.0 / figures["stage2_iterations_per_second"]
        figures["stall_between_stages_s"] = next_t - last_t - (next_it - last_it) * step
    at = dict(progress)
    previews = [(it, t) for kind, it, t in marks if kind == "mesh"][:-1]
    figures["first_preview_s"] = previews[0][1] if previews else None
    # inline: the wait between a preview's iteration and its mesh; on a thread: how late it came
    figures["preview_s"] = sum(t - at[it] for it, t in previews if it in at)
    return figures


def resolved_settings(config: ReconstructionConfig, device: torch.device) -> dict:
    """What every speed setting of ``config`` comes to on ``device`` (its ``auto`` resolved)."""
    dtype, compiled = fused_settings(config.train.backward_precision, config.train.compile, device)
    return {
        "fused_backward_dtype": str(dtype).removeprefix("torch."),
        "compile": compiled,
        "tf32_hidden_layers": uses_tf32(config, device),
        "adam": adam_options(config, device),
        "previews_on_thread": previews_on_thread(config, device),
        "derivatives": config.train.derivatives,
    }


def environment(device: torch.device) -> dict:
    """The machine and software the figures come from."""
    cuda = device.type == "cuda"
    return {
        "device": torch.cuda.get_device_name(device) if cuda else f"{platform.processor() or platform.machine()} CPU",
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "triton": triton_found(),
        "cpp_compiler": cpp_compiler_found(),
        "allow_tf32_at_start": torch.backends.cuda.matmul.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "defaults": resolved_settings(ReconstructionConfig(), device),
    }


SPEED_VARIANTS = {
    "matmul float32": {"train.matmul_precision": "float32"},
    "adam for-loop": {"train.adam": "for-loop"},
    "not compiled": {"train.compile": "off"},
    "all off (float32, for-loop, eager)": {
        "train.matmul_precision": "float32", "train.adam": "for-loop", "train.compile": "off"
    },
}
"""The speed settings switched off one at a time (and all together) against the defaults."""


def speed_table(device: torch.device, steps: int) -> list[dict]:
    """Milliseconds per whole training step (sampling, loss, backward, clipping, Adam) at the
    full run's settings on a sphere cloud, the defaults against each :data:`SPEED_VARIANTS`; each
    is run once untimed first (a compile) and timed over ``steps`` steps."""
    normals = np.random.default_rng(0).normal(size=(30_000, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    unit = torch.as_tensor(normals * 0.6, dtype=torch.float32, device=device)
    rows = []
    for label, overrides in {"defaults": {}, **SPEED_VARIANTS}.items():
        config = apply_overrides(
            ReconstructionConfig(),
            {**FULL_RUN, **overrides, "train.iterations": steps, "train.device": str(device), "preview.enabled": False},
        )
        timings = []
        for _ in range(2):
            torch.manual_seed(0)
            model = Siren(config.model).to(device)
            sampler = PointSampler(unit, None, config.sampling, torch.Generator(device=device).manual_seed(0))
            synchronise(device)
            started = time.perf_counter()
            train(model, sampler, config, "unoriented")
            synchronise(device)
            timings.append(time.perf_counter() - started)
        row = {
            "variant": label, "ms_per_step": 1000 * timings[-1] / steps, "settings": resolved_settings(config, device)
        }
        rows.append(row)
        print(f"| {label} | {row['ms_per_step']:.2f} |", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no 512^3 (a few minutes on 2 cores)")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--points", type=int,
        help="rows a training step of the tables (default 30,000 on CUDA, the DiGS configuration's 15k + 15k; "
        "10,000 on the CPU)",
    )
    parser.add_argument("--repeats", type=int, help="timed steps per method and size (default 3 with --quick, else 10)")
    parser.add_argument("--no-mesh", action="store_true", help="leave out the meshing table")
    parser.add_argument(
        "--speed-settings", type=int, metavar="STEPS", default=0,
        help="also time STEPS whole steps at the full run's settings with each speed setting switched off",
    )
    parser.add_argument(
        "--full-run", action="store_true", help="also time one whole unoriented reconstruction (see above)"
    )
    parser.add_argument("--full-run-iterations", type=int, default=10_000, help="its training steps")
    parser.add_argument(
        "--full-run-reference", action="store_true",
        help="and once more with the speed settings off (float32, for-loop Adam, eager), to compare the Chamfer",
    )
    parser.add_argument("--json", help="written after each table, so a crash keeps what was measured")
    args = parser.parse_args()
    device = resolve_device(args.device)
    points = args.points or (30_000 if device.type == "cuda" else 10_000)
    summary: dict = {"environment": environment(device), "points": points}
    name = summary["environment"]["device"]
    defaults = ReconstructionConfig().train
    dtype, compiled = fused_settings(defaults.backward_precision, defaults.compile, device)
    settings = f"fused backward in {str(dtype).removeprefix('torch.')}, compile {'on' if compiled else 'off'}"
    summary["engine_settings"] = settings
    write_json(args.json, summary)
    print(
        f"device: {name}, torch {torch.__version__}, CUDA {torch.version.cuda}; engine defaults here: {settings}, "
        f"{summary['environment']['defaults']}\n\n"
        "| mode | width | reference ms/step | engine ms/step | speedup |\n|---|---|---|---|---|",
        flush=True,
    )
    train_rows = train_table(device, [64, 128, 256], points, args.repeats or (3 if args.quick else 10))
    summary["train"] = train_rows
    summary["train.oriented.speedup"] = next(
        r["speedup"] for r in train_rows if r["mode"] == "oriented" and r["width"] == 256
    )
    summary["train.unoriented.speedup"] = next(
        r["speedup"] for r in train_rows if r["mode"] == "unoriented" and r["width"] == 256
    )
    write_json(args.json, summary)
    if args.speed_settings:
        print("\n| speed settings | ms per whole step |\n|---|---|", flush=True)
        summary["speed_settings"] = speed_table(device, args.speed_settings)
        write_json(args.json, summary)
    if not args.no_mesh:
        print("\n| mesh | dense s | narrow band s | speedup | max deviation (voxels) |", flush=True)
        print("|---|---|---|---|---|", flush=True)
        summary["mesh"] = mesh_table(device, [128, 256] if args.quick else [128, 256, 512])
        summary["mesh.speedup_256"] = next(r["speedup"] for r in summary["mesh"] if r["resolution"] == 256)
        write_json(args.json, summary)
    runs = {"full_run": {}, "full_run_reference": SPEED_VARIANTS["all off (float32, for-loop, eager)"]}
    for key, overrides in runs.items():
        if not args.full_run or (key == "full_run_reference" and not args.full_run_reference):
            continue
        run = full_run(device, args.full_run_iterations, overrides)
        print(
            f"\n{key}: unoriented reconstruction ({run['iterations']} steps, 15k + 15k points a step, 4 x 256): "
            f"{run['seconds']:.1f} s (training {run['train_s']:.1f} s with {run['meshes_streamed'] - 1} previews, "
            f"final mesh {run['mesh_s']:.1f} s), Chamfer {1e3 * run['chamfer_l1']:.3f}e-3 of the diagonal; "
            f"stages {run.get('stage1_iterations_per_second', 0):.0f} / "
            f"{run.get('stage2_iterations_per_second', 0):.0f} it/s, "
            f"stall between them {run.get('stall_between_stages_s', 0):.2f} s, previews {run['preview_s']:.2f} s, "
            f"first preview at {run['first_preview_s']} s",
            flush=True,
        )
        summary[key] = run
        summary[f"{key}.seconds"] = run["seconds"]
        write_json(args.json, summary)
    if "full_run" in summary and "full_run_reference" in summary:
        summary["full_run.chamfer_vs_reference"] = (
            summary["full_run"]["chamfer_l1"] / summary["full_run_reference"]["chamfer_l1"]
        )
        print(f"Chamfer with the speed settings / without: {summary['full_run.chamfer_vs_reference']:.3f}")
        write_json(args.json, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
