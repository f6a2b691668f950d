#!/usr/bin/env python3
"""Time to quality: when each preview mesh arrives, how many steps a run took, and what it scored.

For each shape and input (the evaluation's: 20,000 points sampled from a shared mesh, with or
without normals, or noisy; see ``scripts/evaluate.py``) and each ``--variant`` (a name and engine
overrides; ``today`` is the defaults), one reconstruction in a fresh process of this script, so
that compilation, caches and memory are each run's own. Each row: the seconds from the call to the
first preview and to each later one (with its step), the steps trained, seconds of training and of
the whole run, and Chamfer-L1, Hausdorff (x1e-3 of the diagonal) and normal consistency against
the mesh the points came from. Without ``../shared/data`` it runs the bundled sample
(``data/spot.obj``).

    python scripts/benchmark_time_to_quality.py --shapes spot --inputs oriented,unoriented \\
        --variant today --variant "half:sampling.surface_points=2500" --json out/ttq.json

Not a test: the figures depend on the machine and on what else it runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the checkout: evaluation/ is not installed
sys.path.insert(0, str(REPO / "scripts"))


def run_one(mesh_path: Path, variant: str, overrides: dict[str, Any], points: int, seed: int) -> dict[str, Any]:
    """One reconstruction in this process: preview times, steps, seconds and scores."""
    from evaluate import make_inputs

    from evaluation.metrics import compare_meshes
    from siren_recon.engine.config.reconstruction import ReconstructionConfig, apply_overrides
    from siren_recon.engine.events import MeshEvent, ProgressEvent
    from siren_recon.engine.pipeline import reconstruct_points
    from siren_recon.io.text_meshes import read_obj

    truth_v, truth_f = read_obj(mesh_path)
    sample = make_inputs(truth_v, truth_f, points, seed, [variant])[variant]
    config = apply_overrides(ReconstructionConfig(), overrides)
    previews: list[tuple[float, int]] = []
    steps: list[int] = []
    started = time.perf_counter()

    def on_mesh(event: MeshEvent) -> None:
        if not event.final:
            previews.append((round(time.perf_counter() - started, 2), event.iteration))

    def on_progress(event: ProgressEvent) -> None:
        steps.append(event.iteration)

    result = reconstruct_points(sample.points, sample.normals, config, on_progress=on_progress, on_mesh=on_mesh)
    seconds = time.perf_counter() - started
    scores = compare_meshes(result.vertices, result.faces, truth_v, truth_f, 100_000, seed=seed)
    return {"steps": int(result.stats.get("steps", steps[-1] if steps else 0)), "train_s": result.timings["train"],
            "seconds": seconds, "previews": previews, "chamfer": 1e3 * scores.chamfer_l1,
            "hausdorff": 1e3 * scores.hausdorff, "normal_consistency": scores.normal_consistency}


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``name:key=value,key=value`` (``today``: no overrides) as a name and typed overrides."""
    from siren_recon.cli import parse_override

    name, _, rest = text.partition(":")
    return name, dict(parse_override(item) for item in rest.split(",") if item)


def format_row(row: dict[str, Any]) -> str:
    first = f"{row['previews'][0][0]:.1f}" if row["previews"] else "-"
    gaps = np.diff([0.0] + [t for t, _ in row["previews"]] + [row["seconds"]])
    return (f"| {row['shape']} | {row['input']} | {row['variant']} | {first} | {gaps.max():.1f} | {row['steps']} | "
            f"{row['train_s']:.1f} | {row['seconds']:.1f} | {row['chamfer']:.3f} | {row['hausdorff']:.1f} | "
            f"{row['normal_consistency']:.4f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "meshes"))
    parser.add_argument("--shapes", default="spot", help="comma-separated mesh names")
    parser.add_argument("--inputs", default="oriented", help="comma-separated of oriented, unoriented, noisy")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME[:KEY=VALUE,...]",
                        help="a configuration to run (repeatable); default: today")
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write all rows here")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child process's job, as JSON
    args = parser.parse_args()
    if args.one:
        job = json.loads(args.one)
        row = run_one(Path(job["mesh"]), job["input"], parse_variant(job["variant"])[1], args.points, args.seed)
        print(json.dumps(row))
        return 0
    data = Path(args.data)
    if not data.is_dir():
        data = REPO / "data"
        print(f"note: no {args.data}; running the bundled sample", file=sys.stderr)
    variants = args.variant or ["today"]
    for text in variants:
        parse_variant(text)  # a bad override fails here, before any run
    print("| shape | input | variant | first preview s | longest gap s | steps | train s | total s | "
          "Chamfer | Hausdorff | NC |\n|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    rows = []
    for shape in [s for s in args.shapes.split(",") if s]:
        for variant_input in [i for i in args.inputs.split(",") if i]:
            for text in variants:
                job = {"mesh": str(data / f"{shape}.obj"), "input": variant_input, "variant": text}
                run = subprocess.run([sys.executable, __file__, "--one", json.dumps(job), "--points",
                                      str(args.points), "--seed", str(args.seed)],
                                     capture_output=True, text=True)
                name = parse_variant(text)[0]
                if run.returncode != 0:  # a run that fails (no surface, say) is a finding, not the end
                    why = (run.stderr.strip().splitlines() or ["no output"])[-1]
                    print(f"| {shape} | {variant_input} | {name} | failed: {why} |", flush=True)
                    continue
                row = {"shape": shape, "input": variant_input, "variant": name,
                       **json.loads(run.stdout.strip().splitlines()[-1])}
                rows.append(row)
                print(format_row(row), flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
