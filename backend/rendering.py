"""Pictures of meshes and point clouds without a display, a GPU or OpenGL.

A small software rasteriser in NumPy: an orthographic 3/4 view fitted to the bounding box,
exact triangle coverage with a z-buffer, smooth Lambert shading. Open3D's offscreen renderer
needs Vulkan or EGL, which headless servers and CI machines often lack.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .geometry.normals import vertex_normals

BACKGROUND = (255, 255, 255)
SURFACE = np.array([0.72, 0.76, 0.84])
POINT_COLOUR = np.array([0.25, 0.32, 0.45])
CANDIDATE_BUDGET = 4_000_000
"""Pixel candidates tested at once: bounds the renderer's memory."""
POINT_DEPTH_SLACK = 2.0
"""Pixels of depth by which a point may lie behind the surface and still be drawn over it, so
that points sampled on the surface show on the visible side (and not on the far side)."""
LABEL_HEIGHT = 28
LABEL_FONT_SIZE = 16


@dataclass(frozen=True)
class View:
    """Orthographic camera: world -> (x right, y down, depth) in pixels."""

    rotation: np.ndarray
    centre: np.ndarray
    scale: float
    width: int
    height: int

    @classmethod
    def fit(cls, points: np.ndarray, width: int, height: int, up: str = "y",
            azimuth: float = 35.0, elevation: float = 25.0, margin: float = 0.08) -> View:
        axes = {"y": np.eye(3), "z": np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])}
        to_y_up = axes[up]
        a, e = np.radians(azimuth), np.radians(elevation)
        spin = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        tilt = np.array([[1, 0, 0], [0, np.cos(e), -np.sin(e)], [0, np.sin(e), np.cos(e)]])
        rotation = tilt @ spin @ to_y_up
        turned = points @ rotation.T
        lo, hi = turned.min(axis=0), turned.max(axis=0)
        extent = np.maximum(hi - lo, 1e-12)
        scale = (1 - 2 * margin) * min(width / extent[0], height / extent[1])
        return cls(rotation, (lo + hi) / 2, float(scale), width, height)

    def project(self, points: np.ndarray) -> np.ndarray:
        turned = (np.asarray(points, dtype=np.float64) @ self.rotation.T - self.centre) * self.scale
        x = turned[:, 0] + self.width / 2
        y = self.height / 2 - turned[:, 1]
        return np.stack([x, y, -turned[:, 2]], axis=1)  # smaller depth = nearer the viewer


def _rasterise(screen: np.ndarray, faces: np.ndarray, width: int, height: int):
    """Nearest face per pixel: (pixel index, face index, barycentric weights) of covered pixels."""
    tri = screen[faces]  # (F, 3, 3)
    lo = np.floor(tri[:, :, :2].min(axis=1)).astype(np.int64)
    hi = np.ceil(tri[:, :, :2].max(axis=1)).astype(np.int64)
    size = np.maximum((hi - lo).max(axis=1), 1)
    found = []
    bucket, previous = 2, 0
    while previous < size.max():
        chosen = np.flatnonzero((size > previous) & (size <= bucket))
        grid = np.stack(np.meshgrid(np.arange(bucket + 1), np.arange(bucket + 1), indexing="xy"), -1).reshape(-1, 2)
        step = max(1, CANDIDATE_BUDGET // len(grid))
        for start in range(0, len(chosen), step):
            idx = chosen[start : start + step]
            px = lo[idx, None, :] + grid[None]  # (n, G, 2) pixel corners
            centre = px + 0.5
            a, b, c = tri[idx, 0, None, :2], tri[idx, 1, None, :2], tri[idx, 2, None, :2]
            area = (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])
            w1 = (centre[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (centre[..., 1] - a[..., 1]) * (
                c[..., 0] - a[..., 0]
            )
            w2 = (b[..., 0] - a[..., 0]) * (centre[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (
                centre[..., 0] - a[..., 0]
            )
            with np.errstate(divide="ignore", invalid="ignore"):
                w1, w2 = w1 / area, w2 / area
            w0 = 1 - w1 - w2
            inside = (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9) & (np.abs(area) > 1e-12)
            inside &= (px[..., 0] >= 0) & (px[..., 0] < width) & (px[..., 1] >= 0) & (px[..., 1] < height)
            f_i, g_i = np.nonzero(inside)
            if not len(f_i):
                continue
            weights = np.stack([w0[f_i, g_i], w1[f_i, g_i], w2[f_i, g_i]], axis=1)
            depth = (weights * tri[idx[f_i], :, 2]).sum(axis=1)
            pixel = px[f_i, g_i, 1] * width + px[f_i, g_i, 0]
            found.append((pixel, depth, idx[f_i], weights))
        previous, bucket = bucket, bucket * 2
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3))
    pixel, depth, face, weights = (np.concatenate(parts) for parts in zip(*found))
    order = np.lexsort((depth, pixel))
    first = np.ones(len(order), dtype=bool)
    first[1:] = pixel[order][1:] != pixel[order][:-1]
    keep = order[first]
    return pixel[keep], face[keep], weights[keep]


def _shade(normals: np.ndarray, facing: np.ndarray, rotation: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Lambert from a key light at the upper left, a weak headlight fill and ambient.

    The shading is two-sided. ``facing`` is +1 or -1 per pixel: the sign of the drawn face's
    normal towards the camera. Flipping by it keeps open scans lit on their inside, where
    ``|n . l|`` would instead light the lower right rim of a closed surface as if the light came
    from there too. The fill (light from the camera) keeps faces turned from the key readable.
    """
    view_normals = (normals @ rotation.T) * facing[:, None]
    light = np.array([-0.4, 0.6, 0.7])
    light /= np.linalg.norm(light)
    key = np.maximum(view_normals @ light, 0.0)
    fill = np.maximum(view_normals[:, 2], 0.0)
    return np.clip(colour * (0.22 + 0.62 * key + 0.2 * fill)[:, None], 0, 1)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at ``size`` pixels (Pillow >= 10.1), else its small bitmap font."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def render_image(
    vertices: np.ndarray | None,
    faces: np.ndarray | None,
    width: int = 800,
    height: int = 600,
    points: np.ndarray | None = None,
    up: str = "y",
    view: View | None = None,
    colours: np.ndarray | None = None,
) -> Image.Image:
    """Shaded picture of a mesh, or of a point cloud when ``faces`` is ``None``; ``colours``
    (V, 3) in 0..1 paint the mesh per vertex."""
    geometry = [g for g in (vertices, points) if g is not None and len(g)]
    if not geometry:
        raise ValueError("nothing to render: no vertices and no points")
    view = view or View.fit(np.concatenate(geometry), width, height, up)
    image = np.full((height * width, 3), np.array(BACKGROUND) / 255.0)
    depth = np.full(height * width, np.inf)
    if vertices is not None and faces is not None and len(faces):
        v = np.asarray(vertices, dtype=np.float64)
        f = np.asarray(faces, dtype=np.int64)
        screen = view.project(v)
        pixel, face, weights = _rasterise(screen, f, width, height)
        normals = (vertex_normals(v, f)[f[face]] * weights[:, :, None]).sum(axis=1)
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        a, b, c = (v[f[face, i]] for i in range(3))
        facing = np.where((np.cross(b - a, c - a) @ view.rotation.T)[:, 2] >= 0, 1.0, -1.0)
        paint = SURFACE if colours is None else (np.asarray(colours)[f[face]] * weights[:, :, None]).sum(axis=1)
        image[pixel] = _shade(normals, facing, view.rotation, paint)
        depth[pixel] = (weights * screen[f[face], 2]).sum(axis=1)
    if points is not None and len(points):
        screen = view.project(points)
        for dx in (0, 1):
            for dy in (0, 1):
                x = np.floor(screen[:, 0]).astype(np.int64) + dx
                y = np.floor(screen[:, 1]).astype(np.int64) + dy
                ok = (x >= 0) & (x < width) & (y >= 0) & (y < height)
                pix = y[ok] * width + x[ok]
                nearer = screen[ok, 2] <= depth[pix] + POINT_DEPTH_SLACK
                image[pix[nearer]] = POINT_COLOUR
    return Image.fromarray((image.reshape(height, width, 3) * 255).astype(np.uint8))


def render_mesh_png(
    vertices: np.ndarray,
    faces: np.ndarray,
    path: str | os.PathLike,
    width: int = 800,
    height: int = 600,
    points: np.ndarray | None = None,
    title: str | None = None,
    up: str = "y",
) -> None:
    """Write a PNG of a mesh (with an optional point cloud drawn over it and a title top left)."""
    image = render_image(vertices, faces, width, height, points, up)
    if title:
        ImageDraw.Draw(image).text((10, 8), title, fill=(20, 20, 20), font=_font(LABEL_FONT_SIZE))
    image.save(path)


def render_side_by_side(
    panels: Sequence[tuple[str, np.ndarray | None, np.ndarray | None, np.ndarray | None]],
    path: str | os.PathLike,
    width: int = 480,
    height: int = 420,
    up: str = "y",
    azimuth: float = 35.0,
    elevation: float = 25.0,
    colours: Sequence[np.ndarray | None] | None = None,
) -> None:
    """Panels ``(label, vertices, faces, points)`` in a row, seen from one shared camera;
    ``colours`` holds each panel's per-vertex colours (or ``None``)."""
    everything = np.concatenate([g for _, v, _, p in panels for g in (v, p) if g is not None and len(g)])
    view = View.fit(everything, width, height, up, azimuth, elevation)
    sheet = Image.new("RGB", (width * len(panels), height + LABEL_HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = _font(LABEL_FONT_SIZE)
    for i, (label, vertices, faces, points) in enumerate(panels):
        paint = colours[i] if colours is not None else None
        sheet.paste(render_image(vertices, faces, width, height, points, up, view, paint), (i * width, LABEL_HEIGHT))
        draw.text((i * width + 10, 6), label, fill=(20, 20, 20), font=font)
    sheet.save(path)
