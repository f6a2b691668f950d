#!/usr/bin/env python3
"""Build the Blender extension zip: the add-on, the vendored protocol, and pyzmq/msgpack wheels.

    python scripts/build_addon.py                # -> dist/siren_recon-<version>.zip, built and checked
    python scripts/build_addon.py --no-wheels    # without bundled wheels (pyzmq/msgpack already in Blender)

Any Python 3.10 or newer runs it, on Windows, macOS or Linux, with nothing installed but pip
(and pip only to download the wheels).

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

The zip is the one ``blender --command extension build`` makes of the staged add-on, written
here with ``zipfile`` by the same rules: ``blender_manifest.toml`` at the root, then the wheels
the manifest lists (``./wheels/<file>.whl``), then every other file except those Blender's
default build leaves out (``__pycache__`` folders, dot-files and dot-folders, ``*.zip`` at the
root, ``*.blend1`` to ``*.blend9`` backups, symbolic links); wheels and other archives stored,
the rest deflated; named ``<id>-<version>.zip``. The zip is then checked as
``blender --command extension validate`` checks one: a manifest whose keys Blender accepts,
``__init__.py`` beside it, and each listed wheel inside. Where this Python has the ``bpy``
wheel, Blender's own tool (``bpy/<version>/scripts/addons_core/bl_pkg/cli/blender_ext.py``)
validates the zip as well.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

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


MANIFEST = "blender_manifest.toml"

EXCLUDED_ANYWHERE = (".*", "*.blend[1-9]")
"""Names Blender's default build leaves out at any depth, files and folders alike."""

EXCLUDED_AT_ROOT = ("*.zip",)
"""Names it leaves out at the top of the add-on only (extension zips built in place)."""

STORED_SUFFIXES = (".whl", ".zip", ".gz", ".bz2", ".xz", ".lzma", ".lz4", ".zst", ".rar",
                   ".tgz", ".tbz2", ".txz", ".tzst")
"""Files Blender stores in the zip uncompressed: they are compressed already."""

TOML_STRING = r'"(?:[^"\\\n]|\\.)*"'
TOML_VALUE = re.compile(rf'({TOML_STRING}|\[\s*(?:{TOML_STRING}\s*,\s*)*(?:{TOML_STRING}\s*)?\])\s*(?:#.*)?')
TOML_PAIR = re.compile(r"([A-Za-z0-9_-]+)\s*=\s*(.*)")
TOML_TABLE = re.compile(r"\[([A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*)\]\s*(?:#.*)?")
"""The TOML a manifest is read in without ``tomllib``: basic strings, one-line lists of them, table headers."""

SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
PERMISSIONS = ("files", "network", "clipboard", "camera", "microphone")
"""The permissions an extension may ask for."""
TERSE_LIMIT = 64
"""The most characters Blender allows in a tagline or a permission's reason."""


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
    """The Blender platform names the zip installs on: every platform of every row of ``blenders``."""
    return sorted({platform for blender in blenders for platform in blender.platforms})


def vendor_protocol(target: Path) -> None:
    """Copy the ``protocol`` package to ``target`` (the add-on imports it relatively)."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(PROTOCOL, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def cached_wheels(cache: Path, package: str, version: str, python: tuple[int, int], platform: str) -> list[Path]:
    """The wheels of ``package==version`` in ``cache`` that install on that Python and platform."""
    return [w for w in sorted(cache.glob(f"{package}-{version}-*.whl")) if wheel_fits(w.name, python, platform)]


def run_pip(args: list[str], what: str) -> None:
    """Run this Python's pip with ``args``; a Python without pip stops the build saying so.

    Whether pip is there is asked of pip itself, not of ``importlib.util.find_spec("pip")``: in a
    process with setuptools installed, that look-up makes setuptools' distutils shim believe pip
    runs here, and a later ``import setuptools`` in the same process (torch.compile's) then fails.
    """
    done = subprocess.run([sys.executable, "-m", "pip", *args], stderr=subprocess.PIPE, text=True)
    if done.returncode != 0 and "No module named pip" in done.stderr:
        raise SystemExit(f"pip is needed to {what} (python -m ensurepip installs it)")
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise subprocess.CalledProcessError(done.returncode, done.args)


def pip_download(cache: Path, package: str, version: str, python: tuple[int, int], platform: str) -> None:
    """Download the wheel of ``package==version`` for that Python and Blender platform into ``cache`` with pip."""
    flags = [flag for tag in PLATFORM_TAGS[platform] for flag in ("--platform", tag)]
    run_pip(["download", "--quiet", "--only-binary=:all:", "--no-deps", "--python-version",
             f"{python[0]}.{python[1]}", "--implementation", "cp", *flags, "-d", str(cache), f"{package}=={version}"],
            f"download the {package} wheels into {cache}, or build with --no-wheels")


def download_wheels(cache: Path, blenders=BLENDERS) -> list[Path]:
    """One wheel of each package for each (Python, platform) of ``blenders``, deduplicated."""
    cache.mkdir(parents=True, exist_ok=True)
    chosen: set[Path] = set()
    for python, platform in sorted({(b.python, p) for b in blenders for p in b.platforms}):
        for package, version in WHEELS.items():
            existing = cached_wheels(cache, package, version, python, platform)
            if not existing:
                pip_download(cache, package, version, python, platform)
                existing = cached_wheels(cache, package, version, python, platform)
            chosen.update(existing[:1])
    return sorted(chosen)


def build_backend_wheel(output: Path) -> Path:
    """The backend package (``siren_recon``, without its dependencies) as a wheel in ``output``:
    the add-on's *Install Backend* installs it, and its dependencies, into Blender's Python."""
    run_pip(["wheel", "--quiet", "--no-deps", "-w", str(output), str(REPO)], "build the backend wheel")
    return next(output.glob("siren_recon-*.whl"))


def stage(target: Path, wheels: list[Path], backend_wheel: Path | None = None) -> None:
    """Lay out the add-on as the zip holds it in ``target``: protocol vendored, wheels and platforms
    listed, the backend's wheel in ``backend_wheel/`` (not a wheel Blender installs itself)."""
    shutil.copytree(ADDON, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "protocol", "wheels"))
    vendor_protocol(target / "protocol")
    if backend_wheel is not None:
        (target / "backend_wheel").mkdir()
        shutil.copy2(backend_wheel, target / "backend_wheel" / backend_wheel.name)
    (target / "wheels").mkdir()
    for wheel in wheels:
        shutil.copy2(wheel, target / "wheels" / wheel.name)
    manifest = target / MANIFEST
    text = manifest.read_text(encoding="utf-8")
    listed = ", ".join(f'"./wheels/{w.name}"' for w in wheels)
    platforms = ", ".join(f'"{p}"' for p in supported_platforms())
    for key, value in (("wheels", listed), ("platforms", platforms)):
        text, count = re.subn(rf"^{key} = \[\]$", f"{key} = [{value}]", text, flags=re.M)
        if count != 1:
            raise SystemExit(f"{MANIFEST} must contain the line '{key} = []'")
    manifest.write_text(text, encoding="utf-8", newline="\n")


def read_simple_toml(text: str) -> dict:
    """A TOML document in the subset extension manifests use, read without ``tomllib`` (Python 3.10).

    Tables, and keys whose value is a basic string or a one-line array of basic strings, with
    comments; anything else stops the build, naming the line.
    """
    document: dict = {}
    table = document
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if header := TOML_TABLE.fullmatch(line):
            table = document
            for part in header.group(1).split("."):
                table = table.setdefault(part, {})
        elif (pair := TOML_PAIR.fullmatch(line)) and (value := TOML_VALUE.fullmatch(pair.group(2))):
            table[pair.group(1)] = ast.literal_eval(value.group(1))
        else:
            raise SystemExit(f"{MANIFEST}, line {number}: TOML beyond what the build reads on Python 3.10 "
                             "(strings and one-line lists of strings); build with Python 3.11 or newer")
    return document


def read_manifest(text: str) -> dict:
    """An extension manifest's tables and keys: by ``tomllib`` on Python 3.11+, else :func:`read_simple_toml`."""
    try:
        import tomllib
    except ModuleNotFoundError:
        return read_simple_toml(text)
    return tomllib.loads(text)


def text_error(value: str) -> str | None:
    """What Blender objects to in a name-like string: empty, padded with white space, control characters."""
    if not value.strip():
        return "a non-empty string expected"
    if value != value.strip():
        return "text without leading or trailing white space expected"
    if CONTROL_CHARACTERS.search(value):
        return "text without control characters expected"
    return None


def terse_error(value: str) -> str | None:
    """What Blender objects to in a tagline or a permission's reason: too long, or ending in punctuation."""
    if len(value) > TERSE_LIMIT:
        return f"at most {TERSE_LIMIT} characters expected, found {len(value)}"
    if error := text_error(value):
        return error
    if not (value[-1].isalnum() or value[-1] in ")]}"):
        return "must not end with punctuation"
    return None


def id_error(value: str) -> str | None:
    """What Blender objects to in an extension id: not a Python identifier, or ``_`` doubled or at an end."""
    if not value.isidentifier() or "__" in value or value.startswith("_") or value.endswith("_"):
        return "a Python identifier without doubled, leading or trailing '_' expected"
    return None


def version_error(value: str) -> str | None:
    """What Blender objects to in a version: not a semantic version (``1.2.3``, ``1.2.3-rc.1``)."""
    return None if SEMVER.fullmatch(value) else f"a semantic version expected, found {value!r}"


def blender_version_error(value: str) -> str | None:
    """What Blender objects to in a Blender version: not three numbers (``4.2.0``)."""
    parts = value.split(".")
    return None if len(parts) == 3 and all(p.isdigit() for p in parts) else f"X.Y.Z expected, found {value!r}"


def type_error(value: str) -> str | None:
    """What Blender objects to in an extension type: neither an add-on nor a theme."""
    return None if value in ("add-on", "theme") else f"'add-on' or 'theme' expected, found {value!r}"


def strings_error(value: list) -> str | None:
    """What Blender objects to in a list of strings (license, tags, platforms): empty, or a blank item."""
    if not value:
        return "a non-empty list expected"
    if not all(isinstance(item, str) and item.strip() for item in value):
        return "non-empty strings expected"
    return None


def permissions_error(value: dict) -> str | None:
    """What Blender objects to in the permissions table: an unknown key or a reason it refuses."""
    for key, reason in value.items():
        if key not in PERMISSIONS:
            return f"{key!r} is not one of {', '.join(PERMISSIONS)}"
        if not isinstance(reason, str) or (error := terse_error(reason)):
            return f"{key}: {error if isinstance(reason, str) else 'a string expected'}"
    return None


def wheels_error(value: list) -> str | None:
    """What Blender objects to in the wheel list: paths that are not forward-slashed wheel file names."""
    for wheel in value:
        if not isinstance(wheel, str) or text_error(wheel) or '"' in wheel or "\\" in wheel:
            return f"a forward-slashed path expected, found {wheel!r}"
        name = wheel.rsplit("/", 1)[-1]
        if not name.lower().endswith(".whl") or not 5 <= len(name.split("-")) <= 6:
            return f"a wheel file name (name-version-python-abi-platform.whl) expected, found {wheel!r}"
    return None


MANIFEST_FIELDS = {
    "id": (str, True, id_error),
    "schema_version": (str, True, version_error),
    "name": (str, True, text_error),
    "tagline": (str, True, terse_error),
    "version": (str, True, version_error),
    "type": (str, True, type_error),
    "maintainer": (str, True, text_error),
    "license": (list, True, strings_error),
    "blender_version_min": (str, True, blender_version_error),
    "blender_version_max": (str, False, lambda value: blender_version_error(value) if value else None),
    "website": (str, False, text_error),
    "permissions": (dict, False, permissions_error),
    "tags": (list, False, strings_error),
    "platforms": (list, False, strings_error),
    "wheels": (list, False, wheels_error),
}
"""The manifest keys Blender reads: each one's type, whether it is required, and its check."""


def manifest_errors(manifest: dict) -> list[str]:
    """Everything Blender's ``validate`` objects to in a manifest's keys, as messages."""
    errors = []
    for key, (kind, required, check) in MANIFEST_FIELDS.items():
        if key not in manifest:
            errors += [f"missing {key!r}"] if required else []
        elif not isinstance(manifest[key], kind):
            errors.append(f"{key!r} must be a {kind.__name__}")
        elif error := check(manifest[key]):
            errors.append(f"{key!r}: {error}")
    return errors


def entry_name(path: str) -> str:
    """A path the manifest lists (``./wheels/x.whl``) as the zip entry Blender makes of it (``wheels/x.whl``)."""
    name = re.sub("/+", "/", path)
    while name.startswith("./"):
        name = name[2:]
    return name


def excluded(relative: PurePosixPath, is_dir: bool) -> bool:
    """Whether Blender's default build leaves this file or folder (relative to the add-on) out of the zip."""
    name = relative.name
    if is_dir and name == "__pycache__":
        return True
    if any(fnmatchcase(name, pattern) for pattern in EXCLUDED_ANYWHERE):
        return True
    return len(relative.parts) == 1 and any(fnmatchcase(name, pattern) for pattern in EXCLUDED_AT_ROOT)


def source_files(source: Path, folder: Path | None = None) -> list[PurePosixPath]:
    """The files under ``source`` that Blender's default build takes, relative to it, sorted."""
    files = []
    for entry in sorted((folder or source).iterdir()):
        relative = PurePosixPath(entry.relative_to(source).as_posix())
        if entry.is_symlink() or excluded(relative, entry.is_dir()):
            continue
        if entry.is_dir():
            files += source_files(source, entry)
        elif entry.is_file():
            files.append(relative)
    return files


def archive_entries(source: Path, manifest: dict) -> list[str]:
    """The zip's entries in Blender's order: the manifest, the wheels it lists, then the other files."""
    first = [MANIFEST, *(entry_name(wheel) for wheel in manifest.get("wheels", []))]
    taken = {name.lower() for name in first}
    return first + [str(path) for path in source_files(source) if str(path).lower() not in taken]


def write_archive(source: Path, output: Path) -> Path:
    """Zip the staged add-on in ``source`` as ``output/<id>-<version>.zip``, as Blender's ``build`` does."""
    manifest = read_manifest((source / MANIFEST).read_text(encoding="utf-8"))
    if errors := manifest_errors(manifest):
        raise SystemExit(f"{MANIFEST}:\n  " + "\n  ".join(errors))
    if "build" in manifest:
        raise SystemExit(f"{MANIFEST}: a [build] table is not supported, the zip follows Blender's default rules")
    archive = output / f"{manifest['id']}-{manifest['version']}.zip"
    partial = output / f".{archive.name}"
    try:
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=9, strict_timestamps=False) as zipped:
            for name in archive_entries(source, manifest):
                stored = name.lower().endswith(STORED_SUFFIXES)
                zipped.write(source / name, name, compress_type=zipfile.ZIP_STORED if stored else None)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, archive)
    return archive


def archive_errors(archive: Path) -> list[str]:
    """What Blender's ``validate`` objects to in an extension zip, and listed wheels the zip lacks."""
    with zipfile.ZipFile(archive) as zipped:
        names = set(zipped.namelist())
        if MANIFEST not in names:
            return [f"no {MANIFEST} at the root of the zip"]
        manifest = read_manifest(zipped.read(MANIFEST).decode("utf-8"))
    errors = manifest_errors(manifest)
    if manifest.get("type") == "add-on" and "__init__.py" not in names:
        errors.append("an add-on needs __init__.py beside the manifest")
    wheels = manifest.get("wheels", [])
    listed = wheels if isinstance(wheels, list) else []
    return errors + [f"{wheel} is listed but not in the zip" for wheel in listed if entry_name(wheel) not in names]


def blender_extension_tool() -> Path | None:
    """Blender's extension command-line tool in this Python's ``bpy`` wheel, or None without bpy."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        return None
    found = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    return found[-1] if found else None


def check_archive(archive: Path) -> None:
    """Stop the build if the zip is not a valid extension, by Blender's own tool too where bpy is here."""
    if errors := archive_errors(archive):
        raise SystemExit(f"{archive}:\n  " + "\n  ".join(errors))
    if (tool := blender_extension_tool()) is not None:
        subprocess.run([sys.executable, str(tool), "validate", str(archive)], check=True)


def build(output: Path, with_wheels: bool, cache: Path) -> Path:
    """Build and check the extension zip in ``output``, with wheels from (or downloaded into) ``cache``."""
    wheels = download_wheels(cache) if with_wheels else []
    if with_wheels and (gaps := missing_wheels([w.name for w in wheels])):
        raise SystemExit("the bundled wheels leave gaps:\n  " + "\n  ".join(gaps))
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "siren_recon"
        stage(source, wheels, build_backend_wheel(Path(tmp) / "backend"))
        archive = write_archive(source, output)
    check_archive(archive)
    return archive


def main() -> int:
    """Build the zip from the command line and print where it is."""
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
