#!/usr/bin/env bash
# Set up (first run only) and run the test suite. The add-on's tests run in Blender 5.0 (bpy
# 5.0.1, Python 3.11, in .venv) and again in Blender 5.2 (bpy 5.2.3, Python 3.13, in
# .venv-blender-5.2, made here when a Python 3.13 is found).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
bash scripts/setup_blender_env.sh
exec .venv/bin/python -m pytest "$@"
