# Sourced by the set-up scripts: find_python313 prints a Python 3.13 interpreter (BLENDER_PYTHON
# first, then PATH, pyenv and the usual places) or returns 1.
is_313() { [ -n "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' >/dev/null 2>&1; }

find_python313() {
    local candidate
    for candidate in "${BLENDER_PYTHON:-}" "$(command -v python3.13 || true)" \
        "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.13*/bin/python3.13 \
        /usr/local/bin/python3.13 /usr/bin/python3.13; do
        if is_313 "$candidate"; then echo "$candidate"; return 0; fi
    done
    return 1
}
