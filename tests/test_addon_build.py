"""The extension build: which bundled wheel installs on which Blender, the gaps, and the zip itself.

The zip is written without Blender; Blender's own extension tool (from the bpy wheel in this
environment) checks it: it validates the zip and builds the same staged add-on, and the two zips
must hold the same files, compressed the same way.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

from .addon_build import blender_tool, fake_wheels, load_build_script, python_without_bpy, zip_contents
from .paths import REPO

build = load_build_script()
needs_blender_tool = pytest.mark.skipif(build.blender_extension_tool() is None, reason="needs the bpy wheel")

ZMQ_311_LINUX = "pyzmq-27.3.0-cp311-cp311-manylinux_2_26_x86_64.manylinux_2_28_x86_64.whl"
ZMQ_ABI3_LINUX = "pyzmq-27.3.0-cp312-abi3-manylinux_2_26_x86_64.manylinux_2_28_x86_64.whl"
ZMQ_311_MAC = "pyzmq-27.3.0-cp311-cp311-macosx_10_15_universal2.whl"
MSGPACK_313_WIN_ARM = "msgpack-1.2.4-cp313-cp313-win_arm64.whl"

# One wheel per (package, Python, platform) the table needs: the set the build bundles.
COMPLETE = [
    ZMQ_311_LINUX, ZMQ_ABI3_LINUX, ZMQ_311_MAC,
    "pyzmq-27.3.0-cp312-abi3-macosx_10_15_universal2.whl",
    "pyzmq-27.3.0-cp311-cp311-win_amd64.whl", "pyzmq-27.3.0-cp311-cp311-win_arm64.whl",
    "pyzmq-27.3.0-cp312-abi3-win_amd64.whl", "pyzmq-27.3.0-cp312-abi3-win_arm64.whl",
    "msgpack-1.2.4-cp311-cp311-macosx_10_9_x86_64.whl", "msgpack-1.2.4-cp311-cp311-macosx_11_0_arm64.whl",
    "msgpack-1.2.4-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl",
    "msgpack-1.2.4-cp311-cp311-win_amd64.whl", "msgpack-1.2.4-cp311-cp311-win_arm64.whl",
    "msgpack-1.2.4-cp313-cp313-macosx_11_0_arm64.whl",
    "msgpack-1.2.4-cp313-cp313-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl",
    "msgpack-1.2.4-cp313-cp313-win_amd64.whl", MSGPACK_313_WIN_ARM,
]


@pytest.mark.parametrize("wheel, python, platform, fits", [
    (ZMQ_311_LINUX, (3, 11), "linux-x64", True),
    (ZMQ_311_LINUX, (3, 13), "linux-x64", False),  # a version-specific wheel is for that Python only
    (ZMQ_ABI3_LINUX, (3, 13), "linux-x64", True),  # the stable ABI of 3.12 holds on 3.13
    (ZMQ_ABI3_LINUX, (3, 11), "linux-x64", False),  # ... but not on an older Python
    (ZMQ_ABI3_LINUX, (3, 13), "windows-x64", False),
    (ZMQ_311_MAC, (3, 11), "macos-arm64", True),  # universal2 is both Macs
    (ZMQ_311_MAC, (3, 11), "macos-x64", True),
    ("msgpack-1.2.4-cp311-cp311-macosx_11_0_arm64.whl", (3, 11), "macos-x64", False),
    (MSGPACK_313_WIN_ARM, (3, 13), "windows-arm64", True),
    (MSGPACK_313_WIN_ARM, (3, 13), "windows-x64", False),
    ("six-1.16.0-py2.py3-none-any.whl", (3, 13), "windows-arm64", True),
])
def test_a_wheel_installs_where_its_tags_say(wheel, python, platform, fits):
    assert build.wheel_fits(wheel, python, platform) is fits


def test_the_bundled_set_covers_every_blender_and_platform_in_the_table():
    assert build.missing_wheels(COMPLETE) == []
    versions = {(b.version, b.python) for b in build.BLENDERS}
    assert versions == {("4.2 LTS", (3, 11)), ("4.5 LTS", (3, 11)), ("5.0", (3, 11)),
                        ("5.1", (3, 13)), ("5.2 LTS", (3, 13))}
    assert build.supported_platforms() == ["linux-x64", "macos-arm64", "macos-x64", "windows-arm64", "windows-x64"]


def test_a_missing_wheel_is_named_with_every_blender_it_leaves_without():
    gaps = build.missing_wheels([w for w in COMPLETE if w != MSGPACK_313_WIN_ARM])
    assert gaps == [
        "Blender 5.1 (Python 3.13) on windows-arm64: no msgpack wheel",
        "Blender 5.2 LTS (Python 3.13) on windows-arm64: no msgpack wheel",
    ]
    # without the stable-ABI wheels, Python 3.13 has no pyzmq anywhere
    gaps = build.missing_wheels([w for w in COMPLETE if "abi3" not in w])
    assert len(gaps) == 8 and all("Python 3.13" in gap and "pyzmq" in gap for gap in gaps)


def test_a_gap_stops_the_build_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "download_wheels", lambda cache: [tmp_path / w for w in COMPLETE if "cp313" not in w])
    with pytest.raises(SystemExit, match="Blender 5.2 LTS \\(Python 3.13\\) on linux-x64: no msgpack wheel"):
        build.build(tmp_path / "dist", True, tmp_path / "cache")
    assert not (tmp_path / "dist").exists()


TRICKY_TOML = """# a comment
name = "A # inside a string"  # a comment after
tags = ["Mesh", "Import-Export",]
wheels = []
escaped = "quote \\" and backslash \\\\ and \\u00e9"

[permissions]
network = "Talks to a backend"
[build.generated]
platforms = ["linux-x64"]
"""

JUNK = {
    "__pycache__/state.cpython-311.pyc": False,
    "protocol/__pycache__/codec.cpython-311.pyc": False,
    ".hidden": False,
    "docs/.git/config": False,
    "old-build.zip": False,
    "assets/scene.blend1": False,
    "assets/scene.blend": True,
    "assets/nested.zip": True,
    "assets/data.tar.gz": True,
    "notes.txt": True,
}
"""Files added to a staged add-on, and whether Blender's default build keeps each."""


def staged(tmp_path, wheels: list[str], junk: dict[str, bool], backend_wheel: Path | None = None):
    """The add-on staged as the build stages it, with stand-in wheels, the ``junk`` files added and
    the backend's wheel when one is given."""
    source = tmp_path / "siren_recon"
    build.stage(source, fake_wheels(tmp_path / "wheels", wheels), backend_wheel)
    for name in junk:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(f"{name}\n")
    return source


def blender_build(source, archive):
    """The zip Blender's own ``build`` makes of ``source``."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    result = blender_tool("build", "--source-dir", str(source), "--output-filepath", str(archive))
    assert result.returncode == 0, result.stdout + result.stderr
    return archive


@pytest.mark.parametrize("text", [
    TRICKY_TOML,
    (REPO / "blender_addon" / "blender_manifest.toml").read_text(encoding="utf-8"),
])
def test_the_manifest_reader_for_python_3_10_reads_what_tomllib_reads(text):
    assert build.read_simple_toml(text) == tomllib.loads(text)


def test_toml_the_python_3_10_reader_does_not_know_stops_the_build():
    with pytest.raises(SystemExit, match="line 2"):
        build.read_simple_toml('id = "x"\ntags = [\n  "Mesh",\n]\n')


@needs_blender_tool
def test_the_zip_holds_what_blenders_own_build_puts_in_it(tmp_path):
    source = staged(tmp_path, COMPLETE[:3], JUNK)
    (source / "linked.py").symlink_to(source / "__init__.py")
    ours = build.write_archive(source, tmp_path)
    blenders = blender_build(source, tmp_path / "blender" / ours.name)
    assert ours.name == "siren_recon-0.1.0.zip"
    assert zip_contents(ours) == zip_contents(blenders)
    names = zipfile.ZipFile(ours).namelist()
    assert names[:4] == ["blender_manifest.toml", *(f"wheels/{w}" for w in sorted(COMPLETE[:3]))]
    assert {name for name, kept in JUNK.items() if kept} <= set(names)
    assert not {name for name, kept in JUNK.items() if not kept} & set(names)
    assert "linked.py" not in names
    stored = {name for name, (_, method) in zip_contents(ours).items() if method == zipfile.ZIP_STORED}
    assert stored == {*(f"wheels/{w}" for w in COMPLETE[:3]), "assets/nested.zip", "assets/data.tar.gz"}


@needs_blender_tool
def test_a_python_without_bpy_builds_the_zip_blender_validates(tmp_path):
    python = python_without_bpy()
    if python is None:
        pytest.skip("no Python 3.10+ without bpy on this machine")
    fake_wheels(tmp_path / "cache", COMPLETE)
    result = subprocess.run([str(python), "-I", str(REPO / "scripts" / "build_addon.py"),
                             "--output", str(tmp_path / "dist"), "--wheel-cache", str(tmp_path / "cache")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    archive = tmp_path / "dist" / "siren_recon-0.1.0.zip"
    assert result.stdout.strip() == str(archive)
    validated = blender_tool("validate", str(archive))
    assert validated.returncode == 0, validated.stdout + validated.stderr
    with zipfile.ZipFile(archive) as ours:  # the backend's wheel, built by that Python, rides along
        carried = [name for name in ours.namelist() if name.startswith("backend_wheel/siren_recon-")]
        assert len(carried) == 1 and carried[0].endswith("-py3-none-any.whl")
        backend_wheel = Path(ours.extract(carried[0], tmp_path / "carried"))
    blenders = blender_build(staged(tmp_path / "again", COMPLETE, {}, backend_wheel), tmp_path / "blender.zip")
    assert zip_contents(archive) == zip_contents(blenders)
    manifest = tomllib.loads(zipfile.ZipFile(archive).read("blender_manifest.toml").decode())
    assert sorted(manifest["wheels"]) == sorted(f"./wheels/{w}" for w in COMPLETE)
    assert manifest["platforms"] == build.supported_platforms()


BAD_MANIFESTS = {
    "a doubled separator in the id": ('id = "siren_recon"', 'id = "siren__recon"'),
    "a tagline ending in a full stop": ('live"', 'live."'),
    "a tagline over 64 characters": ('live"', 'live and then some more words to pass the limit"'),
    "a two-number version": ('version = "0.1.0"', 'version = "0.1"'),
    "a two-number Blender version": ('"4.2.0"', '"4.2"'),
    "an unknown type": ('"add-on"', '"addon"'),
    "no license": ('license = ["SPDX:MIT"]', "license = []"),
    "no maintainer": ('maintainer = "siren-recon developers"', ""),
    "an unknown permission": ("network =", "internet ="),
    "a wheel that is not a .whl": ("wheels = []", 'wheels = ["./wheels/pyzmq.zip"]'),
}


def manifest_zip(archive, changes: tuple[str, str] | None, init: bool = True):
    """A zip of the add-on's manifest (platforms filled in, as the build does) with one text ``changes``."""
    text = (REPO / "blender_addon" / "blender_manifest.toml").read_text(encoding="utf-8")
    text = text.replace("platforms = []", 'platforms = ["linux-x64"]')
    if changes is not None:
        assert changes[0] in text
        text = text.replace(*changes, 1)
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("blender_manifest.toml", text)
        if init:
            zipped.writestr("__init__.py", "")
    return archive


@needs_blender_tool
@pytest.mark.parametrize("change", [None, *BAD_MANIFESTS.values()], ids=["valid", *BAD_MANIFESTS])
def test_the_build_refuses_the_manifests_blender_refuses(tmp_path, change):
    archive = manifest_zip(tmp_path / "extension.zip", change)
    accepted_here = build.archive_errors(archive) == []
    accepted_by_blender = blender_tool("validate", str(archive)).returncode == 0
    assert accepted_here == accepted_by_blender == (change is None)


@needs_blender_tool
def test_an_add_on_without_init_is_refused_as_blender_refuses_it(tmp_path):
    archive = manifest_zip(tmp_path / "no-init.zip", None, init=False)
    assert build.archive_errors(archive) == ["an add-on needs __init__.py beside the manifest"]
    assert blender_tool("validate", str(archive)).returncode != 0


def test_building_the_backend_wheel_leaves_setuptools_importable_in_the_same_process(tmp_path):
    """The build runs in test processes that later compile with torch (which imports setuptools)."""
    code = ("import sys, pathlib; sys.path.insert(0, '.'); from tests.addon_build import load_build_script; "
            f"print(load_build_script().build_backend_wheel(pathlib.Path({str(tmp_path)!r})).name); "
            "import setuptools")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().startswith("siren_recon-0.1.0-")
