"""Normal directions of a cloud without normals, from the principal axes of its neighbourhoods.

A direction estimated this way is the axis of least spread of a point's ``k`` nearest
neighbours: the surface normal up to sign. Its sign cannot be known locally: the unoriented
pipeline makes the signs consistent along the neighbour graph (:mod:`orientation`) and lets the
field of the divergence phase, which has one consistent inside and outside, pick the side.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..analysis.cloud_index import CloudIndex

CHUNK = 16_384
"""Points whose neighbourhoods are analysed at once: a chunk's neighbour coordinates (about 24 MB
at 60 neighbours) stay in reused memory, and chunks go to every thread of the run."""


def neighbour_index(points: np.ndarray, columns: int, index: np.ndarray | None = None) -> np.ndarray:
    """``index`` when given, checked to hold at least ``columns`` neighbours of every point;
    otherwise a fresh :meth:`CloudIndex.neighbours` query."""
    if index is None:
        return CloudIndex(points).neighbours(columns)
    if index.ndim != 2 or len(index) != len(points) or index.shape[1] < columns:
        raise ValueError(f"the neighbour index must have {len(points)} rows and at least {columns} columns")
    return index


def scale_sizes(neighbours: int, scales: int) -> list[int]:
    """The neighbourhood sizes :func:`estimate_directions` tries: ``neighbours``, then half as
    many, and so on, ``scales`` sizes in all (none below 3)."""
    return sorted({max(3, int(neighbours) >> i) for i in range(max(1, scales))}, reverse=True)


def estimate_directions(
    points: np.ndarray, neighbours: int, index: np.ndarray | None = None, scales: int = 1,
    workers: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Unit normal directions (N, 3), float32, of ``points`` (N, 3), signs arbitrary, and each
    neighbourhood's surface variation (N,): its least spread over its total spread,
    ``l0 / (l0 + l1 + l2)`` of the covariance's eigenvalues (Pauly et al. 2002).

    The variation is 0 where the neighbours lie on a plane and 1/3 for an isotropic blob: it is
    high where the direction is least to be trusted (noise, sharp edges, parts thinner than the
    neighbourhood). With ``scales`` > 1 each point tries the sizes of :func:`scale_sizes` and
    keeps the flattest neighbourhood (the least variation): on clean detail that is a small
    one, which does not reach round an edge or across a thin part; on noise a large one, which
    averages the noise out. ``index``, from :meth:`CloudIndex.neighbours` with at least
    ``neighbours`` columns (nearest first), spares the query when the caller has made it already.
    Chunks of points are analysed on ``workers`` threads (default: torch's thread count, which a
    run sets to its ``train.threads``); every point's result is the same whatever the count.
    """
    pts = np.asarray(points, dtype=np.float64)
    sizes = [min(k, len(pts)) for k in scale_sizes(neighbours, scales)]
    index = neighbour_index(pts, sizes[0], index)
    out = np.empty((len(pts), 3), np.float32)
    variation = np.full(len(pts), np.inf, np.float32)

    def analyse(start: int) -> None:
        rows = slice(start, start + CHUNK)
        widest = pts[index[rows, : sizes[0]]]  # nearest first: each smaller size is a prefix
        for k in sizes:
            hood = widest[:, :k] - widest[:, :k].mean(axis=1, keepdims=True)
            values, vectors = np.linalg.eigh(np.einsum("nki,nkj->nij", hood, hood))
            flatness = (values[:, 0] / np.maximum(values.sum(axis=1), 1e-300)).astype(np.float32)
            better = flatness < variation[rows]
            picked = start + np.flatnonzero(better)
            out[picked] = vectors[better, :, 0]  # eigenvalues ascend: least spread first
            variation[picked] = flatness[better]

    starts = range(0, len(pts), CHUNK)
    threads = min(len(starts), max(1, workers if workers is not None else torch.get_num_threads()))
    if threads <= 1:
        for start in starts:
            analyse(start)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(analyse, starts))  # numpy's products and eigh release the GIL
    return out, variation
