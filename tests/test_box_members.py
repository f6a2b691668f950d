"""Points in many boxes at once: the answer of a mask per box, without a mask per box."""

from __future__ import annotations

import numpy as np
import pytest

from siren_recon.engine.meshing.cleanup import best_in_each_region
from siren_recon.engine.tiling.box_members import points_in_boxes


def masks(points: np.ndarray, lows: np.ndarray, highs: np.ndarray) -> list[np.ndarray]:
    """Each box's points by a comparison of every point with it."""
    lows, highs = lows.astype(points.dtype), highs.astype(points.dtype)
    return [np.flatnonzero(np.all((points >= low) & (points <= high), axis=1)) for low, high in zip(lows, highs)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_each_box_gets_exactly_the_points_a_mask_gives_faces_included(dtype):
    rng = np.random.default_rng(0)
    points = rng.uniform(-1, 1, (20_000, 3))
    points[::7] = np.round(points[::7] * 4) / 4  # on the boxes' faces below
    points = points.astype(dtype)
    # a grid of boxes whose columns share their span along x, and loose boxes of their own
    grid = np.stack(np.meshgrid(*[np.arange(-1, 1, 0.25)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    loose = rng.uniform(-1.2, 0.6, (40, 3))
    lows = np.concatenate([grid - 0.05, loose, [[5.0, 5.0, 5.0]]])
    highs = np.concatenate([grid + 0.3, loose + rng.uniform(0, 0.8, (40, 3)), [[6.0, 6.0, 6.0]]])
    got = points_in_boxes(points, lows, highs)
    assert len(got) == len(lows)
    for mine, truth in zip(got, masks(points, lows, highs)):
        np.testing.assert_array_equal(mine, truth)
        assert mine.dtype == np.int64
    assert len(got[-1]) == 0 and sum(len(g) for g in got) > len(points)
    assert [len(g) for g in points_in_boxes(points[:0], lows, highs)] == [0] * len(lows)


def test_the_best_piece_of_each_region_is_the_heaviest_there_lowest_label_on_ties_and_0_where_none_weighs():
    rng = np.random.default_rng(1)
    for _ in range(200):
        faces = int(rng.integers(1, 300))
        count = int(rng.integers(1, 20))
        labels = rng.integers(0, count, faces)
        regions = rng.integers(-1, int(rng.integers(1, 6)), faces)
        weights = np.round(rng.uniform(0, 1, faces) * 3) / 3 * (rng.uniform(size=faces) < rng.uniform())
        best = best_in_each_region(labels, weights, regions)
        truth = [int(np.argmax(np.bincount(labels[regions == r], weights=weights[regions == r], minlength=count)))
                 for r in np.unique(regions[regions >= 0])]
        np.testing.assert_array_equal(best, truth)
