"""The evaluation's input variants: one point sample and one noise draw serve every variant."""

from __future__ import annotations

import numpy as np
import torch

from siren_recon.engine.meshing import extract_mesh

from .scripts import load_script

evaluate = load_script("evaluate")


def test_noisy_oriented_is_the_noisy_points_with_the_true_normals():
    vertices, faces = extract_mesh(lambda x: x.norm(dim=-1) - 0.5, -np.ones(3), np.ones(3), 32, 1 << 15,
                                   torch.device("cpu"))
    every = evaluate.make_inputs(vertices, faces, 2000, 0, list(evaluate.INPUTS))
    assert set(every) == {"oriented", "unoriented", "noisy", "noisy-oriented"}
    noisy, scanned, clean = every["noisy"], every["noisy-oriented"], every["oriented"]
    np.testing.assert_array_equal(scanned.points, noisy.points)
    np.testing.assert_array_equal(scanned.normals, clean.normals)
    assert noisy.normals is None and every["unoriented"].normals is None
    moved = np.linalg.norm(scanned.points - clean.points, axis=1)
    diagonal = float(np.linalg.norm(np.ptp(vertices, axis=0)))
    expected = np.sqrt(3) * evaluate.NOISE_SHARE * diagonal  # Gaussian per axis: rms of the 3-D offset
    assert abs(np.sqrt(np.mean(moved**2)) / expected - 1) < 0.05
    # asking for one variant draws the same sample and noise as asking for all
    alone = evaluate.make_inputs(vertices, faces, 2000, 0, ["noisy-oriented"])
    np.testing.assert_array_equal(alone["noisy-oriented"].points, scanned.points)
