"""How far one short training run moves when only the arithmetic changes.

Runs the test suite's three shortest training cases (the two reference meshes and the torus of
``tests/test_unoriented.py``) once per *numerics*: a variant of the same run that differs only in
how floating-point sums are formed (thread count, ATen's SIMD kernels, torch.compile), plus a
different seed for scale. Each run is started in its own process, since ATen picks its kernels
once per process from ``ATEN_CPU_CAPABILITY``. For each run it prints the mesh's distance to the
baseline run (the largest and 99th-percentile vertex distance, as a share of the box diagonal),
its Chamfer distance to the true surface and its Euler characteristic.

    .venv/bin/python scripts/numerics_spread.py                 # every case, every numerics
    .venv/bin/python scripts/numerics_spread.py --cases torus --seeds 0,1,2,3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NUMERICS: dict[str, dict[str, str]] = {
    "baseline": {},
    "threads=1": {"SPREAD_THREADS": "1"},
    "aten=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "aten=default": {"ATEN_CPU_CAPABILITY": "default"},
    "compile=on": {"SPREAD_COMPILE": "on"},
    "mkl=compatible": {"MKL_CBWR": "COMPATIBLE"},
}


def run_one(case: str, seed: int, out: Path) -> None:
    """In a child process: train one case and save its mesh."""
    sys.path.insert(0, str(ROOT))
    import torch

    from tests.numerics_cases import case_mesh

    threads = int(os.environ.get("SPREAD_THREADS", "2"))
    compile_choice = os.environ.get("SPREAD_COMPILE", "off")
    iterations = int(os.environ.get("SPREAD_ITERATIONS", "0"))
    extra = {"train__iterations": iterations} if iterations else {}
    vertices, faces = case_mesh(case, seed=seed, threads=threads, compile_choice=compile_choice, **extra)
    np.savez(out, vertices=vertices, faces=faces, capability=torch.backends.cpu.get_cpu_capability())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="sphere_oriented,spot_unoriented,torus,torus_digs")
    parser.add_argument("--numerics", default=",".join(NUMERICS))
    parser.add_argument("--seeds", default="", help="extra seeds run at the baseline numerics")
    parser.add_argument("--iterations", type=int, default=0, help="training steps (0: each case's own)")
    parser.add_argument("--out", type=Path, default=Path("out/numerics_spread"))
    parser.add_argument("--child", nargs=3, metavar=("CASE", "SEED", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_one(args.child[0], int(args.child[1]), Path(args.child[2]))
        return

    sys.path.insert(0, str(ROOT))
    from tests.numerics_cases import CASE_SEEDS, score_mesh

    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for case in args.cases.split(","):
        runs = [(name, CASE_SEEDS[case]) for name in args.numerics.split(",")]
        runs += [("baseline", int(seed)) for seed in args.seeds.split(",") if seed]
        baseline = None
        for name, seed in runs:
            target = args.out / f"{case}_{name}_{seed}_{args.iterations}.npz"
            env = {**os.environ, **NUMERICS[name], "SPREAD_ITERATIONS": str(args.iterations)}
            subprocess.run([sys.executable, __file__, "--child", case, str(seed), str(target)], env=env, check=True)
            mesh = np.load(target)
            if baseline is None:
                baseline = mesh
            row = {"case": case, "numerics": name, "seed": seed, "capability": str(mesh["capability"])}
            row.update(score_mesh(case, mesh["vertices"], mesh["faces"], baseline["vertices"]))
            recording = ROOT / "tests" / "data" / f"reference_{case}.npz"
            if recording.exists():
                recorded = np.load(recording)["vertices"]
                row["max_to_recording"] = score_mesh(case, mesh["vertices"], mesh["faces"], recorded)["max_to_baseline"]
            rows.append(row)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
