"""A lattice meshed block by block (engine/meshing/lattice_blocks): the blocks cover the lattice,
and their surfaces weld into the whole lattice's mesh, closed, even where a shared face's values
differ in the last bits between the two blocks that evaluate it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from siren_recon.engine.meshing import BAND_BLOCK, extract_mesh, grid_shape
from siren_recon.engine.meshing.lattice_blocks import join_blocks, mesh_block, split_lattice
from siren_recon.engine.meshing.narrow_band import weld_exact

CPU = torch.device("cpu")
LO, HI = np.array([-1.0, -1.0, -1.0]), np.array([1.0, 1.0, 0.9])


def bumpy_sphere(x: torch.Tensor) -> torch.Tensor:
    """A sphere with bumps, whose value also carries a part of about 1e-7 that depends on the
    batch it is computed in (as a network's last bits do)."""
    bumps = 0.04 * torch.sin(7 * x[:, 0]) * torch.sin(5 * x[:, 1]) * torch.sin(6 * x[:, 2])
    return x.norm(dim=1) - 0.62 + bumps + 1e-7 * (len(x) % 7)


def open_edges(faces: np.ndarray) -> int:
    """Edges that only one triangle uses (0 for a closed surface)."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return int((counts == 1).sum())


def test_the_blocks_cover_the_lattice_and_neighbours_share_a_plane():
    counts = np.array([70, 40, 17])
    blocks = split_lattice(counts, 32)
    assert [tuple(start) for start, _ in blocks[:4]] == [(0, 0, 0), (0, 32, 0), (32, 0, 0), (32, 32, 0)]
    covered = np.zeros(counts, dtype=int)
    for start, count in blocks:
        assert np.all(start % BAND_BLOCK == 0) and np.all(count <= 33) and np.all(count >= 2)
        covered[tuple(slice(s, s + c) for s, c in zip(start, count))] += 1
    assert covered.min() == 1  # every point in some block
    assert covered[32, 5, 5] == 2 and covered[64, 32, 5] == 4  # a shared plane, a shared edge
    with pytest.raises(ValueError, match="multiple of 16"):
        split_lattice(counts, 20)


@pytest.mark.parametrize("band", [True, False], ids=["narrow band", "dense"])
def test_blocks_weld_into_the_whole_lattices_closed_mesh(band):
    whole_v, whole_f = extract_mesh(bumpy_sphere, LO, HI, 100, 131072, CPU, band)
    counts, voxel = grid_shape(LO, HI, 100)
    blocks = split_lattice(counts, 32)
    assert len(blocks) == 4 * 4 * 3  # 100 x 100 x 96 points; the last block along each axis is thin
    pieces = [mesh_block(bumpy_sphere, LO, voxel, start, count, 5000, CPU, band) for start, count in blocks]
    assert sum(len(f) > 0 for _, f in pieces) >= 20  # the sphere crosses most blocks
    vertices, faces = join_blocks(pieces, LO, voxel)
    assert len(faces) == len(whole_f) and len(vertices) == len(whole_v)
    assert open_edges(faces) == 0 and open_edges(whole_f) == 0
    distance, _ = cKDTree(whole_v).query(vertices)
    assert distance.max() < 0.01 * voxel  # the batch-dependent part moves a vertex by far less than a voxel
    # the blocks did see a shared face's values differently: welding by coordinates leaves it open
    grid = [p for p, f in pieces if len(f)]
    offsets = np.cumsum([0] + [len(p) for p in grid])
    stacked = np.concatenate(grid)
    raw_faces = np.concatenate([f + o for (_, f), o in zip([(p, f) for p, f in pieces if len(f)], offsets)])
    _, exact_faces = weld_exact(stacked, raw_faces, np.arange(len(stacked)))
    assert open_edges(exact_faces) > 0


def test_a_lattice_with_no_surface_gives_an_empty_mesh():
    counts, voxel = grid_shape(LO, HI, 40)
    pieces = [mesh_block(lambda x: x.norm(dim=1) + 1.0, LO, voxel, start, count, 5000, CPU)
              for start, count in split_lattice(counts, 16)]
    vertices, faces = join_blocks(pieces, LO, voxel)
    assert vertices.shape == (0, 3) and faces.shape == (0, 3)
