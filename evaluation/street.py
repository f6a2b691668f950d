"""A procedural street scene, its survey from above, and the recall of its small features.

The scene is a triangle mesh built from a seed with NumPy alone: a ground plane (the street, of
length ``length`` along x and width ``width`` along y, at z = 0) and a row of box houses on each
side of it, fronts on the street's edges. Every roof carries a chimney, and some roofs a parapet
along their edge (four thin boxes). Every box is a closed surface with outward faces,
counter-clockwise seen from outside; each face carries the label of the part it belongs to.

:func:`survey` samples the faces a LiDAR flight sees (all but undersides), adds Gaussian noise
and moves the points far from the origin, as georeferenced (UTM) coordinates are.
:func:`small_feature_recall` says how much of the chimneys and parapets a reconstruction kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from .metrics import face_normals, sample_surface

GROUND, HOUSE, CHIMNEY, PARAPET = 0, 1, 2, 3
"""Face labels: the part of the scene a face belongs to."""
SMALL_FEATURES = (CHIMNEY, PARAPET)
UNDERSIDE_Z = -0.2
"""Faces whose unit normal has z below this face downwards: a survey from above does not see them."""
UTM_OFFSET = (500000.0, 5400000.0, 200.0)
"""Where :func:`survey` puts the scene's origin, like an easting, northing and height in metres."""
PARAPET_HEIGHT, PARAPET_THICKNESS = 0.3, 0.2

BOX_FACES = np.array([
    [0, 2, 1], [0, 3, 2],  # bottom, z = lo
    [4, 5, 6], [4, 6, 7],  # top, z = hi
    [0, 1, 5], [0, 5, 4],  # y = lo
    [2, 3, 7], [2, 7, 6],  # y = hi
    [1, 2, 6], [1, 6, 5],  # x = hi
    [3, 0, 4], [3, 4, 7],  # x = lo
], dtype=np.int64)
"""Triangles of a box over the corners :func:`box` lists, counter-clockwise seen from outside."""


@dataclass(frozen=True)
class StreetScene:
    """A street as one triangle mesh; per face the part (``labels``) and box (``parts``) it belongs to."""

    vertices: np.ndarray
    """(V, 3) float64, metres."""
    faces: np.ndarray
    """(F, 3) int64."""
    labels: np.ndarray
    """(F,) int8: ``GROUND``, ``HOUSE``, ``CHIMNEY`` or ``PARAPET``."""
    parts: np.ndarray
    """(F,) int64: the box a face belongs to, counted from 0; -1 for the ground."""

    @property
    def small_feature(self) -> np.ndarray:
        """(F,) bool: the chimney and parapet faces a survey from above sees (no undersides)."""
        return np.isin(self.labels, SMALL_FEATURES) & seen_from_above(self.vertices, self.faces)

    def shifted(self, offset: np.ndarray) -> StreetScene:
        """The same scene moved by ``offset`` (3,)."""
        return StreetScene(self.vertices + np.asarray(offset, dtype=np.float64), self.faces, self.labels, self.parts)

    def without(self, labels: tuple[int, ...]) -> StreetScene:
        """The scene less the faces of the parts labelled ``labels`` (vertices kept as they are)."""
        keep = ~np.isin(self.labels, labels)
        return StreetScene(self.vertices, self.faces[keep], self.labels[keep], self.parts[keep])


def box(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The eight corners (8, 3) of the axis-aligned box from ``lo`` to ``hi``: the bottom four
    counter-clockwise seen from above, starting at ``lo``, then the top four likewise."""
    (x0, y0, z0), (x1, y1, z1) = lo, hi
    return np.array([[x0, y0, z0], [x1, y0, z0], [x1, y1, z0], [x0, y1, z0],
                     [x0, y0, z1], [x1, y0, z1], [x1, y1, z1], [x0, y1, z1]], dtype=np.float64)


def seen_from_above(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) bool: faces whose normal z is at least ``UNDERSIDE_Z`` (roofs, ground and walls)."""
    return face_normals(np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64))[:, 2] >= UNDERSIDE_Z


def street_scene(seed: int = 0, length: float = 40.0, width: float = 10.0, houses: int = 6) -> StreetScene:
    """A street of ``houses`` houses on each side (footprint 4-6 m a side, 4-9 m high), each with a
    chimney (0.5-0.8 m wide, 1.0-1.5 m high) and, on about half of them, a parapet (0.3 m high,
    0.2 m thick) along the roof's edge; the same ``seed`` gives the same scene."""
    rng = np.random.default_rng(seed)
    corners: list[np.ndarray] = [np.array([[0, -width / 2, 0], [length, -width / 2, 0],
                                           [length, width / 2, 0], [0, width / 2, 0]], dtype=np.float64)]
    faces: list[np.ndarray] = [np.array([[0, 1, 2], [0, 2, 3]], dtype=np.int64)]
    labels: list[int] = [GROUND, GROUND]
    parts: list[int] = [-1, -1]
    used = 4

    def add_box(lo: np.ndarray, hi: np.ndarray, label: int) -> None:
        nonlocal used
        corners.append(box(lo, hi))
        faces.append(BOX_FACES + used)
        labels.extend([label] * len(BOX_FACES))
        parts.extend([len(corners) - 2] * len(BOX_FACES))
        used += 8

    for side in (-1.0, 1.0):
        frontages = rng.uniform(4.0, 6.0, houses)
        gap = max(length - frontages.sum(), 0.0) / (houses + 1)
        x = gap
        parapets = rng.random(houses) < 0.5
        parapets[rng.integers(houses)] = True
        for frontage, parapet in zip(frontages, parapets):
            depth, height = rng.uniform(4.0, 6.0), rng.uniform(4.0, 9.0)
            y_near, y_far = side * width / 2, side * (width / 2 + depth)
            lo = np.array([x, min(y_near, y_far), 0.0])
            hi = np.array([x + frontage, max(y_near, y_far), height])
            add_box(lo, hi, HOUSE)
            margin = PARAPET_THICKNESS if parapet else 0.0
            if parapet:
                top = height + PARAPET_HEIGHT
                t = PARAPET_THICKNESS
                add_box(np.array([lo[0], lo[1], height]), np.array([hi[0], lo[1] + t, top]), PARAPET)
                add_box(np.array([lo[0], hi[1] - t, height]), np.array([hi[0], hi[1], top]), PARAPET)
                add_box(np.array([lo[0], lo[1] + t, height]), np.array([lo[0] + t, hi[1] - t, top]), PARAPET)
                add_box(np.array([hi[0] - t, lo[1] + t, height]), np.array([hi[0], hi[1] - t, top]), PARAPET)
            size = rng.uniform(0.5, 0.8, 2)
            rise = rng.uniform(1.0, 1.5)
            room = hi[:2] - lo[:2] - 2 * (margin + 0.3) - size
            corner = lo[:2] + margin + 0.3 + rng.random(2) * room
            add_box(np.array([*corner, height]), np.array([*(corner + size), height + rise]), CHIMNEY)
            x += frontage + gap
    return StreetScene(np.concatenate(corners), np.concatenate(faces),
                       np.array(labels, dtype=np.int8), np.array(parts, dtype=np.int64))


def survey(
    scene: StreetScene, count: int, noise: float = 0.02, seed: int = 0,
    offset: tuple[float, float, float] = UTM_OFFSET,
) -> tuple[np.ndarray, StreetScene]:
    """A LiDAR survey of ``scene`` from above: ``count`` points (float64, no normals) area-uniform
    on the faces it sees (:func:`seen_from_above`), moved by Gaussian noise of ``noise`` metres and
    then by ``offset``; and the scene moved by the same ``offset``, the truth to score against."""
    seen = seen_from_above(scene.vertices, scene.faces)
    rng = np.random.default_rng(seed)
    points, _ = sample_surface(scene.vertices, scene.faces[seen], count, rng)
    if noise > 0:
        points = points + rng.normal(scale=noise, size=points.shape)
    shift = np.asarray(offset, dtype=np.float64)
    return points + shift, scene.shifted(shift)


def small_feature_recall(
    truth_vertices: np.ndarray, truth_faces: np.ndarray, feature_face_mask: np.ndarray,
    recon_vertices: np.ndarray, recon_faces: np.ndarray, tolerance: float = 0.15,
    samples: int = 20_000, max_dense: int = 3_000_000, seed: int = 0,
) -> float:
    """Share of the truth's small features the reconstruction kept: of ``samples`` points
    area-uniform on the truth faces ``feature_face_mask`` marks, those within ``tolerance`` (the
    meshes' units) of the reconstruction's surface, which is sampled densely enough to put about
    50 samples in a disc of that radius (at most ``max_dense``). 0 for an empty reconstruction."""
    truth_faces = np.asarray(truth_faces, dtype=np.int64)
    recon_faces = np.asarray(recon_faces, dtype=np.int64)
    if len(recon_faces) == 0:
        return 0.0
    rng = np.random.default_rng(seed)
    features, _ = sample_surface(truth_vertices, truth_faces[np.asarray(feature_face_mask, dtype=bool)], samples, rng)
    recon_vertices = np.asarray(recon_vertices, dtype=np.float64)
    a, b, c = (recon_vertices[recon_faces[:, i]] for i in range(3))
    area = float(0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum())
    dense_count = int(min(max_dense, max(10_000, 16.0 * area / tolerance**2)))
    dense, _ = sample_surface(recon_vertices, recon_faces, dense_count, rng)
    origin = features.mean(axis=0)
    gaps, _ = cKDTree(dense - origin).query(features - origin, distance_upper_bound=tolerance)
    return float((gaps <= tolerance).mean())
