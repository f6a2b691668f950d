#!/usr/bin/env bash
# Set up (first run only) and run the test suite in three lanes, passing its arguments to each:
#  1. everything, in .venv (Python 3.11, NumPy 1.x); the add-on's tests run there in Blender 5.0
#     (bpy 5.0.1) and again in Blender 5.2 (bpy 5.2.3, Python 3.13, in .venv-blender-5.2);
#  2. the tests that run in this process again under other numerics (MKL's compatible code path for
#     matrix products), so that a test that holds only for one machine's sums fails here (all but
#     the runs at the full default budget: the short fits are the ones a change of sums moves);
#  3. the fast lane on Python 3.13 with NumPy 2 (.venv-py313), where a Python 3.13 is found.
# The exit status is non-zero when any lane fails.
set -euo pipefail
cd "$(dirname "$0")/.."
# A first run installs about 20 GB (torch twice for Python 3.13, two Blenders, a backend installed
# from a fresh Blender); say what is free so that a full disk is plain in the log.
echo "free disk here: $(df -Pk . | awk 'NR==2 {printf "%.1f GB", $4 / 1048576}') (a first run needs about 20 GB)"
bash scripts/setup_env.sh
bash scripts/setup_blender_env.sh
bash scripts/setup_py313_env.sh

status=0
echo "== lane 1: the whole suite (Python 3.11, NumPy 1.x)"
.venv/bin/python -m pytest "$@" || status=$?
echo "== lane 2: in-process tests under other numerics (MKL_CBWR=COMPATIBLE)"
MKL_CBWR=COMPATIBLE .venv/bin/python -m pytest -m "not live and not blender and not cuda and not defaults" -p no:cacheprovider "$@" || status=$?
if [ -x .venv-py313/bin/python ]; then
    echo "== lane 3: the fast lane on Python 3.13 with NumPy 2"
    .venv-py313/bin/python -m pytest -m "not slow" -p no:cacheprovider "$@" || status=$?
fi
exit "$status"
