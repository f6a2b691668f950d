"""``siren-recon keys generate DIR``: CURVE key pairs for a backend and its clients."""

from __future__ import annotations

import argparse
import sys

from ..server.security import generate_keys


def run_keys(args: argparse.Namespace) -> int:
    public, secret = generate_keys(args.directory, args.name)
    print(
        f"wrote {public} (public: give it to the other side) and {secret} (secret: keep it here, mode 600)",
        file=sys.stderr,
    )
    return 0
