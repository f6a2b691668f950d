#!/usr/bin/env bash
# Creates the Blender-only environments, each Blender as a Python module and nothing of ours:
#   .venv-blender-5.2: bpy 5.2.3 on Python 3.13 with NumPy 2 (as Blender 5.1 and 5.2 LTS), where the
#                      add-on's tests run a second time;
#   .venv-blender-5.0: bpy 5.0.1 on Python 3.11 (as Blender 4.2 LTS to 5.0), where a first mesh is
#                      made from the zip alone (tests/test_first_mesh_in_blender.py; 5.2 runs it too).
# Safe to run again: each reinstalls only when its pins change. Without the Python it needs it says
# how to get one and goes on; those tests are then skipped. Used by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/find_python.sh
source scripts/find_python.sh

make_env() {  # VENV PYTHON_VERSION PINS
    local venv="$1" version="$2" pins="$3" python
    if [ ! -x "$venv/bin/python" ]; then
        if ! python="$(find_python "$version")"; then
            echo "note: no Python $version found, so the tests in $venv will be skipped;" \
                 "install one (e.g. 'pyenv install $version') or set BLENDER_PYTHON" >&2
            return 0
        fi
        "$python" -m venv "$venv"
    fi
    local stamp="$venv/.siren-recon-installed"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$pins" ]; then
        "$venv/bin/python" -m pip install -q --upgrade pip >&2
        # shellcheck disable=SC2086
        "$venv/bin/python" -m pip install -q $pins >&2
        echo "$pins" > "$stamp"
    fi
}

make_env "${SIREN_BLENDER_VENV:-.venv-blender-5.2}" 3.13 "bpy==5.2.3 numpy pytest>=7"
make_env .venv-blender-5.0 3.11 "bpy==5.0.1 pytest>=7"
