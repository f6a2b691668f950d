"""One neighbour structure per cloud: a k-d tree over its points that every whole-cloud step queries.

Normal directions, their orientation, the noise level, the clearance's point spacing and the
refinement's distance grids all ask the same questions of the same points (the nearest few
points, the distance to the nearest one). :class:`CloudIndex` builds the tree once and answers
them in chunks, so that no query holds an (N, k, 3) array over a cloud of millions.

A cloud larger than :data:`WORKING_POINTS` is indexed through an even, seeded subsample of that
many points (:func:`working_set`): the steps above need the surface's shape at the mesh's
resolution, not every point, and their cost (above all the orientation's spanning tree, about
2 GB per million points) grows with the points they look at.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
from scipy.spatial import cKDTree

WORKING_POINTS = 1_000_000
"""Most points the whole-cloud steps look at; a larger cloud is evenly subsampled to this many.

On Spot at this size the median spacing is 0.15 of a voxel of the default 256 mesh and the 60
neighbours of a normal direction span 1.4 voxels (at ten million they would span 0.45, less than
the evaluation's noise), each stage's 1,000 steps of 5,000 surface samples draw every point five
times over, and the refinement's peak memory stays that of a million-point run (see
docs/experiments.md, "Working set")."""

CHUNK = 65_536
"""Query points answered at once (bounds the memory of a query with many neighbours)."""


def even_subsample(count: int, size: int, seed: int) -> np.ndarray:
    """Sorted indices of ``size`` of ``count`` points drawn without replacement, seeded; all
    ``count`` (in order) when ``size >= count``."""
    if size >= count:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size, replace=False))


def working_set(count: int, seed: int, limit: int = WORKING_POINTS) -> np.ndarray | None:
    """Indices of the points a cloud of ``count`` is indexed through: ``None`` (all of them) up to
    ``limit``, else an :func:`even_subsample` of ``limit``."""
    return None if count <= limit else even_subsample(count, limit, seed)


class CloudIndex:
    """A k-d tree over a cloud's points (or its working set), queried on all cores in chunks."""

    def __init__(self, points: np.ndarray, rows: np.ndarray | None = None, chunk: int = CHUNK) -> None:
        """Index ``points[rows]`` (all of ``points`` when ``rows`` is ``None``) as float64."""
        source = np.asarray(points, dtype=np.float64)
        self.rows = rows
        """Indices into the cloud of the indexed points, ``None`` when all of them are."""
        self.points = np.ascontiguousarray(source if rows is None else source[rows])
        """(M, 3) float64: the indexed points."""
        self.source_count = len(source)
        """Points in the whole cloud."""
        self.chunk = chunk
        self.tree = cKDTree(self.points)

    @classmethod
    def build(cls, points: np.ndarray, seed: int, limit: int = WORKING_POINTS) -> CloudIndex:
        """The index of a cloud: all its points up to ``limit``, else its :func:`working_set`."""
        return cls(points, working_set(len(points), seed, limit))

    def __len__(self) -> int:
        return len(self.points)

    @property
    def subsampled(self) -> bool:
        return self.rows is not None

    def take(self, values: np.ndarray) -> np.ndarray:
        """The rows of a per-point array of the whole cloud (normals, colours) that belong to the
        indexed points."""
        return values if self.rows is None else values[self.rows]

    def query(self, x: np.ndarray, k: int = 1, distance_upper_bound: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
        """Distances and indices of the ``k`` indexed points nearest each of ``x`` (M, 3), nearest
        first, as ``cKDTree.query`` gives them (shape (M,) for ``k=1``, else (M, k))."""
        queries = np.asarray(x, dtype=np.float64)
        shape = (len(queries),) if k == 1 else (len(queries), k)
        distances = np.empty(shape, np.float64)
        index = np.empty(shape, np.intp)
        for start in range(0, len(queries), self.chunk):
            rows = slice(start, start + self.chunk)
            distances[rows], index[rows] = self.tree.query(
                queries[rows], k=k, distance_upper_bound=distance_upper_bound, workers=-1
            )
        return distances, index

    def neighbours(self, count: int) -> np.ndarray:
        """Indices (M, count) of each indexed point's ``count`` nearest indexed points, nearest
        first, the point itself among them (first, unless an exact duplicate is listed before it)."""
        k = int(min(max(count, 1), len(self.points)))
        index = np.empty((len(self.points), k), np.int32 if len(self.points) < 2**31 else np.int64)
        for start in range(0, len(self.points), self.chunk):
            _, idx = self.tree.query(self.points[start : start + self.chunk], k=k, workers=-1)
            index[start : start + self.chunk] = np.asarray(idx).reshape(-1, k)
        return index

    @cached_property
    def spacing(self) -> float:
        """Median distance from an indexed point to the nearest other one (0 for fewer than 2)."""
        if len(self.points) < 2:
            return 0.0
        return float(np.median(self.query(self.points, k=2)[0][:, 1]))

    def distance(self, x: np.ndarray, cap: float = np.inf) -> np.ndarray:
        """Distance from each of ``x`` to the nearest indexed point, at most ``cap`` (points
        farther than ``cap`` are answered without a full search)."""
        return np.minimum(self.query(x, k=1, distance_upper_bound=cap)[0], cap)


def as_index(cloud: np.ndarray | CloudIndex) -> CloudIndex:
    """``cloud`` itself when it is an index, else an index over all of its points."""
    return cloud if isinstance(cloud, CloudIndex) else CloudIndex(cloud)
