"""PLY and text point clouds read with NumPy give exactly what Open3D reads from the same files, and PLY
meshes written with NumPy read back in Open3D as the ones Open3D writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import open3d as o3d
import pytest

from siren_recon.engine.errors import InputError
from siren_recon.io import read_cloud, write_mesh
from siren_recon.io.open3d_library import to_open3d_mesh
from siren_recon.io.text_clouds import numbers
from tests.paths import REPO

UTM = np.array([500_000.0, 4_500_000.0, 250.0])


def random_cloud(count: int = 200, seed: int = 0) -> o3d.geometry.PointCloud:
    """An Open3D cloud far from the origin, with unit normals and colours."""
    rng = np.random.default_rng(seed)
    normals = rng.normal(size=(count, 3))
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(UTM + rng.normal(size=(count, 3)) * 100.0))
    cloud.normals = o3d.utility.Vector3dVector(normals / np.linalg.norm(normals, axis=1, keepdims=True))
    cloud.colors = o3d.utility.Vector3dVector(rng.random((count, 3)))
    return cloud


def assert_reads_as_open3d(path: Path) -> None:
    """``read_cloud`` and Open3D agree bit for bit on points, normals and colours (and on having them)."""
    ours = read_cloud(path)
    theirs = o3d.io.read_point_cloud(str(path))
    assert len(theirs.points) > 0
    assert ours.points.dtype == np.float64 and ours.points.shape == (len(theirs.points), 3)
    np.testing.assert_array_equal(ours.points, np.asarray(theirs.points))
    assert (ours.normals is not None) == theirs.has_normals()
    if ours.normals is not None:
        assert ours.normals.dtype == np.float64
        np.testing.assert_array_equal(ours.normals, np.asarray(theirs.normals))
    assert (ours.colours is not None) == theirs.has_colors()
    if ours.colours is not None:
        assert ours.colours.dtype == np.float64
        np.testing.assert_array_equal(ours.colours, np.asarray(theirs.colors))


@pytest.mark.parametrize("ascii", [True, False])
@pytest.mark.parametrize("keep", ["points", "normals", "colours", "both"])
def test_ply_written_by_open3d(tmp_path, ascii, keep):
    cloud = random_cloud()
    if keep in ("points", "colours"):
        cloud.normals = o3d.utility.Vector3dVector()
    if keep in ("points", "normals"):
        cloud.colors = o3d.utility.Vector3dVector()
    path = tmp_path / "cloud.ply"
    assert o3d.io.write_point_cloud(str(path), cloud, write_ascii=ascii)
    assert_reads_as_open3d(path)
    ours = read_cloud(path)
    assert (ours.normals is not None) == (keep in ("normals", "both"))
    assert (ours.colours is not None) == (keep in ("colours", "both"))


def ply_header(encoding: str, elements: list[tuple[str, int, list[str]]]) -> bytes:
    """A PLY header; each element is (name, count, its ``property ...`` lines without the keyword)."""
    lines = ["ply", f"format {encoding} 1.0", "comment written by hand", "obj_info for the reader's tests"]
    for name, count, properties in elements:
        lines.append(f"element {name} {count}")
        lines += [f"property {prop}" for prop in properties]
    return ("\n".join(lines + ["end_header"]) + "\n").encode()


VERTEX = ["float x", "float y", "float z", "float intensity", "uchar red", "uchar green", "uchar blue",
          "double nx", "double ny", "double nz", "ushort scan"]
FACE = ["list uchar int vertex_indices"]


def vertex_records(order: str, count: int = 50) -> bytes:
    """Binary vertex records of :data:`VERTEX` in byte order ``order`` (``<`` or ``>``)."""
    rng = np.random.default_rng(1)
    layout = np.dtype([("x", f"{order}f4"), ("y", f"{order}f4"), ("z", f"{order}f4"), ("intensity", f"{order}f4"),
                       ("red", "u1"), ("green", "u1"), ("blue", "u1"), ("nx", f"{order}f8"), ("ny", f"{order}f8"),
                       ("nz", f"{order}f8"), ("scan", f"{order}u2")])
    records = np.zeros(count, dtype=layout)
    for name in ("x", "y", "z", "intensity", "nx", "ny", "nz"):
        records[name] = rng.normal(size=count) * 10.0
    for name in ("red", "green", "blue"):
        records[name] = rng.integers(0, 256, size=count)
    records["scan"] = rng.integers(0, 65536, size=count)
    return records.tobytes()


def face_records(order: str, count: int = 7) -> bytes:
    """Binary faces of :data:`FACE`: triangles and quads, so records differ in length."""
    out = b""
    for index in range(count):
        corners = [index, index + 1, index + 2] + ([index + 3] if index % 2 else [])
        out += bytes([len(corners)]) + np.array(corners, dtype=f"{order}i4").tobytes()
    return out


@pytest.mark.parametrize("encoding, order", [("binary_big_endian", ">"), ("binary_little_endian", "<")])
@pytest.mark.parametrize("faces_first", [False, True])
def test_binary_ply_by_hand_with_extra_properties_and_faces(tmp_path, encoding, order, faces_first):
    elements = [("vertex", 50, VERTEX), ("face", 7, FACE)]
    bodies = [vertex_records(order), face_records(order)]
    if faces_first:
        elements.reverse()
        bodies.reverse()
    path = tmp_path / "hand.ply"
    path.write_bytes(ply_header(encoding, elements) + b"".join(bodies))
    assert_reads_as_open3d(path)
    assert read_cloud(path).colours is not None and read_cloud(path).normals is not None


def test_ascii_ply_by_hand_with_float_colours_lists_and_full_precision(tmp_path):
    """ascii floats keep their full decimal value, float colours are divided by 255 as Open3D does,
    a list inside the vertex element and a face element before it are skipped, records may span lines."""
    rng = np.random.default_rng(2)
    values = UTM + rng.normal(size=(30, 3))
    colours = rng.random((30, 3))
    rows = []
    for index, (point, colour) in enumerate(zip(values, colours)):
        xyz = " ".join(f"{v:.17g}" for v in point)
        rgb = " ".join(f"{c:.9g}" for c in colour)
        rows.append(f"{xyz} 3 1 2 3\n{rgb} -{index}")
    header = ply_header("ascii", [
        ("face", 2, FACE),
        ("vertex", 30, ["float x", "float y", "double z", "list uchar int tags", "float red", "float green",
                        "float blue", "int label"]),
    ])
    path = tmp_path / "hand.ply"
    path.write_bytes(header + b"3 0 1 2\n4 0 1 2 3\n" + "\n".join(rows).encode() + b"\n")
    assert_reads_as_open3d(path)
    np.testing.assert_array_equal(read_cloud(path).points, values)


def test_text_clouds_written_by_open3d(tmp_path):
    cloud = random_cloud()
    for suffix in (".xyz", ".xyzn", ".xyzrgb"):
        path = tmp_path / f"cloud{suffix}"
        assert o3d.io.write_point_cloud(str(path), cloud)
        assert_reads_as_open3d(path)
    assert read_cloud(tmp_path / "cloud.xyzn").normals is not None
    assert read_cloud(tmp_path / "cloud.xyzrgb").colours is not None


@pytest.mark.parametrize("suffix", [".xyz", ".xyzn", ".xyzrgb"])
def test_text_clouds_by_hand_with_headers_and_odd_lines(tmp_path, suffix):
    rng = np.random.default_rng(3)
    rows = [" ".join(f"{v:.17g}" for v in row) for row in np.hstack([UTM + rng.normal(size=(20, 3)),
                                                                    rng.random((20, 4))])]
    odd = ["# x y z", "", "1,2,3,4,5,6", "8 9", "1.5 2 3abc 4 5 6 7", "1.52.5 3 4 5 6e0 x", "  7\t8 9 1 2 3",
           "nan inf -1e3 4 5 6", "0x10 -0x1.8p1 0x.8 0x 4 5 6", "1 2 3 4 5", "10 11 12 0.5 0.25 1 # comment"]
    path = tmp_path / f"hand{suffix}"
    path.write_text("\n".join(odd[:5] + rows + odd[5:]) + "\n")
    assert_reads_as_open3d(path)
    plain = tmp_path / f"plain{suffix}"
    plain.write_text("\n".join(rows) + "\n")
    assert_reads_as_open3d(plain)


def test_plain_and_line_by_line_parsing_agree(tmp_path):
    """A file of plain columns takes NumPy's one-pass parser, any other the line-by-line one: same numbers."""
    rng = np.random.default_rng(4)
    rows = [" ".join(f"{v:.17g}" for v in row) for row in UTM + rng.normal(size=(50, 3))]
    (tmp_path / "plain.xyz").write_text("\n".join(rows) + "\n")
    (tmp_path / "odd.xyz").write_text("\n".join(rows + ["odd line"]) + "\n")
    np.testing.assert_array_equal(numbers(tmp_path / "plain.xyz", 3), numbers(tmp_path / "odd.xyz", 3))


def good_binary_ply() -> bytes:
    return ply_header("binary_little_endian", [("vertex", 50, VERTEX), ("face", 7, FACE)]) + vertex_records("<")


@pytest.mark.parametrize("content, problem", [
    (lambda: good_binary_ply()[:-100], "truncated"),
    (lambda: ply_header("binary_big_endian", [("face", 7, FACE), ("vertex", 50, VERTEX)]) + face_records(">")[:20],
     "truncated"),
    (lambda: ply_header("ascii", [("vertex", 3, ["float x", "float y", "float z"])]) + b"1 2 3\n4 5 6\n7 8\n",
     "truncated"),
    (lambda: ply_header("ascii", [("vertex", 2, ["float x", "float y", "float z"])]) + b"1 2 3\n4 five 6\n",
     "not a float"),
    (lambda: ply_header("ascii", [("vertex", 1, ["float x", "float y", "float z", "uchar red"])]) + b"1 2 3 300\n",
     "out of range"),
    (lambda: ply_header("ascii", [("vertex", 1, ["float x", "float y", "float z"])]) + b"1 2 1e40\n",
     "out of range"),
    (lambda: good_binary_ply()[:60], "no end_header"),
    (lambda: ply_header("binary_middle_endian", [("vertex", 1, ["float x"])]), "cannot read the line"),
    (lambda: ply_header("ascii", [("vertex", 1, ["quad x"])]), "cannot read the line"),
    (lambda: ply_header("ascii", [("vertex", 1, ["float a", "float b", "float c"])]) + b"1 2 3\n",
     "no x, y and z"),
    (lambda: ply_header("ascii", [("vertex", 0, ["float x", "float y", "float z"])]), "holds no points"),
    (lambda: b"not a ply file", "not a PLY file"),
])
def test_a_broken_ply_is_an_input_error_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "broken.ply"
    path.write_bytes(content())
    with pytest.raises(InputError, match=problem) as caught:
        read_cloud(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("suffix", [".xyz", ".xyzn", ".xyzrgb"])
def test_a_text_cloud_without_points_is_an_input_error_naming_the_file(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    path.write_text("# header only\n1 2\n")
    with pytest.raises(InputError, match="holds no points") as caught:
        read_cloud(path)
    assert str(path) in str(caught.value)


def test_ply_mesh_written_with_numpy_matches_what_open3d_writes(tmp_path):
    """Vertices, triangles and 8-bit colours (half rounds away from zero) as Open3D writes them; normals
    area-weighted as Open3D's ``compute_vertex_normals``."""
    rng = np.random.default_rng(5)
    vertices = UTM + rng.normal(size=(60, 3))
    faces = rng.integers(0, 60, size=(90, 3))
    colours = rng.random((60, 3)) * 1.2 - 0.1
    colours[0] = np.array([0.5, 1.5, 2.5]) / 255.0
    ours, theirs = tmp_path / "ours.ply", tmp_path / "theirs.ply"
    write_mesh(ours, vertices, faces, colours)
    assert o3d.io.write_triangle_mesh(str(theirs), to_open3d_mesh(vertices, faces, colours))
    mine, reference = o3d.io.read_triangle_mesh(str(ours)), o3d.io.read_triangle_mesh(str(theirs))
    np.testing.assert_array_equal(np.asarray(mine.vertices), vertices)
    np.testing.assert_array_equal(np.asarray(mine.triangles), np.asarray(reference.triangles))
    np.testing.assert_array_equal(np.asarray(mine.vertex_colors), np.asarray(reference.vertex_colors))
    np.testing.assert_allclose(np.asarray(mine.vertex_normals), np.asarray(reference.vertex_normals), atol=1e-12)
    write_mesh(ours, vertices, faces)
    assert not o3d.io.read_triangle_mesh(str(ours)).has_vertex_colors()
    assert read_cloud(ours).points.shape == (60, 3)


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)


def test_ply_and_text_clouds_and_ply_meshes_need_no_open3d(tmp_path):
    cloud = random_cloud()
    for name in ("cloud.ply", "cloud.xyzn"):
        assert o3d.io.write_point_cloud(str(tmp_path / name), cloud)
    done = run_python(
        "import sys; from siren_recon.io import read_cloud, write_mesh; "
        f"clouds = [read_cloud({str(tmp_path / name)!r}) for name in ('cloud.ply', 'cloud.xyzn')]; "
        "assert all(len(c.points) == 200 for c in clouds); "
        f"write_mesh({str(tmp_path / 'mesh.ply')!r}, clouds[0].points, [[0, 1, 2]], clouds[0].colours); "
        "assert 'open3d' not in sys.modules; print('ok')"
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_a_format_that_needs_open3d_says_which_extra_to_install(tmp_path):
    path = tmp_path / "cloud.pcd"
    assert o3d.io.write_point_cloud(str(path), random_cloud())
    done = run_python(
        "import sys; sys.modules['open3d'] = None; from siren_recon.io import read_cloud; "
        f"read_cloud({str(path)!r})"
    )
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode != 0 and "Open3DUnavailable" in last and "pip install 'siren-recon[open3d]'" in last
