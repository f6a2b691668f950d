"""Reading a Wavefront .obj without Open3D (the benchmark's ground-truth meshes)."""

from __future__ import annotations

import numpy as np

from siren_recon.io.text_meshes import read_obj, write_obj


def test_an_obj_written_by_the_engine_reads_back_as_written(tmp_path):
    vertices = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.25, 0.5, 0.125]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    write_obj(tmp_path / "mesh.obj", vertices, faces, None)
    read_vertices, read_faces = read_obj(tmp_path / "mesh.obj")
    np.testing.assert_array_equal(read_vertices, vertices)
    np.testing.assert_array_equal(read_faces, faces)


def test_polygons_become_fans_and_texture_and_negative_indices_are_understood(tmp_path):
    (tmp_path / "quad.obj").write_text(
        "# a quad and a triangle\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\n"
        "f 1/1 2/1 3/1 4/1\nf -1//1 -2//1 -3//1\n"
    )
    vertices, faces = read_obj(tmp_path / "quad.obj")
    assert vertices.shape == (4, 3) and vertices.dtype == np.float64
    np.testing.assert_array_equal(faces, [[0, 1, 2], [0, 2, 3], [3, 2, 1]])
