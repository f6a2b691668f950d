"""Where a tiled fit's tiles train: the hook between :func:`~.tiled_field.fit_tiles` and whatever
runs the tiles (in turn in this process, or side by side elsewhere).

A *tile runner* gets every tile's :class:`TileInput` and yields each tile's :class:`FinishedTile`
as it ends, in any order. :func:`run_in_turn` is the default: the tiles one after the other, in
this process. A runner that trains tiles in other processes sends a :class:`TileInput` there
(NumPy arrays and the frozen config) and brings each field back as a :class:`FieldState`.
Progress comes back through :class:`TileProgress`, which counts the steps done over all tiles.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ..analysis.normalization import Normalization
from ..config.reconstruction import ReconstructionConfig
from ..events import ProgressEvent
from ..field.model import numpy_weights, siren_from_weights
from ..field.sdf_field import SdfField
from ..fitting.trainer import ProgressCallback

Trainer = Callable[..., tuple[SdfField, dict[str, float]]]
""":func:`~siren_recon.engine.pipeline.train_field`: one field for one cloud."""


@dataclass(frozen=True)
class TileInput:
    """What one tile's field trains on; plain data that can travel to another process."""

    number: int
    """The tile, from 0, in the plan's order."""
    points: np.ndarray
    """float64 (N, 3): the cloud's points in the tile's core and band, input coordinates."""
    normals: np.ndarray | None
    config: ReconstructionConfig
    options: dict[str, object] = dataclasses.field(default_factory=dict)
    """The trainer's further keyword arguments (``working_points``)."""

    def train(self, trainer: Trainer, on_progress: ProgressCallback | None,
              should_cancel: Callable[[], bool] | None) -> tuple[SdfField, dict[str, float]]:
        """The tile's field and final losses from ``trainer`` (no previews: the tiled fit makes them)."""
        return trainer(self.points, self.normals, self.config, on_progress, None, should_cancel, **self.options)


@dataclass(frozen=True)
class FinishedTile:
    """One tile's trained field and final losses, as a runner yields it."""

    number: int
    field: SdfField
    losses: dict[str, float]


class TileRunner(Protocol):
    """Trains the tiles of a tiled fit; yields each tile's :class:`FinishedTile` as it ends.

    ``progress(number)`` is the callback for tile ``number``'s progress events, counted in the
    tile's own steps (the runner may call it from one thread at a time, in any order of tiles).
    The runner raises :class:`~siren_recon.engine.errors.Cancelled` once ``should_cancel()`` is
    true, and stops its outstanding tiles when closed early.
    """

    def __call__(self, tiles: Sequence[TileInput], trainer: Trainer,
                 progress: Callable[[int], ProgressCallback | None],
                 should_cancel: Callable[[], bool] | None) -> Iterator[FinishedTile]: ...


def run_in_turn(tiles: Sequence[TileInput], trainer: Trainer, progress: Callable[[int], ProgressCallback | None],
                should_cancel: Callable[[], bool] | None) -> Iterator[FinishedTile]:
    """The default :class:`TileRunner`: each tile in this process, one after the other, in order."""
    for tile in tiles:
        field, losses = tile.train(trainer, progress(tile.number), should_cancel)
        yield FinishedTile(tile.number, field, losses)


class TileProgress:
    """The progress of all tiles as one count: the steps done over all tiles, out of ``tiles * steps``.

    A tile's steps are the most it has reported (a tile trained again after its worker died counts
    from where it had got, until it gets further), and all of them once it has finished, so the
    count reported never goes back nor past the total, whatever order the tiles run in. Tiles run
    in turn see exactly ``number * steps + step``. The ETA divides the steps left by the reporting
    tile's speed times the tiles training now (started, not finished; at least one).
    """

    def __init__(self, on_progress: ProgressCallback | None, tiles: int, steps: int) -> None:
        self.on_progress = on_progress
        self.tiles = tiles
        self.steps = steps
        self.done = [0] * tiles
        self.lock = threading.Lock()

    @property
    def total(self) -> int:
        return self.tiles * self.steps

    @property
    def count(self) -> int:
        """Steps done over all tiles so far."""
        with self.lock:
            return sum(self.done)

    def finished(self, number: int) -> None:
        """Tile ``number`` has all its steps."""
        with self.lock:
            self.done[number] = self.steps

    def tile(self, number: int) -> ProgressCallback | None:
        """The callback for tile ``number``'s events (``None`` when nobody listens)."""
        if self.on_progress is None:
            return None
        report = self.on_progress

        def forward(event: ProgressEvent) -> None:
            with self.lock:
                self.done[number] = max(self.done[number], min(event.iteration, self.steps))
                count = sum(self.done)
                running = max(1, sum(1 for done in self.done if 0 < done < self.steps))
            speed = event.iterations_per_second * running
            eta = (self.total - count) / speed if speed > 0 else event.eta_seconds
            report(dataclasses.replace(event, iteration=count, total=self.total, eta_seconds=eta,
                                       tile=number + 1, tiles=self.tiles))

        return forward


@dataclass(frozen=True)
class FieldState:
    """An :class:`SdfField` as plain data that pickles without torch: the network's weights as NumPy
    arrays and every other part of the field as it is (its normalisation, config, mode, box, support
    points and noise level). :meth:`field` rebuilds it on the receiving side."""

    weights: dict[str, np.ndarray]
    parts: dict[str, object]
    """The field's other dataclass fields by name."""

    @classmethod
    def of(cls, field: SdfField) -> FieldState:
        """``field``'s state (weights copied to the CPU)."""
        weights = numpy_weights(field.model)
        parts = {part.name: getattr(field, part.name) for part in dataclasses.fields(field) if part.name != "model"}
        return cls(weights, parts)

    def field(self, device: torch.device | str = "cpu") -> SdfField:
        """The field again, its network on ``device`` in eval mode."""
        config = self.parts["config"]
        assert isinstance(config, ReconstructionConfig) and isinstance(self.parts["normalization"], Normalization)
        model = siren_from_weights(config.model, self.weights)
        model.to(device).eval()
        return SdfField(model=model, **self.parts)  # type: ignore[arg-type]
