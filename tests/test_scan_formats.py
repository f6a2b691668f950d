"""Scanner formats: LAS, LAZ and E57 read into one float64 frame with their colours, meshes that
carry those colours in every format, coordinates that keep their millimetres far from the origin,
and damaged files refused in one line that names the file."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from siren_recon.engine.errors import InputError
from siren_recon.io import read_cloud, write_mesh
from siren_recon.io.e57 import quaternion_matrix, spherical_to_cartesian

from .paths import REPO
from .scan_files import (
    UTM,
    damage_e57_scan,
    quaternion,
    read_coloured_mesh,
    rotation,
    write_e57,
    write_e57_without_coordinates,
    write_las,
)
from .shapes import SMALL, small_config, sphere_cloud

RED, BLUE, GREEN = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0])
CLI_SETTINGS = [
    item
    for key, value in SMALL.items()
    if key not in ("train.iterations", "mesh.resolution")
    for item in ("--set", f"{key}={value}")
]
FLOAT32_STEP = float(np.spacing(np.float32(UTM[1])))
"""Spacing of float32 numbers near the offset's northing (0.5 m): what float32 would have rounded to."""


def two_colour_sphere(count: int, radius: float, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points on a sphere, red above its equator and blue below (0..1)."""
    points, _ = sphere_cloud(count, radius=radius, centre=tuple(centre))
    colours = np.where((points[:, 2] > centre[2])[:, None], RED, BLUE)
    return points, colours


def two_scan_sphere(tmp_path):
    """A unit sphere at (10, -5, 2) seen by two stations: the upper half red, the lower green, each
    stored in its own frame with a different pose. Returns the file and the points in the file's frame."""
    centre = np.array([10.0, -5.0, 2.0])
    points, _ = sphere_cloud(1200, radius=1.0, centre=tuple(centre), seed=3)
    upper = points[:, 2] > centre[2]
    poses = [(quaternion((0, 0, 1), 0.7), np.array([3.0, 1.0, 0.5])),
             (quaternion((1, 1, 0), -1.1), np.array([-2.0, 4.0, 1.0]))]
    scans, truth, colours = [], [], []
    for half, (q, t), colour in ((upper, poses[0], RED), (~upper, poses[1], GREEN)):
        local = ((points[half] - t) @ rotation(q)).astype(np.float32).astype(np.float64)  # pye57 stores float32
        scans.append({"local": local, "q": q, "t": t, "rgb": np.tile(colour * 255, (len(local), 1))})
        truth.append(local @ rotation(q).T + t)
        colours.append(np.tile(colour, (len(local), 1)))
    path = tmp_path / "stations.e57"
    write_e57(path, scans)
    return path, np.concatenate(truth), np.concatenate(colours), centre


def test_laz_reads_float64_at_utm_offsets_with_16_bit_colours(tmp_path):
    points, colours = two_colour_sphere(500, 5.0, UTM)
    stored = write_las(tmp_path / "ball.laz", points, colours * 65535)
    cloud = read_cloud(tmp_path / "ball.laz")
    assert cloud.points.dtype == np.float64
    np.testing.assert_allclose(cloud.points, points, rtol=0, atol=0.5e-4 + 1e-9)  # the file's 0.1 mm scale
    np.testing.assert_array_equal(cloud.points, stored)
    np.testing.assert_allclose(cloud.colours, colours, atol=1e-9)
    assert cloud.normals is None


def test_las_with_8_bit_colours_in_16_bit_fields_scales_by_255(tmp_path):
    points, _ = sphere_cloud(200, radius=2.0)
    rgb = np.column_stack([np.full(200, 255), np.full(200, 128), np.zeros(200)])
    write_las(tmp_path / "eight.las", points, rgb, offsets=np.zeros(3))
    cloud = read_cloud(tmp_path / "eight.las")
    np.testing.assert_allclose(cloud.colours, np.tile([1.0, 128 / 255, 0.0], (200, 1)))


def test_las_without_colours_reads_without_colours(tmp_path):
    points, _ = sphere_cloud(100)
    write_las(tmp_path / "plain.las", points, offsets=np.zeros(3))
    assert read_cloud(tmp_path / "plain.las").colours is None


@pytest.mark.live
@pytest.mark.parametrize("suffix, library", [(".laz", "laspy"), (".e57", "pye57")])
def test_a_scan_without_the_formats_extra_exits_2_saying_what_to_install(tmp_path, suffix, library):
    """The scanner-format libraries are an optional extra: a backend fed over the wire (Blender's)
    installs without them, and reading such a file then names the extra in one line."""
    points, _ = sphere_cloud(100)
    path = tmp_path / f"scan{suffix}"
    if suffix == ".laz":
        write_las(path, points, offsets=np.zeros(3))
    else:
        write_e57(path, [{"local": points, "q": np.array([1.0, 0, 0, 0]), "t": np.zeros(3)}])
    without = f"import sys; sys.modules[{library!r}] = None; from siren_recon.cli import main; sys.exit(main())"
    done = subprocess.run([sys.executable, "-c", without, "reconstruct", str(path), "-o", str(tmp_path / "out.ply")],
                          capture_output=True, text=True, cwd=REPO)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert f"reading {suffix} files" in lines[0] and library in lines[0] and "siren-recon[formats]" in lines[0]


def test_two_scan_e57_with_two_poses_reads_as_one_consistent_cloud(tmp_path):
    path, truth, colours, centre = two_scan_sphere(tmp_path)
    cloud = read_cloud(path)
    np.testing.assert_allclose(cloud.points, truth, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(cloud.points - centre, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(cloud.colours, colours)


def test_quaternion_and_spherical_conversions():
    q = quaternion((0.3, -0.5, 0.8), 2.1)
    np.testing.assert_allclose(quaternion_matrix(*q), rotation(q), atol=1e-12)
    np.testing.assert_allclose(quaternion_matrix(*(3 * q)), rotation(q), atol=1e-12)
    rae = np.array([[2.0, 0.0, 0.0], [1.0, np.pi / 2, 0.0], [3.0, 0.3, np.pi / 2]])
    np.testing.assert_allclose(spherical_to_cartesian(rae), [[2, 0, 0], [0, 1, 0], [0, 0, 3]], atol=1e-12)


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".glb", ".gltf"])
def test_meshes_carry_vertex_colours_and_utm_coordinates(tmp_path, suffix):
    vertices = UTM + np.array([[0.0, 0.0, 0.0], [1.2345, 0.0, 0.0], [0.0, 2.3456, 0.0], [0.0, 0.0, 3.4567]])
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    colours = np.array([RED, GREEN, BLUE, [0.5, 0.25, 1.0]])
    write_mesh(tmp_path / f"mesh{suffix}", vertices, faces, colours)
    back, back_colours = read_coloured_mesh(tmp_path / f"mesh{suffix}")
    # float32 positions would be off by up to a quarter metre at this northing; glTF's node translation keeps them
    np.testing.assert_allclose(back, vertices, rtol=0, atol=1e-6)
    assert back_colours is not None
    np.testing.assert_allclose(back_colours, colours, atol=1 / 255)


def bad_files(directory):
    """Every damaged scanner file, by case: (path, words the message must hold)."""
    points, colours = two_colour_sphere(400, 5.0, UTM)
    write_las(directory / "good.las", points, colours * 65535)
    write_las(directory / "good.laz", points, colours * 65535)
    las, laz = (directory / "good.las").read_bytes(), (directory / "good.laz").read_bytes()
    (directory / "truncated.las").write_bytes(las[: len(las) // 2])
    (directory / "truncated.laz").write_bytes(laz[: len(laz) * 2 // 3])
    (directory / "header_only.las").write_bytes(las[:100])
    write_las(directory / "empty.las", np.zeros((0, 3)), np.zeros((0, 3)))
    odd = bytearray(las)
    odd[104] = 42  # the point data format id: no LAS format has this number
    (directory / "format42.las").write_bytes(bytes(odd))
    path, _, _, _ = two_scan_sphere(directory)
    e57 = path.read_bytes()
    (directory / "truncated.e57").write_bytes(e57[: len(e57) // 2])
    write_e57(directory / "no_scans.e57", [])
    write_e57_without_coordinates(directory / "intensity_only.e57")
    damaged = directory / "second_scan_damaged.e57"
    damaged.write_bytes(e57)
    damage_e57_scan(damaged, 1)
    return {
        "truncated.las": "truncated",
        "truncated.laz": "truncated or damaged",
        "header_only.las": "not a readable LAS/LAZ file",
        "empty.las": "holds no points",
        "format42.las": "point format 42",
        "truncated.e57": "truncated or damaged E57 file",
        "no_scans.e57": "holds no scans",
        "intensity_only.e57": "scan 1 of 1 ('intensity only') has no coordinates",
        "second_scan_damaged.e57": "scan 2 of 2 ('station 2') could not be read",
    }


@pytest.fixture(scope="module")
def bad_directory(tmp_path_factory):
    directory = tmp_path_factory.mktemp("bad_scans")
    return directory, bad_files(directory)


def test_damaged_scanner_files_are_refused_naming_file_and_problem(bad_directory):
    directory, cases = bad_directory
    for name, problem in cases.items():
        with pytest.raises(InputError) as caught:
            read_cloud(directory / name)
        message = str(caught.value)
        assert name in message and problem in message and "\n" not in message, message


def test_the_undamaged_scans_of_the_bad_cases_read(bad_directory):
    directory, _ = bad_directory
    assert len(read_cloud(directory / "good.laz").points) == 400
    assert len(read_cloud(directory / "stations.e57").points) == 1200


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "siren_recon.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.live
@pytest.mark.slow
def test_damaged_scanner_files_exit_2_with_one_line(bad_directory, tmp_path):
    directory, cases = bad_directory
    for name, problem in cases.items():
        done = run_cli("reconstruct", str(directory / name), "-o", str(tmp_path / "out.ply"), "--iterations", "5")
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, done.stderr
        assert len(lines) == 1 and lines[0].startswith("siren-recon: error:"), done.stderr
        assert name in lines[0] and problem in lines[0], lines[0]


@pytest.mark.live
@pytest.mark.slow
def test_laz_at_utm_offsets_reconstructs_to_its_own_coordinates_with_colours(tmp_path):
    """The CLI's mesh of a LAZ 500,000 m from the origin equals, to a tenth of a millimetre, the mesh of
    the same points moved to the origin and moved back; float32 anywhere on the way would leave
    errors of centimetres (a quarter metre at the northing)."""
    from siren_recon.engine.pipeline import reconstruct_points

    points, colours = two_colour_sphere(800, 5.0, UTM)
    stored = write_las(tmp_path / "ball.laz", points, colours * 65535)
    out = tmp_path / "ball.ply"
    done = run_cli("reconstruct", str(tmp_path / "ball.laz"), "-o", str(out), "--iterations", "40",
                   "--resolution", "32", "--no-progress", *CLI_SETTINGS)
    assert done.returncode == 0, done.stderr
    assert "coloured from the input" in done.stderr
    vertices, vertex_colours = read_coloured_mesh(out)

    reference = reconstruct_points(stored - UTM, None, small_config(train__iterations=40, mesh__resolution=32))
    assert vertices.shape == reference.vertices.shape
    error = float(np.abs(vertices - (reference.vertices + UTM)).max())
    rounded = float(np.abs(vertices.astype(np.float32) - vertices).max())
    print(f"largest vertex difference from the origin run: {error:.3g} m; float32 would round by up to {rounded:.3g} m")
    assert error < 1e-4 < FLOAT32_STEP / 100
    assert abs(np.median(np.linalg.norm(vertices - UTM, axis=1)) - 5.0) < 0.25

    assert vertex_colours is not None
    top, bottom = vertices[:, 2] > UTM[2] + 1.5, vertices[:, 2] < UTM[2] - 1.5
    assert vertex_colours[top, 0].mean() > 0.95 and vertex_colours[top, 2].mean() < 0.05
    assert vertex_colours[bottom, 2].mean() > 0.95 and vertex_colours[bottom, 0].mean() < 0.05


@pytest.mark.live
@pytest.mark.slow
def test_two_station_e57_reconstructs_to_one_coloured_obj(tmp_path):
    path, _, _, centre = two_scan_sphere(tmp_path)
    out = tmp_path / "stations.obj"
    done = run_cli("reconstruct", str(path), "-o", str(out), "--iterations", "40", "--resolution", "32",
                   "--no-progress", *CLI_SETTINGS)
    assert done.returncode == 0, done.stderr
    vertices, colours = read_coloured_mesh(out)
    radii = np.linalg.norm(vertices - centre, axis=1)
    assert abs(np.median(radii) - 1.0) < 0.05  # two halves posed wrongly would not make one sphere
    assert colours is not None
    top, bottom = vertices[:, 2] > centre[2] + 0.3, vertices[:, 2] < centre[2] - 0.3
    assert colours[top, 0].mean() > 0.95 and colours[bottom, 1].mean() > 0.95
