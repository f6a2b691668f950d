"""The extension build's wheel check: which bundled wheel installs on which Blender, and the gaps."""

from __future__ import annotations

import pytest

from .addon_build import load_build_script

build = load_build_script()

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
