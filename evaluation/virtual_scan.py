"""Virtual range scans of a triangle mesh: what a scanner standing at a few places would record.

Each camera is a pinhole at a position, looking at the centre of the mesh's bounding box, with a
square field of view just wide enough for the mesh's bounding sphere. A grid of rays leaves the
camera and each ray keeps its first hit only, so surface hidden behind other surface, or facing
away from every camera, gets no points. The hits get scanner-like noise: Gaussian along the ray
with a sigma proportional to the range (``noise_share`` of the box diagonal at the distance of the
mesh centre), and a small Gaussian jitter across the ray.

``visible_truth`` is the part of the mesh those cameras see, as a mesh: the triangles that a ray
grid denser than the scan's hits, after the mesh is subdivided so that a triangle half in view
adds little unseen area.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from siren_recon.engine.errors import InputError

DISTANCE_SHARE = 1.5
"""Camera distance from the mesh centre, in box diagonals."""
FIELD_MARGIN = 1.05
"""Field of view beyond the bounding sphere's silhouette, as a factor on its half-angle's tangent."""
VISIBILITY_TOLERANCE = 1e-5
"""A ray reaching within this share of the box diagonal of its target has seen it (float32 rounding)."""


@dataclass(frozen=True)
class RangeScan:
    """Points of a virtual scan, and where they came from."""

    points: np.ndarray
    """(n, 3) noisy points: what the scanner records."""
    clean: np.ndarray
    """(n, 3) the exact first hits the noisy points were made from."""
    triangles: np.ndarray
    """(n,) the triangle each ray hit first."""
    views: np.ndarray
    """(n,) the camera each point came from."""


def camera_positions(
    vertices: np.ndarray, directions: np.ndarray, distance_share: float = DISTANCE_SHARE
) -> np.ndarray:
    """Cameras at ``distance_share`` box diagonals from the box centre, along each of ``directions``."""
    v = np.asarray(vertices, dtype=np.float64)
    d = np.atleast_2d(np.asarray(directions, dtype=np.float64))
    lengths = np.linalg.norm(d, axis=1, keepdims=True)
    if np.any(lengths <= 0):
        raise InputError("a camera direction is zero", "bad_camera")
    centre = (v.min(axis=0) + v.max(axis=0)) / 2
    diagonal = float(np.linalg.norm(np.ptp(v, axis=0)))
    return centre + d / lengths * distance_share * diagonal


def camera_rays(vertices: np.ndarray, camera: np.ndarray, resolution: int) -> np.ndarray:
    """(resolution², 3) unit ray directions of a pinhole at ``camera`` aimed at the box centre."""
    v = np.asarray(vertices, dtype=np.float64)
    centre = (v.min(axis=0) + v.max(axis=0)) / 2
    radius = float(np.linalg.norm(np.ptp(v, axis=0))) / 2
    offset = centre - np.asarray(camera, dtype=np.float64)
    distance = float(np.linalg.norm(offset))
    if distance <= radius:
        raise InputError("a camera lies inside the mesh's bounding sphere", "bad_camera")
    forward = offset / distance
    helper = np.array([0.0, 1.0, 0.0]) if abs(forward[1]) < 0.9 else np.array([0.0, 0.0, 1.0])
    right = np.cross(forward, helper)
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    half = FIELD_MARGIN * radius / np.sqrt(distance**2 - radius**2)
    s = np.linspace(-half, half, resolution)
    sx, sy = np.meshgrid(s, s, indexing="xy")
    rays = forward + sx.reshape(-1, 1) * right + sy.reshape(-1, 1) * up
    return rays / np.linalg.norm(rays, axis=1, keepdims=True)


def first_hits(
    vertices: np.ndarray, faces: np.ndarray, cameras: np.ndarray, resolution: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rays of every camera that hit the mesh: (camera index, unit direction, range, triangle id) of each."""
    import open3d as o3d

    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if len(v) == 0 or len(f) == 0:
        raise InputError("the mesh is empty: nothing to scan", "empty_mesh")
    # Open3D's scene is float32: work about the box centre so that offsets keep their precision
    origin = (v.min(axis=0) + v.max(axis=0)) / 2
    scene = _scene(v - origin, f)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for index, camera in enumerate(np.atleast_2d(np.asarray(cameras, dtype=np.float64))):
        directions = camera_rays(v, camera, resolution)
        rays = np.concatenate([np.broadcast_to(camera - origin, directions.shape), directions], axis=1)
        answer = scene.cast_rays(o3d.core.Tensor.from_numpy(rays.astype(np.float32)))
        ranges = answer["t_hit"].numpy().astype(np.float64)
        hit = np.isfinite(ranges)
        parts.append((np.full(int(hit.sum()), index), directions[hit], ranges[hit],
                      answer["primitive_ids"].numpy()[hit].astype(np.int64)))
    views, directions, ranges, triangles = (np.concatenate([p[i] for p in parts]) for i in range(4))
    return views, directions, ranges, triangles


def _scene(vertices: np.ndarray, faces: np.ndarray):
    """Open3D raycasting scene of one triangle mesh (float32: pass coordinates near the origin)."""
    import open3d as o3d

    mesh = o3d.t.geometry.TriangleMesh()
    mesh.vertex.positions = o3d.core.Tensor.from_numpy(np.ascontiguousarray(vertices, dtype=np.float32))
    mesh.triangle.indices = o3d.core.Tensor.from_numpy(np.ascontiguousarray(faces, dtype=np.int32))
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(mesh)
    return scene


def range_scan(
    vertices: np.ndarray,
    faces: np.ndarray,
    cameras: np.ndarray,
    count: int,
    rng: np.random.Generator,
    resolution: int = 512,
    noise_share: float = 0.002,
    lateral_share: float = 0.0005,
) -> RangeScan:
    """``count`` first hits of a ``resolution``² ray grid per camera, with scanner-like noise.

    The sigma along the ray is ``noise_share`` of the box diagonal at the distance of the box
    centre and grows in proportion to the range; across the ray it is ``lateral_share``. Hits are
    drawn at random from all cameras' hits together; with fewer hits than ``count``, all are kept.
    """
    v = np.asarray(vertices, dtype=np.float64)
    cams = np.atleast_2d(np.asarray(cameras, dtype=np.float64))
    views, directions, ranges, triangles = first_hits(v, faces, cams, resolution)
    if len(ranges) == 0:
        raise InputError("no ray hit the mesh", "empty_scan")
    keep = np.sort(rng.choice(len(ranges), size=min(count, len(ranges)), replace=False))
    views, directions, ranges, triangles = (a[keep] for a in (views, directions, ranges, triangles))
    origins = cams[views]
    clean = origins + directions * ranges[:, None]
    centre = (v.min(axis=0) + v.max(axis=0)) / 2
    diagonal = float(np.linalg.norm(np.ptp(v, axis=0)))
    reference = np.linalg.norm(origins - centre, axis=1)
    along = rng.normal(size=len(ranges)) * noise_share * diagonal * ranges / reference
    jitter = rng.normal(scale=lateral_share * diagonal, size=clean.shape)
    jitter -= np.einsum("ij,ij->i", jitter, directions)[:, None] * directions
    points = clean + along[:, None] * directions + jitter
    return RangeScan(points=points, clean=clean, triangles=triangles, views=views)


def subdivide(vertices: np.ndarray, faces: np.ndarray, max_edge: float) -> tuple[np.ndarray, np.ndarray]:
    """Split edges longer than ``max_edge`` at their midpoints until none is left.

    A triangle with one, two or three split edges becomes two, three or four; an edge is split
    for both triangles that share it, so the mesh stays conforming. The surface is unchanged:
    only its triangles shrink.
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if max_edge <= 0:
        raise InputError("the longest edge to keep must be positive", "bad_value")
    while True:
        edges = np.sort(np.stack([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], axis=1), axis=2)  # (F, 3, 2)
        unique, inverse = np.unique(edges.reshape(-1, 2), axis=0, return_inverse=True)
        long = np.linalg.norm(v[unique[:, 0]] - v[unique[:, 1]], axis=1) > max_edge
        if not long.any():
            return v, f
        middle = np.full(len(unique), -1, dtype=np.int64)
        middle[long] = len(v) + np.arange(int(long.sum()))
        v = np.concatenate([v, (v[unique[long, 0]] + v[unique[long, 1]]) / 2])
        f = _split_faces(f, middle[inverse.reshape(-1, 3)])


def _split_faces(f: np.ndarray, middle: np.ndarray) -> np.ndarray:
    """Triangles of ``f`` split at the midpoints ``middle`` (F, 3) of edges 01, 12, 20 (-1: whole)."""
    split = middle >= 0
    count = split.sum(axis=1)
    rows = np.arange(len(f))[:, None]
    # turn each face so that a lone split edge is edge 0, or a lone whole edge is edge 2
    turn = np.where(count == 1, np.argmax(split, axis=1), (np.argmin(split, axis=1) + 1) % 3)
    order = (turn[:, None] + np.arange(3)) % 3
    a, b, c = (f[rows, order][:, i] for i in range(3))
    m01, m12, m20 = (middle[rows, order][:, i] for i in range(3))
    parts = [np.stack([a, b, c], axis=1)[count == 0]]
    one, two, three = count == 1, count == 2, count == 3
    parts += [np.stack(t, axis=1)[one] for t in ((a, m01, c), (m01, b, c))]
    parts += [np.stack(t, axis=1)[two] for t in ((m01, b, m12), (a, m01, m12), (a, m12, c))]
    parts += [np.stack(t, axis=1)[three] for t in ((a, m01, m20), (m01, b, m12), (m20, m12, c), (m01, m12, m20))]
    return np.concatenate(parts)


def visible_truth(
    vertices: np.ndarray,
    faces: np.ndarray,
    cameras: np.ndarray,
    max_edge_share: float = 0.005,
) -> tuple[np.ndarray, np.ndarray]:
    """The part of the mesh the cameras see, as a mesh.

    The mesh is first subdivided to edges of at most ``max_edge_share`` of its box diagonal, so
    that a triangle crossing the edge of what is seen brings little unseen surface with it. A
    triangle is seen when a ray from some camera to one of four points of it (its centroid, and
    halfway from there to each corner) meets no other surface first: the limit of an endlessly
    dense ray grid, without the specks of missed small triangles a finite grid leaves. Vertices no
    kept triangle uses are dropped.
    """
    import open3d as o3d

    v = np.asarray(vertices, dtype=np.float64)
    diagonal = float(np.linalg.norm(np.ptp(v, axis=0)))
    fine_v, fine_f = subdivide(v, faces, max_edge_share * diagonal)
    origin = (fine_v.min(axis=0) + fine_v.max(axis=0)) / 2
    scene = _scene(fine_v - origin, fine_f)
    corners = fine_v[fine_f] - origin  # (F, 3, 3)
    centroid = corners.mean(axis=1, keepdims=True)
    targets = np.concatenate([centroid, (centroid + corners) / 2], axis=1).reshape(-1, 3)
    seen = np.zeros(len(fine_f), dtype=bool)
    for camera in np.atleast_2d(np.asarray(cameras, dtype=np.float64)) - origin:
        offset = targets - camera
        distance = np.linalg.norm(offset, axis=1)
        rays = np.concatenate([np.broadcast_to(camera, offset.shape), offset / distance[:, None]], axis=1)
        hit = scene.cast_rays(o3d.core.Tensor.from_numpy(rays.astype(np.float32)))["t_hit"].numpy()
        seen |= (hit >= distance - VISIBILITY_TOLERANCE * diagonal).reshape(-1, 4).any(axis=1)
    kept = fine_f[seen]
    used, remapped = np.unique(kept, return_inverse=True)
    return fine_v[used], remapped.reshape(-1, 3)
