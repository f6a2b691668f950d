"""Meshing a tiled field block by block, where its tiles trained: the hook between
:class:`~.tiled_field.TiledField` and whatever meshes the blocks (in turn in this process, or side
by side elsewhere).

The blend's lattice is cut into blocks of about a tile's edge (:mod:`~..meshing.lattice_blocks`).
A block's field is the blend of the tiles that reach it, so a :class:`BlockInput` carries those
tiles' networks as NumPy weights with their place in the blend: plain data that can travel to
another process. A *block mesher* gets every block and yields each block's surface as it is
done, in any order; the field joins them in the blocks' order, so the mesh does not depend on
where or in which order the blocks were meshed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ..config.reconstruction import ModelConfig
from ..errors import Cancelled
from ..field.model import FoldedSiren, Siren, numpy_weights, siren_from_weights
from ..meshing.lattice_blocks import BAND_BLOCK, block_side, mesh_block, split_lattice
from .blend import BlendedSdf, BlendTile, device_function


@dataclass(frozen=True)
class BlendTileState:
    """A :class:`~.blend.BlendTile` whose function is a SIREN, as plain data: the network's weights
    and shape, and the tile's place in the blend (see :class:`~.blend.BlendTile`)."""

    weights: dict[str, np.ndarray]
    model: ModelConfig
    core_lo: np.ndarray
    core_hi: np.ndarray
    margin: float
    scale: float
    shift: np.ndarray
    sign: float
    trained: float

    @classmethod
    def of(cls, model: Siren, tile: BlendTile) -> BlendTileState:
        """The state of ``tile``, whose function is ``model``'s (weights copied to the CPU)."""
        return cls(numpy_weights(model), model.config, tile.core_lo, tile.core_hi, tile.margin, tile.scale, tile.shift,
                   tile.sign, tile.trained)

    def blend_tile(self, device: torch.device) -> BlendTile:
        """The tile again, its network on ``device``."""
        function = FoldedSiren(siren_from_weights(self.model, self.weights).to(device).eval())
        return BlendTile(function=device_function(function, device), core_lo=self.core_lo,
                         core_hi=self.core_hi, margin=self.margin, scale=self.scale, shift=self.shift,
                         sign=self.sign, trained=self.trained)


@dataclass(frozen=True)
class BlockInput:
    """One block of the blend's lattice to mesh; plain data that can travel to another process."""

    number: int
    """The block, from 0, in the lattice's C order (of the blocks any tile reaches)."""
    start: np.ndarray
    """int64 (3,): the block's first lattice point."""
    counts: np.ndarray
    """int64 (3,): its points per axis."""
    lo: np.ndarray
    """float64 (3,): the lattice's first point (lattice frame)."""
    voxel: float
    tiles: tuple[BlendTileState, ...]
    """The tiles that reach the block, in the blend's order."""
    chunk_points: int
    band: bool
    """Narrow-band meshing (``mesh.narrow_band``), else the dense grid."""

    def mesh(self, device: torch.device) -> BlockPiece:
        """The block's surface, its networks evaluated on ``device``."""
        sdf = BlendedSdf([tile.blend_tile(device) for tile in self.tiles])
        points, faces = mesh_block(sdf, self.lo, self.voxel, self.start, self.counts, self.chunk_points, device,
                                   self.band)
        return BlockPiece(self.number, points, faces)


@dataclass(frozen=True)
class BlockPiece:
    """One block's surface: vertices in the lattice's grid units (float64), faces (int64)."""

    number: int
    points: np.ndarray
    faces: np.ndarray


class BlockMesher(Protocol):
    """Meshes a tiled field's blocks; yields each :class:`BlockPiece` as it is done, in any order.
    ``device`` is where the tiles' fields are (a mesher that runs the blocks elsewhere uses the
    device it has there). It raises :class:`~siren_recon.engine.errors.Cancelled` once
    ``should_cancel()`` is true, and stops its outstanding blocks when closed early."""

    def __call__(self, blocks: Sequence[BlockInput], device: torch.device,
                 should_cancel: Callable[[], bool] | None = None) -> Iterator[BlockPiece]: ...


def mesh_in_turn(blocks: Sequence[BlockInput], device: torch.device,
                 should_cancel: Callable[[], bool] | None = None) -> Iterator[BlockPiece]:
    """The default :class:`BlockMesher`: each block in this process, one after the other, in order."""
    for block in blocks:
        if should_cancel is not None and should_cancel():
            raise Cancelled(f"cancelled while meshing, before block {block.number + 1} of {len(blocks)}")
        yield block.mesh(device)


def block_mesher_of(tile_runner: object) -> BlockMesher:
    """Where a tiled fit's blocks are meshed: the tile runner's own ``mesh_blocks`` where it has
    one (a runner that trains tiles on other workers meshes there too), else in this process."""
    mesher = getattr(tile_runner, "mesh_blocks", None)
    return mesher if callable(mesher) else mesh_in_turn


def plan_blocks(tiles: Sequence[BlendTileState], lo: np.ndarray, counts: np.ndarray, voxel: float,
                edge: float, chunk_points: int, band: bool) -> list[BlockInput]:
    """The blocks of the lattice ``lo + voxel * (i, j, k)`` (``counts`` points a side), about a
    tile's ``edge`` a side, that any tile reaches, each with the tiles that reach it: the blend is
    :data:`~.blend.EMPTY` elsewhere, with no surface."""
    lo = np.asarray(lo, dtype=np.float64)
    reach_lo = np.array([tile.core_lo - tile.margin for tile in tiles]).reshape(-1, 3)
    reach_hi = np.array([tile.core_hi + tile.margin for tile in tiles]).reshape(-1, 3)
    blocks: list[BlockInput] = []
    for start, count in split_lattice(counts, block_side(edge / voxel)):
        # the narrow band may evaluate up to one of its cubes past the lattice's last point
        box_lo = lo + voxel * (start - 1)
        box_hi = lo + voxel * (start + count - 1 + BAND_BLOCK)
        reaches = np.all((reach_lo <= box_hi) & (reach_hi >= box_lo), axis=1)
        reaching = tuple(tiles[number] for number in np.flatnonzero(reaches))
        if reaching:
            blocks.append(BlockInput(len(blocks), start, count, lo, voxel, reaching, chunk_points, band))
    return blocks

