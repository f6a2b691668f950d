"""The narrow band: the field evaluated only near its zero level set, coarse to fine, with the
dense grid's surface from far fewer evaluations and only the cubes near the surface in memory."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from skimage.measure import marching_cubes

from .dense import SdfFunction, crosses_zero, empty_mesh

BAND_BLOCK = 16
"""Step of the coarsest lattice in narrow-band meshing, in voxels (a power of two, at least 2).

It is also the side of the cubes that the fine grid is kept and meshed in.
"""
BAND_LIPSCHITZ = 1.5
"""The slope ``|grad f|`` that narrow-band meshing takes as a bound; larger is safer and slower.

A point that is not evaluated gets its sign from lattice neighbours: ``f(p) > 0`` is taken as
known when a neighbour ``c`` has ``f(c) > BAND_LIPSCHITZ * |p - c|``. A signed distance has slope
1; a fitted SIREN strays from it, up to a few times that in places. Where the bound fails near a
surface the band still finds the surface: every grid edge whose end points differ in sign gets
both ends evaluated, and that follows the surface into points that were only inferred. What a
too small bound can lose is a separate piece (a small bubble) that no evaluated point comes near.
At 1.5 the dense mesh came from about 9% of the grid (see docs/experiments.md).
"""


@dataclass
class BandBlocks:
    """The sampled grid near the zero level set, kept as cubes of ``side + 1`` points a side.

    ``values[b, i, j, k]`` belongs to grid point ``origins[b] + (i, j, k)``; neighbouring cubes
    share their face points and hold the same values there. A point that was not evaluated holds
    a bound with the right sign (``|f|`` is at least that large); every end of an edge whose sign
    changes was evaluated. A cube that is not listed has no zero crossing. Points past
    ``counts - 1`` pad the last cubes.
    """

    origins: np.ndarray
    values: np.ndarray
    counts: np.ndarray

    @property
    def side(self) -> int:
        return self.values.shape[1] - 1


@torch.no_grad()
def _evaluate_points(sdf: SdfFunction, lo: np.ndarray, voxel: float, index: np.ndarray,
                     chunk_points: int, device: torch.device, start: np.ndarray | None = None) -> np.ndarray:
    """SDF at the grid points ``lo + voxel * (start + index)`` ((M, 3) integer indices; ``start``
    the block's first point on a larger lattice, default 0), chunk by chunk."""
    if start is not None:
        index = index + np.asarray(start, dtype=index.dtype)
    out = np.empty(len(index), dtype=np.float32)
    origin = torch.as_tensor(lo, dtype=torch.float32, device=device)
    for first in range(0, len(index), chunk_points):
        part = torch.as_tensor(index[first : first + chunk_points], device=device).float()
        out[first : first + len(part)] = sdf(origin + voxel * part).float().cpu().numpy()
    return out


def _infer_finer(coarse: np.ndarray, reach: float, keep: float = 0.0) -> np.ndarray:
    """The lattice of half the step over the last three axes of ``coarse``, NaN where unknown.

    Coarse points keep their values. A new point lies midway between 2, 4 or 8 coarse neighbours
    at distance ``sqrt(k) * step`` (k odd axes); ``reach`` is the slope bound times the new step.
    From each neighbour value ``g`` (``f`` itself, or a bound of the right sign) the point gets
    ``f >= max g - reach * sqrt(k)`` and ``f <= min g + reach * sqrt(k)``; when exactly one of
    these fixes the sign, that bound is its value, else it is unknown. A bound under ``keep`` is
    dropped too: bounds shrink with every level they are passed down, and one evaluation of a
    coarse point is cheaper than the many finer points a weak bound would leave unknown.
    """
    *batch, a, b, c = coarse.shape
    fine = np.empty((*batch, 2 * a - 1, 2 * b - 1, 2 * c - 1), dtype=np.float32)
    fine[..., ::2, ::2, ::2] = coarse
    sizes = (a, b, c)
    for parity in itertools.product((0, 1), repeat=3):
        odd_axes = [axis for axis in range(3) if parity[axis]]
        odd = len(odd_axes)
        if odd == 0:
            continue
        high: np.ndarray | None = None
        low: np.ndarray | None = None
        for shift in itertools.product((0, 1), repeat=odd):
            index = [slice(None)] * 3
            for axis, offset in zip(odd_axes, shift):
                index[axis] = slice(offset, offset + sizes[axis] - 1)
            neighbour = coarse[(Ellipsis,) + tuple(index)]
            if high is None or low is None:
                high, low = neighbour.copy(), neighbour.copy()
            else:
                np.maximum(high, neighbour, out=high)
                np.minimum(low, neighbour, out=low)
        high -= reach * np.sqrt(odd)
        low += reach * np.sqrt(odd)
        positive, negative = high > 0, low < 0
        value = np.where(positive, high, low)
        value[(positive == negative) | (np.abs(value) < keep)] = np.nan
        fine[(Ellipsis,) + tuple(slice(p, None, 2) for p in parity)] = value
    return fine


def _refine_lattice(sdf: SdfFunction, lo: np.ndarray, voxel: float, chunk_points: int, device: torch.device,
                    values: np.ndarray, exact: np.ndarray, step: int, lipschitz: float,
                    start: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """The whole lattice of ``step`` voxels from that of ``2 * step``, evaluating unknown points.

    A bound is kept only if it is at least the slope bound times half a cell diagonal of this
    lattice; on a fitted SIREN, whose values stay small far from the surface, this halved the
    points evaluated at 256^3 (6% instead of 10% of the grid with a slope bound of 1).
    """
    reach = lipschitz * step * voxel
    fine = _infer_finer(values, reach, 0.5 * np.sqrt(3.0) * reach)
    unknown = np.isnan(fine)
    index = np.argwhere(unknown) * step
    fine[unknown] = _evaluate_points(sdf, lo, voxel, index, chunk_points, device, start)
    fine_exact = unknown
    fine_exact[::2, ::2, ::2] |= exact
    return fine, fine_exact, len(index)


def _cube_lattices(lattice: np.ndarray, cubes: np.ndarray, half: int) -> np.ndarray:
    """The ``(half + 1)^3`` points of ``lattice`` (step 2) inside each cube (block coordinates)."""
    ramp = np.arange(half + 1)
    x, y, z = (cubes[:, axis, None] * half + ramp for axis in range(3))
    return lattice[x[:, :, None, None], y[:, None, :, None], z[:, None, None, :]]


def _crossing_ends_to_evaluate(values: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """Points that end a grid edge with a sign change and were not evaluated (marching cubes puts
    a vertex on that edge from both end values)."""
    positive, negative = values > 0, values < 0
    need = np.zeros(values.shape, dtype=bool)
    for axis in (1, 2, 3):
        first = (slice(None),) * axis + (slice(None, -1),)
        second = (slice(None),) * axis + (slice(1, None),)
        crossing = (positive[first] != positive[second]) | (negative[first] != negative[second])
        need[first] |= crossing
        need[second] |= crossing
    need &= ~exact
    return need


def _open_faces(values: np.ndarray, cubes: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Cubes not yet listed that a listed cube's surface runs into through a shared face."""
    found = []
    for axis in range(3):
        for side, step in ((0, -1), (-1, 1)):
            face = values[(slice(None),) * (axis + 1) + (side,)]
            flat = face.reshape(len(face), -1)
            crossing = (flat > 0).any(axis=1) & (flat <= 0).any(axis=1)
            neighbour = cubes[crossing].copy()
            neighbour[:, axis] += step
            inside = (neighbour >= 0).all(axis=1) & (neighbour < table.shape).all(axis=1)
            neighbour = neighbour[inside]
            found.append(neighbour[table[tuple(neighbour.T)] < 0])
    return np.unique(np.concatenate(found), axis=0)


def evaluate_band(
    sdf: SdfFunction,
    lo: np.ndarray,
    counts: np.ndarray,
    voxel: float,
    chunk_points: int,
    device: torch.device,
    block: int = BAND_BLOCK,
    lipschitz: float = BAND_LIPSCHITZ,
    start: np.ndarray | None = None,
) -> tuple[BandBlocks, float]:
    """The grid of :func:`evaluate_grid`, evaluated only where marching cubes needs values.

    Coarse to fine: the lattice of ``block`` voxels is evaluated, then each lattice of half the
    step: a new point whose sign follows from its coarse neighbours and the slope bound
    ``lipschitz`` (:func:`_infer_finer`) is not evaluated. The finest grid is built only in
    cubes of ``block`` voxels where some point's sign is not settled that way; there every
    unsettled point, and every end of an edge with a sign change, is evaluated, so marching
    cubes sees the values of the dense grid on each edge it puts a vertex on. A cube the surface
    leaves through a face is added to the listed cubes. Returns the cubes and the share of grid
    points evaluated.

    With ``start``, the grid is a block of a larger lattice with the same ``lo`` and ``voxel``,
    whose point ``start`` is the block's first: its points are evaluated at the lattice's very
    coordinates, so that two blocks sharing a face see the same points there.
    """
    n = np.asarray(counts, dtype=np.int64)
    cells = np.maximum((n + block - 2) // block, 1)
    half = block // 2
    padded = cells * block + 1
    step = block
    index = np.indices(tuple(cells + 1)).reshape(3, -1).T * step
    values = _evaluate_points(sdf, lo, voxel, index, chunk_points, device, start).reshape(tuple(cells + 1))
    exact = np.ones(values.shape, dtype=bool)
    evaluated = len(index)
    while step > 2:
        step //= 2
        values, exact, count = _refine_lattice(sdf, lo, voxel, chunk_points, device, values, exact, step,
                                               lipschitz, start)
        evaluated += count

    # a step-2 cell whose corners all exceed the bound over the longest reach (sqrt(3) voxels)
    # with one sign settles every grid point in it: cubes made only of such cells are left out
    reach = lipschitz * np.sqrt(3.0) * voxel
    m = values.shape
    settled_positive = np.ones([s - 1 for s in m], dtype=bool)
    settled_negative = np.ones([s - 1 for s in m], dtype=bool)
    for dx, dy, dz in itertools.product((0, 1), repeat=3):
        corner = values[dx : dx + m[0] - 1, dy : dy + m[1] - 1, dz : dz + m[2] - 1]
        settled_positive &= corner > reach
        settled_negative &= corner < -reach
    settled = (settled_positive | settled_negative).reshape(cells[0], half, cells[1], half, cells[2], half)
    pending = np.argwhere(~settled.all(axis=(1, 3, 5)))

    table = np.full(tuple(cells), -1, dtype=np.int64)
    cubes = np.zeros((0, 3), dtype=np.int64)
    fine = np.zeros((0, block + 1, block + 1, block + 1), dtype=np.float32)
    fine_exact = np.zeros(fine.shape, dtype=bool)
    done_keys, done_values = [], []

    def linear(points: np.ndarray) -> np.ndarray:
        return (points[:, 0] * padded[1] + points[:, 1]) * padded[2] + points[:, 2]

    def evaluate_unique(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        nonlocal evaluated
        where = np.nonzero(mask)
        points = cubes[where[0]] * block + np.stack(where[1:], axis=1)
        keys, inverse = np.unique(linear(points), return_inverse=True)
        grid = np.stack(np.unravel_index(keys, tuple(padded)), axis=1)
        result = _evaluate_points(sdf, lo, voxel, grid, chunk_points, device, start)
        evaluated += len(keys)
        done_keys.append(keys)
        done_values.append(result)
        return grid, result, inverse

    while len(pending):
        new_fine = _infer_finer(_cube_lattices(values, pending, half), lipschitz * voxel)
        new_exact = np.zeros(new_fine.shape, dtype=bool)
        new_exact[:, ::2, ::2, ::2] = _cube_lattices(exact, pending, half)
        if done_keys:  # points that cubes listed earlier evaluated
            keys = np.concatenate(done_keys)
            order = np.argsort(keys)
            keys, known = keys[order], np.concatenate(done_values)[order]
            grid = (pending[:, None, :] * block + np.indices((block + 1,) * 3).reshape(3, -1).T[None]).reshape(-1, 3)
            flat = linear(grid)
            at = np.minimum(np.searchsorted(keys, flat), len(keys) - 1)
            hit = keys[at] == flat
            new_fine.reshape(-1)[hit] = known[at[hit]]
            new_exact.reshape(-1)[hit] = True
        table[tuple(pending.T)] = np.arange(len(cubes), len(cubes) + len(pending))
        cubes = np.concatenate([cubes, pending])
        fine = np.concatenate([fine, new_fine])
        fine_exact = np.concatenate([fine_exact, new_exact])

        unknown = np.isnan(fine)
        if unknown.any():  # every copy of a shared point is unknown alike: one value for all
            _, result, inverse = evaluate_unique(unknown)
            fine[unknown] = result[inverse]
            fine_exact |= unknown
        while True:
            need = _crossing_ends_to_evaluate(fine, fine_exact)
            if not need.any():
                break
            grid, result, _ = evaluate_unique(need)
            _set_shared(fine, fine_exact, table, block, grid, result)
        pending = _open_faces(fine, cubes, table)

    blocks = BandBlocks(origins=cubes * block, values=fine, counts=n)
    return blocks, evaluated / float(np.prod(n))


def _set_shared(values: np.ndarray, exact: np.ndarray, table: np.ndarray, block: int,
                grid: np.ndarray, result: np.ndarray) -> None:
    """Write evaluated grid points into every listed cube that holds them (up to 8 on corners)."""
    for shift in itertools.product((0, 1), repeat=3):
        cube = grid // block - np.asarray(shift)
        ok = ((np.asarray(shift) == 0) | (grid % block == 0)).all(axis=1)
        ok &= (cube >= 0).all(axis=1) & (cube < table.shape).all(axis=1)
        slot = np.full(len(grid), -1, dtype=np.int64)
        slot[ok] = table[tuple(cube[ok].T)]
        ok = slot >= 0
        local = grid[ok] - cube[ok] * block
        values[slot[ok], local[:, 0], local[:, 1], local[:, 2]] = result[ok]
        exact[slot[ok], local[:, 0], local[:, 1], local[:, 2]] = True


def marching_cubes_blocks(blocks: BandBlocks, lo: np.ndarray, voxel: float) -> tuple[np.ndarray, np.ndarray]:
    """Zero level set of a narrow band (:func:`evaluate_band`) in the box's coordinates: the
    surface of :func:`band_surface_grid` at ``lo + voxel * (i, j, k)``. Empty arrays when nothing
    crosses zero."""
    points, faces = band_surface_grid(blocks, voxel)
    return np.asarray(lo, dtype=np.float64) + voxel * points, faces


def band_surface_grid(blocks: BandBlocks, voxel: float) -> tuple[np.ndarray, np.ndarray]:
    """Zero level set of a narrow band, one cube at a time, vertices in grid units (float64).

    A vertex on a face shared by two cubes comes out of both with the same coordinates in grid
    units (the same two values interpolated, the same integer offset added), so the pieces are
    welded by exact equality (:func:`weld_exact`) into one mesh, as :func:`marching_cubes_volume`
    gives for the dense grid. Empty arrays when nothing crosses zero.

    A grid value of exactly zero is common (a network's output is a difference of large terms,
    rounded to about 2^-15), and marching cubes puts one vertex per crossing edge on that very
    point: copies that could not be told apart for welding. Values are therefore kept at least
    ``1e-5`` voxel from zero on their side (zero is on the negative side, as in marching cubes),
    which changes no sign and moves those vertices apart by about ``1e-5`` voxel over the slope.
    """
    floor = np.float32(1e-5 * voxel)
    last = blocks.counts - 1
    verts, faces, on_face = [], [], []
    total = 0
    for origin, values in zip(blocks.origins, blocks.values):
        extent = np.minimum(blocks.side, last - origin) + 1
        cube = values[: extent[0], : extent[1], : extent[2]]
        if not crosses_zero(cube):
            continue
        cube = np.where(cube > 0.0, np.maximum(cube, floor), np.minimum(cube, -floor))
        v, f, _, _ = marching_cubes(cube, level=0.0)
        verts.append(v.astype(np.float64) + origin)
        faces.append(f.astype(np.int64) + total)
        on_face.append(((v == 0) | (v == extent - 1)).any(axis=1))
        total += len(v)
    if not verts:
        return empty_mesh()
    return weld_exact(np.concatenate(verts), np.concatenate(faces), np.flatnonzero(np.concatenate(on_face)))


def weld_exact(points: np.ndarray, faces: np.ndarray, candidates: np.ndarray,
               keys: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``points`` with copies merged into their first, ``faces`` renumbered to match. Copies are
    rows of ``candidates`` (indices into ``points``; the other rows are kept as they are, in
    order) with equal ``keys`` rows (one per candidate; default: the points themselves)."""
    keys = points[candidates] if keys is None else keys
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    target = np.arange(len(points))
    target[candidates] = candidates[first][inverse.reshape(-1)]
    keep = target == np.arange(len(points))
    number = np.cumsum(keep) - 1
    return points[keep], number[target][faces]
