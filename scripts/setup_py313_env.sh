#!/usr/bin/env bash
# Creates .venv-py313: siren-recon on Python 3.13 with NumPy 2 (as Blender 5.1 and 5.2 LTS embed
# them, and as a backend installed into their Python runs), in which scripts/test.sh runs the
# fast lane a second time. torch for Python 3.13 on Linux comes from the registry as its CUDA
# build (about 4.4 GB installed; pip's cache keeps the download for the next set-up). Safe to run
# again: it reinstalls only when pyproject.toml changes. Without a Python 3.13 it says how to get
# one and exits 0; that lane is then skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${SIREN_PY313_VENV:-.venv-py313}"
# shellcheck source=scripts/find_python.sh
source scripts/find_python.sh

if [ ! -x "$VENV/bin/python" ]; then
    if ! PYTHON313="$(find_python 3.13)"; then
        echo "note: no Python 3.13 found, so the fast lane on Python 3.13 with NumPy 2 will be skipped;" \
             "install one (e.g. 'pyenv install 3.13') or set BLENDER_PYTHON" >&2
        exit 0
    fi
    "$PYTHON313" -m venv "$VENV"
fi
stamp="$VENV/.siren-recon-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
    "$VENV/bin/python" -m pip install -q "torch==${TORCH_VERSION:-2.13.0}" >&2
    "$VENV/bin/python" -m pip install -q -e ".[test]" >&2
    echo "$want" > "$stamp"
fi
