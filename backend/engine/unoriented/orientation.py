"""Consistent signs for estimated normal directions: propagation along a spanning tree.

A direction from :mod:`normal_estimation` is the normal up to sign. Neighbouring points on a
smooth surface have nearly parallel normals, so one sign can be carried from point to point
(Hoppe et al. 1992): over the k-nearest-neighbour graph, weighted ``1 - |cos|`` between the two
directions, take the minimum spanning tree (it prefers steps between near-parallel directions,
the ones whose relative sign is surest) and give every point the sign that agrees with its
parent. That makes each connected piece of the cloud consistent up to one sign per piece;
the caller decides that sign (the unoriented pipeline lets the DiGS field vote).

Why not the DiGS gradient at each point directly: on noisy input the DiGS field is locally
inverted on coherent patches, and a point-by-point sign takes those patches' error with it;
propagated and then voted, about a fifth as many points go wrong (see docs/experiments.md).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix, triu
from scipy.sparse.csgraph import breadth_first_order, connected_components, minimum_spanning_tree

from .normal_estimation import neighbour_index

EDGE_FLOOR = 1e-6
"""Added to every edge weight: a zero weight would drop the edge from the sparse graph."""
CHUNK = 65_536
"""Points whose edges are weighed at once (bounds the gathered directions' memory)."""


def propagate_signs(
    points: np.ndarray, directions: np.ndarray, neighbours: int, index: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Signs (N,) of +1/-1 that make ``directions`` agree along the spanning tree, and piece labels (N,).

    Points of one piece (a connected component of the neighbour graph) are consistent with each
    other; flipping all signs of a piece gives the other consistent choice. ``index``, from
    ``CloudIndex.neighbours`` with more than ``neighbours`` columns (the first is
    the point itself), spares the query when the caller has made it already.
    """
    pts = np.asarray(points, dtype=np.float64)
    dirs = np.asarray(directions, dtype=np.float64)
    count = len(pts)
    if count == 1:
        return np.ones(1), np.zeros(1, np.int64)
    k = int(min(max(neighbours, 1), count - 1))
    index = neighbour_index(pts, k + 1, index)
    rows = np.repeat(np.arange(count), k)
    cols = index[:, 1 : k + 1].reshape(-1)
    edges = [slice(start, start + CHUNK * k) for start in range(0, len(rows), CHUNK * k)]
    weights = np.concatenate(
        [1.0 - np.abs(np.einsum("ij,ij->i", dirs[rows[part]], dirs[cols[part]])) + EDGE_FLOOR for part in edges]
    )
    keep = rows != cols  # duplicate points may list another copy before themselves
    graph = coo_matrix((weights[keep], (rows[keep], cols[keep])), shape=(count, count)).tocsr()
    # each edge once, as (lower, higher) point: Kruskal's stable order meets the same edges first
    # as in the symmetric graph, so the tree is the same, at half the edges to sort
    tree = minimum_spanning_tree(triu(graph.maximum(graph.T), k=1, format="csr"))
    tree = tree + tree.T
    pieces, labels = connected_components(tree, directed=False)
    parent = _spanning_parents(tree, labels, pieces)
    step = np.where(np.einsum("ij,ij->i", dirs, dirs[parent]) >= 0, 1.0, -1.0)
    return _signs_to_root(parent, step), labels


def _spanning_parents(tree, labels: np.ndarray, pieces: int) -> np.ndarray:
    """Each point's parent in a breadth-first walk of its piece; a piece's first point is its own root.

    One walk from an extra node joined to every piece's root covers all pieces at once (a cloud
    with many stray points has many pieces).
    """
    count = len(labels)
    roots = np.unique(labels, return_index=True)[1]
    hub = coo_matrix((np.ones(pieces), (np.full(pieces, count), roots)), shape=(count + 1, count + 1))
    edges = tree.tocoo()
    joined = coo_matrix((edges.data, (edges.row, edges.col)), shape=(count + 1, count + 1)) + hub + hub.T
    _, predecessors = breadth_first_order(joined.tocsr(), count, directed=False)
    parent = predecessors[:count].astype(np.int64)
    parent[roots] = roots
    return parent


def _signs_to_root(parent: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Product of ``step`` along each point's path to its root, by pointer jumping (log depth passes)."""
    sign = step.copy()
    roots = parent == np.arange(len(parent))
    sign[roots] = 1.0
    up = parent.copy()
    while not np.all(roots[up]):
        sign = sign * np.where(roots[up], 1.0, sign[up])
        up = np.where(roots[up], up, up[up])
    return sign
