#!/usr/bin/env python3
"""Build the Blender extension zip: the add-on, the vendored protocol, and pyzmq/msgpack wheels.

    python scripts/build_addon.py                # -> dist/siren_recon-<version>.zip, built and validated
    python scripts/build_addon.py --no-wheels    # without bundled wheels (pyzmq/msgpack already in Blender)

Wheels for Windows x64, Linux x64, macOS arm64 and macOS x64 (Python 3.11, Blender 4.2+) are
downloaded with pip into ``build/wheels`` (kept between runs) and listed in the manifest's
``wheels``. The build and the validation use Blender's own extension tool, which the ``bpy``
wheel ships (``bpy/<version>/scripts/addons_core/bl_pkg/cli/blender_ext.py``).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ADDON = REPO / "blender_addon"
PROTOCOL = REPO / "protocol"
WHEELS = {"pyzmq": "27.3.0", "msgpack": "1.2.4"}
PLATFORMS = {
    "windows-x64": ["win_amd64"],
    "linux-x64": ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    "macos-arm64": ["macosx_11_0_arm64", "macosx_12_0_arm64", "macosx_14_0_arm64", "macosx_10_15_universal2"],
    "macos-x64": ["macosx_10_9_x86_64", "macosx_10_15_x86_64", "macosx_10_15_universal2"],
}
PYTHON_VERSION = "3.11"


def vendor_protocol(target: Path) -> None:
    """Copy the ``protocol`` package to ``target`` (the add-on imports it relatively)."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(PROTOCOL, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def download_wheels(cache: Path) -> list[Path]:
    cache.mkdir(parents=True, exist_ok=True)
    for platforms in PLATFORMS.values():
        flags = [flag for platform in platforms for flag in ("--platform", platform)]
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--no-deps",
             "--python-version", PYTHON_VERSION, "--implementation", "cp", *flags, "-d", str(cache),
             *(f"{name}=={version}" for name, version in WHEELS.items())],
            check=True,
        )
    wanted = [w for w in sorted(cache.glob("*.whl")) if any(w.name.startswith(f"{n}-{v}-") for n, v in WHEELS.items())]
    return wanted


def extension_tool() -> Path:
    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        raise SystemExit("the bpy package is needed to build (pip install bpy==5.0.1)")
    found = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        raise SystemExit("bpy is installed but its extension tool (blender_ext.py) was not found")
    return found[-1]


def stage(target: Path, wheels: list[Path]) -> None:
    shutil.copytree(ADDON, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "protocol", "wheels"))
    vendor_protocol(target / "protocol")
    (target / "wheels").mkdir()
    for wheel in wheels:
        shutil.copy2(wheel, target / "wheels" / wheel.name)
    manifest = target / "blender_manifest.toml"
    listed = ", ".join(f'"./wheels/{w.name}"' for w in wheels)
    text, count = re.subn(r"^wheels = \[\]$", f"wheels = [{listed}]", manifest.read_text(), flags=re.M)
    if count != 1:
        raise SystemExit("blender_manifest.toml must contain the line 'wheels = []'")
    manifest.write_text(text)


def build(output: Path, with_wheels: bool, cache: Path) -> Path:
    tool = extension_tool()
    wheels = download_wheels(cache) if with_wheels else []
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "siren_recon"
        stage(source, wheels)
        version = re.search(r'^version = "([^"]+)"', (source / "blender_manifest.toml").read_text(), re.M).group(1)
        archive = output / f"siren_recon-{version}.zip"
        subprocess.run([sys.executable, str(tool), "build", "--source-dir", str(source), "--output-filepath", str(archive)],
                       check=True)
    subprocess.run([sys.executable, str(tool), "validate", str(archive)], check=True)
    return archive


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=str(REPO / "dist"))
    parser.add_argument("--no-wheels", action="store_true", help="do not bundle pyzmq/msgpack wheels")
    parser.add_argument("--wheel-cache", default=str(REPO / "build" / "wheels"))
    args = parser.parse_args()
    archive = build(Path(args.output), not args.no_wheels, Path(args.wheel_cache))
    print(archive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
