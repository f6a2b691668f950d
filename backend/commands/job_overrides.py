"""The engine settings a job sent to a backend changes (``submit``, ``batch``)."""

from __future__ import annotations

import argparse
from typing import Any


def job_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``--set``'s overrides, then ``--iterations`` and ``--mode`` where given, by dotted name."""
    overrides: dict[str, Any] = dict(args.overrides)
    if args.iterations is not None:
        overrides["train.iterations"] = args.iterations
    if args.mode is not None:
        overrides["mode"] = args.mode
    return overrides
