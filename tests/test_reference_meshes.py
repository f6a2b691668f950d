"""The same seed gives the same mesh: two short runs checked against meshes recorded earlier.

The recordings in ``tests/data/reference_*.npz`` hold the vertices and faces of one oriented
and one unoriented run (the two-stage refinement with its sign prior and clearance), with the
torch version and the numerics fingerprint (``numerics_cases.numerics_fingerprint``) of the
machine that made them. Where both match this machine, the mesh must be equal bit for bit: a
refactoring that changes the arithmetic in any way fails here.

Elsewhere (another torch release, another BLAS code path, another SIMD kernel) the sums differ in
their last bits, and a few hundred Adam steps carry that into a different mesh: on one machine,
changing only MKL's or ATen's code path moves the unoriented Spot's vertices by up to 7% of the
diagonal and leaves the oriented sphere's run with other stray sheets in the empty part of the box
(``scripts/numerics_spread.py``; docs/experiments.md, "Short fits under other numerics"). So there
the test judges what a correct engine gives on every numerics: the surface the points support (the
automatic trim's part) lies within twice the recording's Chamfer distance of the true sphere / Spot.

Re-record (only on purpose, when a change of results is intended) with
``python -m tests.test_reference_meshes``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from .numerics_cases import (
    CASE_SEEDS,
    case_mesh,
    numerics_fingerprint,
    supported_part,
    truth_chamfer,
)

pytestmark = pytest.mark.slow

RECORDINGS = Path(__file__).resolve().parent / "data"
CASES = ("sphere_oriented", "spot_unoriented")
TOLERANCE = 2.0
"""How much farther from the truth than the recording's surface another numerics' may lie. Measured
on one machine as a share of the recording's: 0.98-1.04 (sphere) and 0.79-1.00 (Spot) under four
numerics, 0.99-1.39 and 0.75-1.72 under seven other seeds, which a change of numerics can equal."""


def platform() -> tuple[str, str]:
    """What decides whether a run repeats the recording's bits: torch's version and the fingerprint."""
    return torch.__version__, numerics_fingerprint()


def record(name: str) -> Path:
    vertices, faces = case_mesh(name)
    version, fingerprint = platform()
    target = RECORDINGS / f"reference_{name}.npz"
    target.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(target, vertices=vertices, faces=faces, torch_version=version,
                        numerics_fingerprint=fingerprint, cpu_capability=torch.backends.cpu.get_cpu_capability())
    return target


def test_the_cases_run_at_the_recorded_seed():
    assert CASE_SEEDS["sphere_oriented"] == CASE_SEEDS["spot_unoriented"] == 3


@pytest.mark.parametrize("name", CASES)
def test_the_mesh_is_the_recorded_one(name):
    recorded = np.load(RECORDINGS / f"reference_{name}.npz")
    vertices, faces = case_mesh(name)
    if (str(recorded["torch_version"]), str(recorded["numerics_fingerprint"])) == platform():
        # recorded when the engine returned float32 vertices; its float64 ones round to them exactly
        np.testing.assert_array_equal(vertices.astype(recorded["vertices"].dtype), recorded["vertices"])
        np.testing.assert_array_equal(faces, recorded["faces"])
        return
    ours = supported_part(name, vertices, faces)
    theirs = supported_part(name, recorded["vertices"].astype(np.float64), recorded["faces"])
    assert truth_chamfer(name, *ours) < TOLERANCE * truth_chamfer(name, *theirs)


if __name__ == "__main__":
    for case in sys.argv[1:] or CASES:
        print(record(case))
