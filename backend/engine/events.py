"""What the engine reports while it works: plain dataclasses, no torch, no transport."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ProgressEvent:
    """Loss terms and speed at one training step."""

    iteration: int
    """Steps done so far (1-based: the first step reports 1)."""
    total: int
    """Steps planned."""
    losses: dict[str, float]
    """Named loss terms, already weighted, plus ``total``."""
    iterations_per_second: float
    eta_seconds: float
    mode: str
    """``oriented`` or ``unoriented``: the mode actually used."""
    tile: int = 0
    """The tile being trained, from 1, in a tiled run (``tiles.size``); 0 when one field fits the
    whole cloud."""
    tiles: int = 0
    """How many tiles the run trains (0 when one field fits the whole cloud)."""


@dataclass(frozen=True)
class MeshEvent:
    """A mesh extracted during (preview) or after (final) training, in input coordinates."""

    iteration: int
    resolution: int
    vertices: np.ndarray
    """float64, shape (V, 3): float64 so that a cloud far from the origin (UTM coordinates) keeps
    its millimetres."""
    faces: np.ndarray
    """uint32, shape (F, 3), counter-clockwise seen from outside."""
    final: bool
    colours: np.ndarray | None = None
    """float32, shape (V, C): each vertex's colour from the input's nearest points, when the input
    had colours and the mesh has vertices; ``None`` otherwise."""


@dataclass
class ReconstructionResult:
    """The final mesh and what it took to make it."""

    vertices: np.ndarray
    """float64, shape (V, 3), in the input's coordinates (float64: see :class:`MeshEvent`)."""
    faces: np.ndarray
    """uint32, shape (F, 3), outward-facing."""
    mode: str
    """The mode used (``oriented`` or ``unoriented``), never ``auto``."""
    stats: dict[str, float] = field(default_factory=dict)
    """Final loss terms, point and triangle counts."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent in ``train`` and ``mesh``."""
    field: Any = None
    """The trained :class:`~siren_recon.engine.field.sdf_field.SdfField`, to save or re-mesh (not sent anywhere)."""
    colours: np.ndarray | None = None
    """float32, shape (V, C): each vertex's colour (see :class:`MeshEvent`), or ``None`` when the input had none."""
