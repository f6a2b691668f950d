#!/usr/bin/env python3
"""Benchmark of the unoriented refinement's set-up: the work done once before its steps.

Surveys the procedural street of ``evaluation.street`` from above (``--points`` points, 2 cm noise,
no normals), brings it into the unit cube as a reconstruction does, indexes it
(:class:`CloudIndex`, its working set when larger than ``--working-points``) and times each part
of :func:`refinement_stage`'s preparation on it, with a freshly initialised network standing in
for the DiGS field (the set-up's cost does not depend on how trained the field is):

- ``index``: the k-d tree over the working set;
- ``neighbours``: each point's nearest neighbours for the normal directions and their signs;
- ``directions``: the directions and surface variations at every neighbourhood size;
- ``propagate``: the signs carried along the spanning tree;
- ``orient``: the signed directions as the refinement makes them (the three above, again, and
  the field's gradient at every point for the side vote);
- ``sign_prior`` and ``clearance``: the two regularisers' grids;
- ``stage``: :func:`refinement_stage` as a whole (all of the above but the index).

    python scripts/benchmark_refinement_setup.py --points 1000000
    python scripts/benchmark_refinement_setup.py --points 200000 --json out/setup.json

Not a test: the figures depend on the machine and on what else it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: evaluation/ is not installed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000, help="points in the survey")
    parser.add_argument("--working-points", type=int, default=None,
                        help="size of the working set (default: the engine's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the row here")
    args = parser.parse_args(argv)

    import torch

    from evaluation.street import street_scene, survey
    from siren_recon.engine.analysis.cloud_index import WORKING_POINTS, CloudIndex
    from siren_recon.engine.analysis.normalization import Normalization
    from siren_recon.engine.config.reconstruction import ReconstructionConfig
    from siren_recon.engine.field.geometric_init import sphere_init
    from siren_recon.engine.field.model import FoldedSiren, Siren
    from siren_recon.engine.field.sdf_field import SdfField
    from siren_recon.engine.unoriented.clearance import Clearance
    from siren_recon.engine.unoriented.normal_estimation import estimate_directions, scale_sizes
    from siren_recon.engine.unoriented.orientation import propagate_signs
    from siren_recon.engine.unoriented.refinement import orient_directions, refinement_stage
    from siren_recon.engine.unoriented.sign_prior import SignPrior

    if args.threads:
        torch.set_num_threads(args.threads)
    config = ReconstructionConfig()
    settings = config.refinement
    normals = settings.normals
    device = torch.device("cpu")
    points, _ = survey(street_scene(), args.points)
    normalization = Normalization.fit(points)
    unit = normalization.to_unit(points)
    model = Siren(config.model).to(device)
    sphere_init(model, 0.5, multi_frequency=False)
    digs = SdfField(model, normalization, config, "unoriented", ((-1.0,) * 3, (1.0,) * 3),
                    unit[:1000].astype(np.float32))

    seconds: dict[str, float] = {}

    def timed(name: str, action):  # noqa: ANN001, ANN202 - a local stopwatch
        start = time.perf_counter()
        result = action()
        seconds[name] = round(time.perf_counter() - start, 2)
        return result

    limit = args.working_points or WORKING_POINTS
    index = timed("index", lambda: CloudIndex.build(unit, config.train.seed, limit))
    columns = max(normals.neighbours, normals.orientation_neighbours + 1)
    neighbours = timed("neighbours", lambda: index.neighbours(columns))
    directions, _ = timed("directions", lambda: estimate_directions(index.points, normals.neighbours, neighbours,
                                                                     normals.scales))
    timed("propagate", lambda: propagate_signs(index.points, directions, normals.orientation_neighbours, neighbours))
    timed("orient", lambda: orient_directions(model, index, normals, device))
    timed("sign_prior", lambda: SignPrior.build(FoldedSiren(model), index, settings.prior_distance, device))
    timed("clearance", lambda: Clearance.build(index, settings.clearance_spacings, settings.prior_distance, device))
    timed("stage", lambda: refinement_stage(digs, index, 1.0, config, device, 1000, 0))
    row = {"points": args.points, "working_points": len(index),
           "scales": scale_sizes(normals.neighbours, normals.scales), "threads": torch.get_num_threads(),
           "seconds": seconds}
    print(json.dumps(row))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(row, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
