"""Which points lie in each of many axis-aligned boxes, in about ``N log N`` time and memory
proportional to the answer, not to the number of boxes times the number of points.

A scene's tiles are boxes on a grid; a survey of a city block has thousands of them over a hundred
million points, where a mask of every point per box would take each box's pass over every point
(and, kept, a byte per point and box). Here the points are sorted along the first axis once; the
boxes that share their span along it (a column of tiles) share one slab of that order, sorted
along the second axis; each box then takes its run of the slab and tests the third axis.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def points_in_boxes(points: np.ndarray, lows: ArrayLike, highs: ArrayLike) -> list[np.ndarray]:
    """For each box ``[lows[b], highs[b]]`` (closed; (B, 3) arrays), the indices (int64, ascending)
    of ``points`` (N, 3) inside it: exactly ``np.flatnonzero(np.all((points >= lows[b]) & (points <=
    highs[b]), axis=1))``, the comparisons made in ``points``' dtype (``lows`` and ``highs`` are cast
    to it, as torch casts them)."""
    points = np.asarray(points)
    lows = np.asarray(lows, dtype=points.dtype).reshape(-1, 3)
    highs = np.asarray(highs, dtype=points.dtype).reshape(-1, 3)
    members: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * len(lows)
    if len(points) == 0:
        return members
    by_x = np.argsort(points[:, 0], kind="stable")
    xs = points[by_x, 0]
    columns: dict[tuple[float, float], list[int]] = {}
    for box, (low, high) in enumerate(zip(lows[:, 0].tolist(), highs[:, 0].tolist())):
        columns.setdefault((low, high), []).append(box)
    for boxes in columns.values():
        first = int(np.searchsorted(xs, lows[boxes[0], 0], side="left"))
        last = int(np.searchsorted(xs, highs[boxes[0], 0], side="right"))
        slab = by_x[first:last]
        by_y = slab[np.argsort(points[slab, 1], kind="stable")]
        ys = points[by_y, 1]
        for box in boxes:
            start = int(np.searchsorted(ys, lows[box, 1], side="left"))
            stop = int(np.searchsorted(ys, highs[box, 1], side="right"))
            run = by_y[start:stop]
            z = points[run, 2]
            members[box] = np.sort(run[(z >= lows[box, 2]) & (z <= highs[box, 2])]).astype(np.int64, copy=False)
    return members
