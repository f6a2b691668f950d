#!/usr/bin/env bash
# Creates .venv and installs siren-recon with its test tools into it. Safe to run again: it
# reinstalls only when pyproject.toml changed. Used by scripts/demo.sh and scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${SIREN_VENV:-.venv}"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "siren-recon needs Python 3.10 or newer ($("$PYTHON" --version 2>&1) found); set PYTHON=..." >&2
    exit 1
fi

# Open3D's wheel links against libusb-1.0, which a bare Debian/Ubuntu lacks.
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing libusb-1.0-0 (needed by Open3D)" >&2
        (apt-get install -y -qq libusb-1.0-0 >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq libusb-1.0-0; }) >&2
    else
        echo "Open3D needs the system library libusb-1.0: run 'sudo apt-get install libusb-1.0-0' (Debian/Ubuntu) and retry" >&2
        exit 1
    fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.siren-recon-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
    # torch first, pinned, so that the CPU build is taken where one is provided and the
    # range in pyproject.toml is then already satisfied (a bare `torch` pulls CUDA builds).
    if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
        "$VENV/bin/python" -m pip install -q "torch==${TORCH_VERSION:-2.13.0}" >&2
    fi
    "$VENV/bin/python" -m pip install -q -e ".[test]" >&2
    echo "$want" > "$stamp"
fi
