#!/usr/bin/env python3
"""Build the Blender extension zip: the add-on, the vendored protocol, and pyzmq/msgpack wheels.

    python scripts/build_addon.py                # -> dist/siren_recon-<version>.zip, built and validated
    python scripts/build_addon.py --no-wheels    # without bundled wheels (pyzmq/msgpack already in Blender)

One zip serves every Blender in ``BLENDERS``: each row is a Blender release, the Python it embeds
and the platforms blender.org publishes it for. Blender 4.2 LTS to 5.0 embed Python 3.11, 5.1 and
5.2 LTS Python 3.13 (with NumPy 2); Windows on Arm builds exist from 4.3 on; 4.5 LTS is the last
release with macOS Intel builds; there are no official Linux arm64 builds. At install Blender
keeps only the bundled wheels whose tags fit its own Python and platform, so the zip carries,
for each of pyzmq and msgpack, a wheel for every (Python, platform) pair in the table:
pyzmq's stable-ABI (``abi3``) and macOS ``universal2`` wheels cover several at once; msgpack
ships one wheel per Python and platform. The wheels are downloaded with pip into
``build/wheels`` (kept between runs); the build fails, naming the gap, if any row of the table
is left without a wheel that installs there. The manifest's ``platforms`` is the union of the
table's platforms.

The build and the validation use Blender's own extension tool, which the ``bpy`` wheel ships
(``bpy/<version>/scripts/addons_core/bl_pkg/cli/blender_ext.py``).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ADDON = REPO / "blender_addon"
PROTOCOL = REPO / "protocol"
WHEELS = {"pyzmq": "27.3.0", "msgpack": "1.2.4"}


@dataclass(frozen=True)
class Blender:
    """A Blender release the zip must install on: the Python it embeds and its platforms."""

    version: str
    python: tuple[int, int]
    platforms: tuple[str, ...]


BLENDERS = (
    Blender("4.2 LTS", (3, 11), ("windows-x64", "linux-x64", "macos-arm64", "macos-x64")),
    Blender("4.5 LTS", (3, 11), ("windows-x64", "windows-arm64", "linux-x64", "macos-arm64", "macos-x64")),
    Blender("5.0", (3, 11), ("windows-x64", "windows-arm64", "linux-x64", "macos-arm64")),
    Blender("5.1", (3, 13), ("windows-x64", "windows-arm64", "linux-x64", "macos-arm64")),
    Blender("5.2 LTS", (3, 13), ("windows-x64", "windows-arm64", "linux-x64", "macos-arm64")),
)

PLATFORM_TAGS = {
    "windows-x64": ["win_amd64"],
    "windows-arm64": ["win_arm64"],
    "linux-x64": ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    "macos-arm64": ["macosx_11_0_arm64", "macosx_12_0_arm64", "macosx_14_0_arm64", "macosx_10_15_universal2"],
    "macos-x64": ["macosx_10_9_x86_64", "macosx_10_15_x86_64", "macosx_10_15_universal2"],
}
"""Wheel platform tags pip may choose for each Blender platform (Blender 4.2+ needs macOS 11 and glibc 2.28)."""


MACHINE_TAGS = {"x64": "x86_64", "arm64": "arm64"}
"""The machine part of Linux and macOS wheel tags, by Blender's name for the machine."""


def platform_fits(wheel_platform: str, platform: str) -> bool:
    """Whether a wheel's platform tag (possibly compressed, ``a.b``) installs on a Blender platform.

    As Blender decides at install: Windows by exact tag; Linux any ``manylinux`` tag of the same
    machine (the glibc version is not checked); macOS any version of the same machine or
    ``universal2``.
    """
    system, machine = platform.split("-")
    for tag in wheel_platform.split("."):
        if system == "windows" and tag == {"x64": "win_amd64", "arm64": "win_arm64"}[machine]:
            return True
        if system == "linux" and tag.startswith("manylinux") and tag.endswith("_" + MACHINE_TAGS[machine]):
            return True
        mac_suffixes = ("_universal2", f"_{MACHINE_TAGS[machine]}")
        if system == "macos" and tag.startswith("macosx_") and tag.endswith(mac_suffixes):
            return True
    return False


def python_fits(python_tag: str, abi_tag: str, python: tuple[int, int]) -> bool:
    """Whether a wheel's Python and ABI tags install on CPython ``python``.

    ``cp311-cp311`` only on 3.11; ``cp312-abi3`` on 3.12 and newer (the stable ABI); ``py3`` on any 3.x.
    """
    for tag in python_tag.split("."):
        match = re.fullmatch(r"(cp|py)(\d)(\d*)", tag)
        if match is None or int(match.group(2)) != python[0]:
            continue
        if not match.group(3):
            return True
        minor = int(match.group(3))
        if minor == python[1] or ("abi3" in abi_tag.split(".") and minor <= python[1]):
            return True
    return False


def wheel_fits(wheel: str, python: tuple[int, int], platform: str) -> bool:
    """Whether the wheel file ``name-version-python-abi-platform.whl`` installs on that Blender."""
    python_tag, abi_tag, platform_tag = Path(wheel).stem.split("-")[-3:]
    return python_fits(python_tag, abi_tag, python) and (platform_tag == "any" or platform_fits(platform_tag, platform))


def missing_wheels(wheels: list[str], blenders=BLENDERS, packages=WHEELS) -> list[str]:
    """Every (Blender, platform, package) with no wheel among ``wheels`` that installs there."""
    gaps = []
    for blender in blenders:
        for platform in blender.platforms:
            for package in packages:
                if not any(Path(w).name.split("-")[0].lower() == package and wheel_fits(w, blender.python, platform)
                           for w in wheels):
                    python = f"{blender.python[0]}.{blender.python[1]}"
                    gaps.append(f"Blender {blender.version} (Python {python}) on {platform}: no {package} wheel")
    return gaps


def supported_platforms(blenders=BLENDERS) -> list[str]:
    return sorted({platform for blender in blenders for platform in blender.platforms})


def vendor_protocol(target: Path) -> None:
    """Copy the ``protocol`` package to ``target`` (the add-on imports it relatively)."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(PROTOCOL, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def cached_wheels(cache: Path, package: str, version: str, python: tuple[int, int], platform: str) -> list[Path]:
    """The wheels of ``package==version`` in ``cache`` that install on that Python and platform."""
    return [w for w in sorted(cache.glob(f"{package}-{version}-*.whl")) if wheel_fits(w.name, python, platform)]


def download_wheels(cache: Path, blenders=BLENDERS) -> list[Path]:
    """One wheel of each package for each (Python, platform) of ``blenders``, deduplicated."""
    cache.mkdir(parents=True, exist_ok=True)
    chosen: set[Path] = set()
    for python, platform in sorted({(b.python, p) for b in blenders for p in b.platforms}):
        for package, version in WHEELS.items():
            existing = cached_wheels(cache, package, version, python, platform)
            if not existing:
                flags = [flag for tag in PLATFORM_TAGS[platform] for flag in ("--platform", tag)]
                subprocess.run(
                    [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--no-deps",
                     "--python-version", f"{python[0]}.{python[1]}", "--implementation", "cp", *flags,
                     "-d", str(cache), f"{package}=={version}"],
                    check=True,
                )
                existing = cached_wheels(cache, package, version, python, platform)
            chosen.update(existing[:1])
    return sorted(chosen)


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
    text = manifest.read_text()
    listed = ", ".join(f'"./wheels/{w.name}"' for w in wheels)
    platforms = ", ".join(f'"{p}"' for p in supported_platforms())
    for key, value in (("wheels", listed), ("platforms", platforms)):
        text, count = re.subn(rf"^{key} = \[\]$", f"{key} = [{value}]", text, flags=re.M)
        if count != 1:
            raise SystemExit(f"blender_manifest.toml must contain the line '{key} = []'")
    manifest.write_text(text)


def build(output: Path, with_wheels: bool, cache: Path) -> Path:
    tool = extension_tool()
    wheels = download_wheels(cache) if with_wheels else []
    if with_wheels and (gaps := missing_wheels([w.name for w in wheels])):
        raise SystemExit("the bundled wheels leave gaps:\n  " + "\n  ".join(gaps))
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "siren_recon"
        stage(source, wheels)
        version = re.search(r'^version = "([^"]+)"', (source / "blender_manifest.toml").read_text(), re.M).group(1)
        archive = output / f"siren_recon-{version}.zip"
        subprocess.run([sys.executable, str(tool), "build", "--source-dir", str(source),
                        "--output-filepath", str(archive)], check=True)
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
