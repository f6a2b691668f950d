"""``python -m siren_recon``: the command line (how the Blender add-on runs an installed backend)."""

from __future__ import annotations

import sys

from siren_recon.cli import main

if __name__ == "__main__":
    sys.exit(main())
