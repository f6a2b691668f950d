#!/usr/bin/env bash
# Creates .venv-blender-5.2: Blender 5.2 as a Python module (bpy 5.2.3 on Python 3.13, with NumPy 2),
# in which the add-on's tests run a second time (Blender 5.1 and 5.2 LTS run Python 3.13; the
# project's own .venv holds bpy 5.0.1 on Python 3.11, as Blender 4.2 LTS to 5.0 run). Safe to run
# again: it reinstalls only when the pins below change. Without a Python 3.13 it says how to get
# one and exits 0; those tests are then skipped. Used by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${SIREN_BLENDER_VENV:-.venv-blender-5.2}"
PINS="bpy==5.2.3 numpy pytest>=7"

# shellcheck source=scripts/python313.sh
source scripts/python313.sh

if [ ! -x "$VENV/bin/python" ]; then
    if ! PYTHON313="$(find_python313)"; then
        echo "note: no Python 3.13 found, so the add-on's tests in Blender 5.2 will be skipped;" \
             "install one (e.g. 'pyenv install 3.13' or 'apt-get install python3.13-venv') or set BLENDER_PYTHON" >&2
        exit 0
    fi
    "$PYTHON313" -m venv "$VENV"
fi
stamp="$VENV/.siren-recon-installed"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$PINS" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m pip install -q $PINS >&2
    echo "$PINS" > "$stamp"
fi
