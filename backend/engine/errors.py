"""Errors the engine raises for bad input or settings.

Each carries a short machine-readable ``code`` (also used by the backend's ``job_failed``
replies) and a message that names the problem.
"""

from __future__ import annotations


class ReconstructionError(Exception):
    """Base class of every error the engine raises on purpose."""

    code = "reconstruction_error"


class InputError(ReconstructionError, ValueError):
    """The point cloud (or its normals) cannot be reconstructed as given."""

    code = "bad_input"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class ConfigError(ReconstructionError, ValueError):
    """A configuration field has an unknown name, a wrong type or an impossible value."""

    code = "bad_config"


class CheckpointError(ReconstructionError):
    """A checkpoint file is missing, unreadable or not one of ours."""

    code = "bad_checkpoint"


class Cancelled(ReconstructionError):
    """Training was cancelled by the caller (raised out of the trainer)."""

    code = "cancelled"
