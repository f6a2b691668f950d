"""The tiles' fields as one: weights that fade each tile out across its band, and signs that agree."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse import csc_matrix, csr_matrix

from .box_members import points_in_boxes

TileFunction = Callable[[torch.Tensor], torch.Tensor]
"""A tile's field: signed distances (N,) at points (N, 3), both in the tile's own unit frame."""

EMPTY = 1.0
"""The blended value (positive: outside) where no tile reaches, in the lattice's units."""
FADE = 0.1
"""Over how much of its cube's half-side a tile's weight fades to 0 at the cube's faces."""


@dataclass
class BlendTile:
    """One tile as the blend sees it, in the lattice's frame (``x``); its field takes ``x * scale + shift``
    and gives distances in its frame, which are ``scale`` times the lattice's."""

    function: TileFunction
    core_lo: np.ndarray
    core_hi: np.ndarray
    margin: float
    scale: float
    shift: np.ndarray
    sign: float = 1.0
    trained: float = float("inf")
    """Half-side of the cube, in the tile's own frame, that its field was trained in (a field's
    ``[-1, 1]`` cube around its points' box): beyond it the field was never fitted, so the tile's
    weight fades to 0 over the last :data:`FADE` of it and is 0 outside."""

    def reach(self, x: torch.Tensor) -> torch.Tensor:
        """Which of the points ``x`` the tile reaches (its core grown by its margin)."""
        lo = torch.as_tensor(self.core_lo - self.margin, dtype=x.dtype, device=x.device)
        hi = torch.as_tensor(self.core_hi + self.margin, dtype=x.dtype, device=x.device)
        return torch.all((x >= lo) & (x <= hi), dim=1)

    def weight(self, x: torch.Tensor) -> torch.Tensor:
        """1 in the core, falling smoothly (smoothstep of the distance past the core along each axis)
        to 0 at the margin."""
        lo = torch.as_tensor(self.core_lo, dtype=x.dtype, device=x.device)
        hi = torch.as_tensor(self.core_hi, dtype=x.dtype, device=x.device)
        past = torch.clamp(lo - x, min=0) + torch.clamp(x - hi, min=0)
        weight = torch.prod(smoothstep(1.0 - past / self.margin), dim=1)
        if np.isfinite(self.trained):
            shift = torch.as_tensor(self.shift, dtype=x.dtype, device=x.device)
            reach = torch.amax(torch.abs(x * self.scale + shift), dim=1)
            weight = weight * smoothstep((self.trained - reach) / (FADE * self.trained))
        return weight

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        """The tile's signed distance at ``x``, in the lattice's units."""
        shift = torch.as_tensor(self.shift, dtype=x.dtype, device=x.device)
        return self.sign * self.function(x * self.scale + shift) / self.scale


def smoothstep(t: torch.Tensor) -> torch.Tensor:
    """``3t^2 - 2t^3`` of ``t`` clamped to [0, 1]: 0 below 0, 1 above 1, smooth between."""
    t = torch.clamp(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def device_function(function: TileFunction, device: torch.device) -> TileFunction:
    """``function`` (which runs on ``device``) taking and giving tensors on any device."""
    return lambda x: function(x.to(device)).to(x.device)


class BlendedSdf:
    """``sum(w_i f_i) / sum(w_i)`` over the tiles that reach a point: the cores partition the box, so
    the weights of a point sum to at least one wherever a tile was fitted and trained;
    :data:`EMPTY` where none was (outside every tile's cube: no point lies there)."""

    def __init__(self, tiles: list[BlendTile]) -> None:
        self.tiles = tiles

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(len(x), dtype=x.dtype, device=x.device)
        weights = torch.zeros_like(total)
        for tile in self.tiles:
            inside = tile.reach(x)
            if not bool(inside.any()):
                continue
            part = x[inside]
            w = tile.weight(part)
            total[inside] += w * tile.distance(part)
            weights[inside] += w
        return torch.where(weights > 0, total / torch.clamp(weights, min=1e-12), torch.full_like(total, EMPTY))


def align_signs(tiles: list[BlendTile], points: np.ndarray, jitter: float, seed: int, samples: int = 2000) -> None:
    """Flip tiles' signs so that neighbours agree on inside and outside (a field fitted without
    normals picks its sign by itself): at ``points`` (the cloud, lattice frame) both reach, moved by
    Gaussian steps of ``jitter`` off the surface, agreeing fields have the same sign. Walks the tiles
    from the one that reaches most points, each next tile the unsettled one sharing most points with
    a settled one (a maximum spanning tree of the shared counts, ties to the lowest numbers; a tile
    sharing none starts afresh), taking its sign from that neighbour. Memory and time follow the
    points the tiles reach, not the tiles times the points (:func:`~.box_members.points_in_boxes`)."""
    rng = np.random.default_rng(seed)
    support = np.asarray(points, dtype=np.float32)
    x = torch.as_tensor(support)
    members = points_in_boxes(support, [tile.core_lo - tile.margin for tile in tiles],
                              [tile.core_hi + tile.margin for tile in tiles])
    shared = shared_counts(members, len(support))
    settled = np.zeros(len(tiles), dtype=bool)
    frontier: list[tuple[int, int, int]] = []  # (-shared points, settled tile, unsettled tile)

    def settle(tile: int) -> None:
        settled[tile] = True
        row = slice(shared.indptr[tile], shared.indptr[tile + 1])
        for other, count in zip(shared.indices[row].tolist(), shared.data[row].tolist()):
            if not settled[other] and count > 0:
                heapq.heappush(frontier, (-count, tile, other))

    settle(int(np.argmax([len(m) for m in members])))
    while not settled.all():
        while frontier and settled[frontier[0][2]]:
            heapq.heappop(frontier)
        if not frontier:
            settle(int(np.argmin(settled)))
            continue
        _, i, j = heapq.heappop(frontier)
        settle(j)
        both = np.intersect1d(members[i], members[j], assume_unique=True)
        if len(both) > samples:
            both = np.sort(rng.choice(both, samples, replace=False))
        probe = x[both] + torch.as_tensor(rng.normal(scale=jitter, size=(len(both), 3)), dtype=torch.float32)
        agree = float((tiles[i].distance(probe) * tiles[j].distance(probe)).sum())
        if agree < 0:
            tiles[j].sign = -tiles[j].sign


def shared_counts(members: list[np.ndarray], points: int) -> csr_matrix:
    """``(T, T)`` sparse counts of the points each two of ``T`` point sets (indices below
    ``points``) share; the diagonal holds each set's size."""
    lengths = np.array([len(m) for m in members], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.concatenate(members) if len(members) else np.zeros(0, dtype=np.int64)
    incidence = csc_matrix((np.ones(len(indices), dtype=np.int64), indices, indptr), shape=(points, len(members)))
    return csr_matrix(incidence.T @ incidence)
