# Sourced by the set-up scripts: `find_python 3.13` prints an interpreter of that version (from
# BLENDER_PYTHON when it is one, then the PATH, pyenv and the usual places) or returns 1.
is_version() { [ -n "$1" ] && "$1" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$2'.split('.'))))" >/dev/null 2>&1; }

find_python() {
    local candidate
    for candidate in "${BLENDER_PYTHON:-}" "$(command -v "python$1" || true)" \
        "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/"$1".*/bin/python"$1" \
        /usr/local/bin/python"$1" /usr/bin/python"$1"; do
        if is_version "$candidate" "$1"; then echo "$candidate"; return 0; fi
    done
    return 1
}
