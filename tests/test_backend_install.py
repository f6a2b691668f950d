"""Installing the backend from the add-on (blender_addon/backend_install.py), with real pip runs.

The project's Python stands in for Blender's. The install tests use only a local wheel folder
(``--no-index --find-links``) and none of the machine's pip configuration: the folder is made once
(``build/install-test/``, kept between runs) from the backend built from this repository and its
dependencies (a CPU torch). The failure tests run pip against addresses that refuse, a proxy that
wants a password, a server that does not speak TLS, a folder nobody may write to.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from blender_addon import backend_install as bi
from blender_addon import backend_site as bs
from blender_addon.child_python import child_environment, pip_command
from blender_addon.pip_output import PipProgress, classify_failure

from .backend_wheels import backend_wheel_folder
from .paths import REPO

PYTHON = sys.executable
PYTHON_VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"


def isolated_environment() -> dict[str, str]:
    """This process's environment without the machine's pip configuration (files and PIP_ variables)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def pip(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "pip", *args], capture_output=True, text=True, env=env, timeout=1800)


@pytest.fixture(scope="session")
def wheel_folder() -> tuple[Path, Path]:
    """(the backend wheel built from this repository, a folder with its dependencies' wheels)."""
    return backend_wheel_folder()


def local_options(folder: Path, device: str = "cpu") -> bi.InstallOptions:
    return bi.InstallOptions(device=device, find_links=str(folder), local_only=True)


# --- plain logic, no pip --------------------------------------------------------------------------------------


def test_pip_arguments_add_the_pytorch_index_for_the_build_and_the_preferences():
    wheel, target = Path("/z/siren_recon-0.1.0-py3-none-any.whl"), Path("/u/backend/staging-1")
    args = bi.pip_arguments(wheel, target, "cpu", bi.InstallOptions(index_url="https://mirror/simple"), "linux")
    assert args[:3] == ["install", "--target", str(target)]
    assert {"--no-user", "--only-binary"} <= set(args) and "--isolated" not in args
    assert args[args.index("--index-url") + 1] == "https://mirror/simple"
    assert args[args.index("--extra-index-url") + 1] == bi.PYTORCH_CPU_INDEX
    assert args[-1] == str(wheel)
    assert "--extra-index-url" not in bi.pip_arguments(wheel, target, "cpu", bi.InstallOptions(), "darwin")
    assert "--extra-index-url" not in bi.pip_arguments(wheel, target, "cuda", bi.InstallOptions(), "linux")
    windows = bi.pip_arguments(wheel, target, "cuda", bi.InstallOptions(), "win32")
    assert windows[windows.index("--extra-index-url") + 1] == bi.PYTORCH_CUDA_INDEX
    local = bi.pip_arguments(wheel, target, "cpu", local_options(Path("/w")), "linux", raw_progress=True)
    assert local[local.index("--find-links") + 1] == "/w" and "--no-index" in local
    assert "--extra-index-url" not in local and local[local.index("--progress-bar") + 1] == "raw"


def test_the_device_is_cuda_only_where_an_nvidia_driver_is():
    assert bi.resolve_device("auto", "linux", driver=True) == "cuda"
    assert bi.resolve_device("auto", "win32", driver=False) == "cpu"
    assert bi.resolve_device("auto", "darwin", driver=True) == "cpu"
    assert bi.resolve_device("CPU", "linux", driver=True) == "cpu"
    with pytest.raises(ValueError):
        bi.resolve_device("rocm")


def test_versions_wheels_and_status(tmp_path):
    assert bs.version_key("0.10.0") > bs.version_key("0.9.1") and bs.version_key("0+source") == (0,)
    assert bs.addon_version(REPO / "blender_addon") == "0.1.0"
    addon = tmp_path / "addon"
    (addon / bs.WHEEL_FOLDER).mkdir(parents=True)
    assert bs.find_backend_wheel(addon) is None
    for name in ("siren_recon-0.9.0-py3-none-any.whl", f"{bs.WHEEL_FOLDER}/siren_recon-0.10.0-py3-none-any.whl"):
        (addon / name).write_bytes(b"")
    assert bs.find_backend_wheel(addon).name == "siren_recon-0.10.0-py3-none-any.whl"

    user = tmp_path / "user"
    assert bs.install_status(user, "0.1.0", "3.11").state == "missing" and bs.installed_site(user) is None
    site = user / "backend" / "site"
    site.mkdir(parents=True)
    assert bs.installed_site(user) is None, "a site folder without its version file is not an install"
    record = bs.InstallRecord(version="0.1.0", device="cpu", torch="2.13.0+cpu", python="3.11")
    (site / bs.RECORD_FILE).write_text(json.dumps(record.__dict__))
    assert bs.installed_site(user) == site and bs.installed_version(user) == "0.1.0"
    assert bs.install_status(user, "0.1.0", "3.11").line == "Backend 0.1.0 installed (CPU, torch 2.13.0+cpu)"
    assert bs.install_status(user, "0.2.0", "3.11").state == "outdated"
    assert bs.install_status(user, "0.1.0", "3.13").state == "other_python"


def test_repair_swaps_the_new_site_in_and_remove_deletes_it(tmp_path):
    root = tmp_path / "backend"
    (root / "site").mkdir(parents=True)
    (root / "site" / "old").write_text("old")
    staging = root / "staging-x"
    staging.mkdir()
    (staging / "new").write_text("new")
    bs.swap_into_place(staging, root / "site")
    assert sorted(p.name for p in root.iterdir()) == ["site"] and (root / "site" / "new").exists()
    (root / "staging-left-by-a-crash").mkdir()
    assert bs.remove_backend(tmp_path) is True
    assert list(root.iterdir()) == [] and bs.remove_backend(tmp_path) is False


def test_a_full_disk_is_refused_before_pip_runs(tmp_path, monkeypatch):
    monkeypatch.setitem(bi.DISK_NEEDED, "cpu", 10**18)
    wheel = tmp_path / "siren_recon-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    outcome = bi.run_install(PYTHON, wheel, tmp_path / "user", local_options(tmp_path))
    assert not outcome.ok
    assert outcome.line.startswith("Install failed: not enough disk space: the CPU build needs about")
    assert outcome.line.endswith(f"Log: {bs.log_path(tmp_path / 'user')}")
    assert sorted(p.name for p in (tmp_path / "user" / "backend").iterdir()) == ["install.log"]


def test_a_second_install_waits_for_the_first_and_a_dead_ones_lock_is_taken_over(tmp_path):
    wheel = tmp_path / "siren_recon-0.1.0-py3-none-any.whl"
    user = tmp_path / "user"
    lock = user / "backend" / bs.LOCK_FILE
    lock.parent.mkdir(parents=True)
    lock.write_text("1")
    busy = bi.run_install(PYTHON, wheel, user, local_options(tmp_path))
    assert busy.line.startswith("Install failed: another install of the backend is under way")
    assert not bs.log_path(user).exists(), "the running install's log stays as it is"
    os.utime(lock, (0, 0))
    (user / "backend" / "staging-of-the-dead-one").mkdir()
    taken = bi.run_install(PYTHON, wheel, user, local_options(tmp_path))
    assert taken.line.startswith("Install failed: the backend wheel") and "is missing" in taken.line
    assert sorted(p.name for p in (user / "backend").iterdir()) == ["install.log"]


def test_a_user_folder_nobody_may_write_is_one_line(tmp_path):
    with unwritable(tmp_path / "user") as user:
        outcome = bi.run_install(PYTHON, tmp_path / "siren_recon-0.1.0-py3-none-any.whl", user,
                                 local_options(tmp_path))
    assert outcome.line == f"Install failed: no permission to write the install folder. Log: {bs.log_path(user)}"


def test_progress_lines_from_pip_output():
    progress = PipProgress()
    lines = [
        "Looking in links: /w",
        "Processing /w/siren_recon-0.1.0-py3-none-any.whl",
        "Collecting torch==2.13.0",
        "  Downloading torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl (188.2 MB)",
        "Progress 47050000 of 188200000",
        "Collecting numpy<2,>=1.24 (from siren-recon==0.1.0)",
        "  Using cached numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl (18.3 MB)",
        "Installing collected packages: tqdm, numpy, torch, siren-recon",
    ]
    seen = [progress.line for line in lines if progress.feed(line)]
    assert seen == [
        "Processing siren_recon 0.1.0",
        "Collecting torch==2.13.0 (package 1)",
        "Downloading torch 2.13.0+cpu (188.2 MB)",
        "Downloading torch 2.13.0+cpu (188.2 MB) 25%",
        "Collecting numpy<2,>=1.24 (package 2)",
        "Using cached numpy 1.26.4",
        "Installing 4 packages",
    ]


# --- real pip runs that fail --------------------------------------------------------------------------------


class _Proxy407(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.rfile.readline()
        self.wfile.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\n"
                         b"Content-Length: 0\r\n\r\n")


class _PlainHttp(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.rfile.read(5)
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


@contextlib.contextmanager
def serving(handler: Callable[..., socketserver.BaseRequestHandler]) -> Iterator[int]:
    """A local TCP server answering with ``handler`` in a thread; yields its port."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def unwritable(folder: Path) -> Iterator[Path]:
    """``folder``, made so that nobody may create files in it (immutable for root, read-only otherwise)."""
    folder.mkdir()
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode != 0:
            pytest.skip("running as root without chattr: no folder root cannot write to")
        try:
            yield folder
        finally:
            subprocess.run(["chattr", "-i", str(folder)])
    else:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)


def failing_pip(target: Path, *args: str) -> str:
    """Run ``pip install --target`` that must fail; its output."""
    result = pip("install", "--target", str(target), "--retries", "1", "--timeout", "5", *args,
                 env=isolated_environment())
    assert result.returncode != 0
    return result.stdout + result.stderr


@pytest.mark.live
def test_failure_reasons_from_real_pip_runs(tmp_path):
    target = tmp_path / "site"
    refused = failing_pip(target, "--index-url", "http://127.0.0.1:9/simple", "tqdm")
    assert classify_failure(refused) == "no network: the package index could not be reached (127.0.0.1:9)"
    with serving(_Proxy407) as port:
        proxy = failing_pip(target, "--proxy", f"http://127.0.0.1:{port}", "tqdm")
    assert classify_failure(proxy).startswith("the proxy refused the connection")
    with serving(_PlainHttp) as port:
        ssl = failing_pip(target, "--index-url", f"https://127.0.0.1:{port}/simple", "tqdm")
    assert classify_failure(ssl).startswith("SSL error")
    wheels = tmp_path / "wheels"
    got = pip("download", "--no-deps", "-d", str(wheels), "tqdm")
    assert got.returncode == 0, got.stdout + got.stderr
    missing = failing_pip(target, "--no-index", "--find-links", str(wheels), "tqdm", "torch")
    assert classify_failure(missing).startswith("no matching distribution for torch")
    with unwritable(tmp_path / "locked") as locked:
        denied = failing_pip(locked, "--no-index", "--find-links", str(wheels), "tqdm")
    assert classify_failure(denied) == "no permission to write the install folder"
    full = "ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device: '/u/x'"
    assert classify_failure(full) == "no space left on the disk"


@pytest.mark.live
def test_a_python_without_pip_runs_the_pip_that_ensurepip_bundles(tmp_path):
    subprocess.run([PYTHON, "-m", "venv", "--without-pip", str(tmp_path / "env")], check=True, timeout=300)
    python = str(next(p for p in (tmp_path / "env" / "bin" / "python", tmp_path / "env" / "Scripts" / "python.exe")
                      if p.exists()))
    assert subprocess.run([python, "-c", "import pip"], capture_output=True).returncode != 0
    command, version = pip_command(python)
    assert command[0] == python and Path(command[1]).parent.name.startswith("pip-") and version >= (20,)
    assert pip_command(str(tmp_path / "no-python")) is None


@pytest.mark.live
def test_pip_installs_into_the_target_where_the_user_requires_a_virtualenv(tmp_path):
    base = getattr(sys, "_base_executable", sys.executable)
    wheels = tmp_path / "wheels"
    assert pip("download", "--no-deps", "-d", str(wheels), "tqdm").returncode == 0
    env = child_environment({**isolated_environment(), "PIP_REQUIRE_VIRTUALENV": "1"})
    command = [base, "-m", "pip", "install", "--target", str(tmp_path / "site"), "--no-user", "--no-index",
               "--find-links", str(wheels), "tqdm"]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "tqdm" / "__init__.py").exists()


@pytest.mark.slow
@pytest.mark.live
def test_progress_lines_from_a_real_download(wheel_folder, tmp_path):
    """pip downloads numpy from a local web server: its ``Downloading`` and ``Progress`` lines become percentages."""
    numpy = next(wheel_folder[1].glob("numpy-*.whl"))
    (tmp_path / "served").mkdir()
    (tmp_path / "served" / numpy.name).symlink_to(numpy)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "served"))
    with serving(handler) as port:
        args = bi.pip_arguments(numpy, tmp_path / "site", "cpu", local_options(Path("x")), raw_progress=True)
        args[args.index("--find-links") + 1] = f"http://127.0.0.1:{port}/"
        args[-1] = "numpy"
        result = pip(*args, "--no-deps", "--no-cache-dir", env=isolated_environment())
    assert result.returncode == 0, result.stdout + result.stderr
    progress = PipProgress()
    seen = [progress.line for line in result.stdout.splitlines() if progress.feed(line)]
    name = " ".join(numpy.name.split("-")[:2])
    assert seen[1].startswith(f"Downloading {name} (") and seen[2] == f"{seen[1]} 0%", seen
    assert seen[-3:] == [f"{seen[1]} 100%", "Installing 1 package", "Installed; checking it"], seen


# --- a real install from the local wheel folder ---------------------------------------------------------------


@pytest.fixture(scope="module")
def installed(wheel_folder, tmp_path_factory):
    """One real install of the backend into a fresh user folder: (wheel, user folder, outcome, progress lines)."""
    wheel, deps = wheel_folder
    user = tmp_path_factory.mktemp("user")
    lines: list[str] = []
    outcome = bi.run_install(PYTHON, wheel, user, local_options(deps), lines.append, environ=isolated_environment())
    print(f"\ninstall: {outcome.seconds:.0f} s, {outcome.size / 1e9:.2f} GB: {outcome.line}")
    return wheel, user, outcome, lines


@pytest.mark.slow
@pytest.mark.live
def test_install_puts_a_checked_backend_into_the_user_folder(installed):
    wheel, user, outcome, lines = installed
    assert outcome.ok, outcome.line + "\n" + outcome.log.read_text()
    site = user / "backend" / "site"
    assert bs.installed_site(user) == site
    assert sorted(p.name for p in (user / "backend").iterdir()) == ["install.log", "site"]
    for package in ("siren_recon", "torch", "numpy", "scipy", "skimage", "zmq", "msgpack", "PIL", "tqdm"):
        assert (site / package / "__init__.py").exists(), package
    record = bs.read_record(user)
    assert record.version == bs.wheel_version(wheel) == bs.addon_version(REPO / "blender_addon")
    assert (record.device, record.python, record.cuda_build) == ("cpu", PYTHON_VERSION, None)
    assert record.torch.startswith("2.13.0")
    assert bs.install_status(user, "0.1.0", PYTHON_VERSION).state == "installed"
    log = outcome.log.read_text()
    assert "Successfully installed" in log and '"faces":' in log and "\nProgress " not in log
    assert any(line.startswith("Installing ") for line in lines) and lines[-1] == outcome.line
    assert outcome.size > 300_000_000


@pytest.mark.slow
@pytest.mark.live
def test_a_failed_repair_keeps_the_install_and_names_the_reason_and_log(installed, wheel_folder, tmp_path):
    wheel, user, _, _ = installed
    deps = wheel_folder[1]
    without_torch = tmp_path / "without-torch"
    without_torch.mkdir()
    for file in deps.glob("*.whl"):
        if not file.name.startswith("torch-"):
            (without_torch / file.name).symlink_to(file)
    for folder in (user, tmp_path / "fresh"):
        outcome = bi.run_install(PYTHON, wheel, folder, local_options(without_torch), environ=isolated_environment())
        assert not outcome.ok
        assert outcome.line.startswith("Install failed: no matching distribution for torch"), outcome.line
        assert outcome.line.endswith(f"Log: {bs.log_path(folder)}") and "\n" not in outcome.line
        assert not list((folder / "backend").glob("staging-*")) and not (folder / "backend" / "install.lock").exists()
    assert bs.installed_site(tmp_path / "fresh") is None and not (tmp_path / "fresh" / "backend" / "site").exists()
    assert bs.installed_version(user) == "0.1.0", "the working install stays"


@pytest.mark.slow
@pytest.mark.live
def test_cancel_stops_pip_and_leaves_nothing(wheel_folder, tmp_path):
    wheel, deps = wheel_folder
    installer = bi.Installer()
    assert installer.start(PYTHON, wheel, tmp_path, local_options(deps), isolated_environment())
    deadline = time.monotonic() + 60
    while not installer.line.startswith(("Processing", "Collecting")) and time.monotonic() < deadline:
        time.sleep(0.1)
    installer.cancel()
    outcome = installer.join(60)
    assert outcome is not None and outcome.line == f"Install failed: cancelled. Log: {bs.log_path(tmp_path)}"
    assert sorted(p.name for p in (tmp_path / "backend").iterdir()) == ["install.log"]


@pytest.mark.slow
@pytest.mark.live
def test_remove_deletes_the_install(installed):
    _, user, _, _ = installed
    assert bs.remove_backend(user) is True
    assert bs.installed_site(user) is None and not (user / "backend" / "site").exists()
    assert bs.install_status(user, "0.1.0", PYTHON_VERSION).state == "missing"


# --- inside Blender (bpy): the operators and the preferences' section ------------------------------------------

ADDON_MODULE = "bl_ext.user_default.siren_recon"


class RecordingLayout:
    """Stands in for a ``UILayout`` in module mode (nothing is drawn there): records labels, props and icons."""

    def __init__(self, calls: list | None = None) -> None:
        self.calls = [] if calls is None else calls

    def __getattr__(self, name: str):
        def call(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            if name == "operator":
                return type("OperatorProperties", (), {})()
            return RecordingLayout(self.calls) if name in ("box", "row", "column") else None

        return call


@pytest.fixture(scope="module")
def blender_addon(tmp_path_factory, wheel_folder):
    """The add-on's zip installed and enabled in bpy, carrying the backend wheel built from this repository."""
    os.environ.setdefault("BLENDER_USER_EXTENSIONS", str(tmp_path_factory.mktemp("extensions")))
    bpy = pytest.importorskip("bpy")
    from .addon_build import load_build_script

    archive = load_build_script().build(tmp_path_factory.mktemp("dist"), True, REPO / "build" / "wheels")
    result = bpy.ops.extensions.package_install_files(filepath=str(archive), repo="user_default",
                                                      enable_on_install=True)
    assert result == {"FINISHED"}
    package = sys.modules[ADDON_MODULE]
    assert list((Path(package.__file__).parent / bs.WHEEL_FOLDER).glob("siren_recon-*.whl"))
    assert hasattr(bpy.types, "SIREN_OT_install_backend")
    yield bpy, sys.modules[f"{ADDON_MODULE}.install_operators"]
    bpy.ops.preferences.addon_disable(module=ADDON_MODULE)


@pytest.mark.blender
@pytest.mark.slow
@pytest.mark.live
def test_the_preferences_install_and_remove_the_backend(blender_addon, wheel_folder, monkeypatch):
    bpy, operators = blender_addon
    for key in [key for key in os.environ if key.startswith("PIP_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    prefs = bpy.context.preferences.addons[ADDON_MODULE].preferences
    user = Path(bpy.utils.extension_path_user(ADDON_MODULE, create=True))

    prefs.install_local_only, prefs.install_wheel_folder = True, ""
    with pytest.raises(RuntimeError, match="needs a wheel folder. Log: "):
        bpy.ops.siren.install_backend(device="CPU", wait=True)

    prefs.install_wheel_folder = str(wheel_folder[1])
    assert bpy.ops.siren.install_backend(device="CPU") == {"FINISHED"}
    assert operators.INSTALLER.running
    outcome = operators.INSTALLER.join(900)
    assert outcome is not None and outcome.ok, outcome.line if outcome else "still running"
    assert bs.installed_site(user) == user / "backend" / "site"
    assert bs.install_status(user, operators.addon_version(), operators.python_version()).state == "installed"

    layout = RecordingLayout()
    operators.draw_install(layout, prefs)
    icons = set(bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys())
    used = {kwargs["icon"] for _, _, kwargs in layout.calls if "icon" in kwargs}
    assert used <= icons, used - icons
    props = {args[1] for name, args, _ in layout.calls if name == "prop"}
    assert props <= set(prefs.bl_rna.properties.keys())
    texts = [kwargs.get("text", "") for _, _, kwargs in layout.calls]
    assert "Backend 0.1.0 installed (CPU, torch 2.13.0+cpu)" in texts and "Repair" in texts
    assert f"Log: {bs.log_path(user)}" in texts

    assert bpy.ops.siren.remove_backend("EXEC_DEFAULT") == {"FINISHED"}
    assert bs.installed_site(user) is None and not (user / "backend" / "site").exists()
