"""Headless pictures: a real PNG of a shaded surface, no display needed."""

from __future__ import annotations

import numpy as np
import open3d as o3d
from PIL import Image

from siren_recon.rendering import render_mesh_png, render_side_by_side


def test_sphere_renders_shaded_on_white(tmp_path):
    mesh = o3d.geometry.TriangleMesh.create_sphere(radius=1.0, resolution=60)
    path = tmp_path / "sphere.png"
    render_mesh_png(np.asarray(mesh.vertices), np.asarray(mesh.triangles), path, width=320, height=240)
    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert image.shape == (240, 320, 3)
    assert (image[0, 0] == 255).all() and (image[-1, -1] == 255).all()
    centre = image[120, 160]
    assert (centre < 250).any()
    # the light comes from the upper left: that side of the sphere is brighter than the lower right
    upper_left = image[75, 115].sum()
    lower_right = image[165, 205].sum()
    assert upper_left > lower_right + 30
    covered = (image.sum(axis=2) < 760).mean()
    # an orthographic sphere filling 84% of the height covers pi r^2 of the frame
    expected = np.pi * (0.84 * 240 / 2) ** 2 / (240 * 320)
    assert abs(covered - expected) < 0.03  # no holes in the coverage


def test_side_by_side_has_one_panel_each(tmp_path):
    mesh = o3d.geometry.TriangleMesh.create_box()
    points = np.random.default_rng(0).random((500, 3))
    path = tmp_path / "pair.png"
    render_side_by_side(
        [("points", None, None, points), ("mesh", np.asarray(mesh.vertices), np.asarray(mesh.triangles), None)],
        path, width=200, height=150,
    )
    image = Image.open(path)
    assert image.size == (400, 178)


def test_shadow_side_stays_dark_and_open_surfaces_are_lit_inside(tmp_path):
    mesh = o3d.geometry.TriangleMesh.create_sphere(radius=1.0, resolution=60)
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.triangles)
    path = tmp_path / "sphere.png"
    render_mesh_png(vertices, faces, path, width=320, height=240)
    grey = np.asarray(Image.open(path).convert("L")).astype(int)
    # from the lit upper left to the lower right rim the shade never brightens again
    diagonal = np.array([grey[120 + k, 160 + k] for k in range(70)])
    assert (np.diff(diagonal) <= 2).all()
    # a bowl opening towards the camera: its inside is drawn shaded, not black
    open_faces = faces[vertices[faces].mean(axis=1)[:, 2] < 0.2]
    render_mesh_png(vertices, open_faces, tmp_path / "bowl.png", width=320, height=240, title="bowl")
    bowl = np.asarray(Image.open(tmp_path / "bowl.png").convert("L")).astype(int)
    inside = bowl[110:130, 150:170]
    assert inside.min() > 80 and (inside < 250).all()
    assert (bowl[5:25, 5:60] < 128).any()  # the title is written top left


def test_vertex_colours_paint_one_panel(tmp_path):
    mesh = o3d.geometry.TriangleMesh.create_sphere(radius=1.0, resolution=40)
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.triangles)
    red = np.tile([1.0, 0.0, 0.0], (len(vertices), 1))
    path = tmp_path / "maps.png"
    render_side_by_side([("plain", vertices, faces, None), ("red", vertices, faces, None)], path, width=200,
                        height=150, colours=[None, red])
    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    plain, painted = image[28 + 75, 100], image[28 + 75, 300]
    assert painted[0] > 60 and painted[1] == 0 and painted[2] == 0
    assert plain[2] > plain[0]  # the default surface is blue-grey
