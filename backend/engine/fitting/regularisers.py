"""Extra loss terms a fit carries besides its own, behind one small interface.

A regulariser may add points to each training step (:meth:`Regulariser.draw`), adds one weighted
term to the loss over the step's off-surface values and its own points (:meth:`Regulariser.loss`),
and may look at the current field every few steps to aim its points (:meth:`Regulariser.refresh`).
The :class:`~siren_recon.engine.fitting.sampling.PointSampler` holds them, in order, and the
trainer iterates over them; a new one is one class in one file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

Field = Callable[[torch.Tensor], torch.Tensor]
"""The field being fitted: (N, 3) points to (N,) values."""


@dataclass
class OffSurface:
    """What a regulariser sees of one step: the off-surface points and the field's values there."""

    box: torch.Tensor
    """(B, 3) points uniform in the cube."""
    near: torch.Tensor
    """(M, 3) jittered cloud points."""
    f_box: torch.Tensor
    """(B,) the field at every box point."""
    f_near: torch.Tensor
    """(M',) the field at the first M' <= M near points (those the step took a value at)."""
    extra: torch.Tensor
    """(K, 3) the points this regulariser added to the step (K may be 0)."""


class Regulariser(Protocol):
    name: str
    """Name of its loss term (a key of the loss dict and of the progress events)."""

    def draw(self, generator: torch.Generator) -> torch.Tensor:
        """(K, 3) points to add to the next step, drawn with ``generator``; (0, 3) for none."""
        ...

    def loss(self, model: Field, step: OffSurface) -> torch.Tensor:
        """The weighted term of one step (a scalar that autograd can differentiate)."""
        ...

    def refresh(self, model: Field) -> None:
        """Look at the field as it now is (every ``MINE_EVERY`` steps, no autograd needed)."""
        ...
