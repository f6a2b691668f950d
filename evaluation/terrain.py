"""A height-field terrain: an open test surface z = f(x, y) over a square, as a triangle mesh.

The height is a sum of a few sinusoids of random direction, wavelength and phase, so the surface
is smooth, has hills and valleys, and is the same for the same seed.
"""

from __future__ import annotations

import numpy as np

from siren_recon.engine.errors import InputError


def height(x: np.ndarray, y: np.ndarray, seed: int = 0, waves: int = 6, relief: float = 0.12) -> np.ndarray:
    """Height at (x, y) of the terrain over [-1, 1]²; its peak-to-peak is about ``2 * relief``."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, np.pi, waves)
    frequency = rng.uniform(1.0, 4.0, waves)
    phase = rng.uniform(0, 2 * np.pi, waves)
    amplitude = relief / np.sqrt(waves) / np.sqrt(frequency)
    along = np.multiply.outer(x, np.cos(angle)) + np.multiply.outer(y, np.sin(angle))
    return np.sum(amplitude * np.sin(np.pi * frequency * along + phase), axis=-1)


def terrain_mesh(resolution: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The height field over [-1, 1]² on a ``resolution`` × ``resolution`` vertex grid, two triangles a cell."""
    if resolution < 2:
        raise InputError("a terrain needs at least 2 vertices along each side", "bad_value")
    s = np.linspace(-1.0, 1.0, resolution)
    x, y = np.meshgrid(s, s, indexing="xy")
    vertices = np.stack([x.ravel(), y.ravel(), height(x.ravel(), y.ravel(), seed)], axis=1)
    index = np.arange(resolution * resolution).reshape(resolution, resolution)
    a, b = index[:-1, :-1].ravel(), index[:-1, 1:].ravel()
    c, d = index[1:, :-1].ravel(), index[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, d], axis=1), np.stack([a, d, c], axis=1)])
    return vertices, faces
