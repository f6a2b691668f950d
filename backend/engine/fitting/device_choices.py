"""What the ``auto`` settings of speed (TF32, the Adam kernel, the preview thread) pick on a device.

Every ``auto`` here resolves to the engine's long-standing behaviour on the CPU, so CPU results
stay bit for bit what they were; the CUDA picks are in the settings' docstrings in ``config``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import torch

from ..config.reconstruction import ReconstructionConfig


def uses_tf32(config: ReconstructionConfig, device: torch.device) -> bool:
    """Whether the hidden layers' products run in TF32 (``train.matmul_precision``)."""
    choice = config.train.matmul_precision
    return device.type == "cuda" and choice in ("auto", "tf32")


def adam_options(config: ReconstructionConfig, device: torch.device) -> dict[str, Any]:
    """Keyword arguments of ``torch.optim.Adam`` for ``train.adam`` on ``device``."""
    choice = config.train.adam
    if choice == "auto":
        choice = "fused" if device.type == "cuda" else "for-loop"
    if choice == "fused":
        return {"fused": True}
    return {"foreach": choice == "foreach"}


def previews_on_thread(config: ReconstructionConfig, device: torch.device) -> bool:
    """Whether previews are meshed on a thread of their own (``preview.thread``)."""
    choice = config.preview.thread
    if choice == "auto":
        return device.type == "cuda"
    return choice == "on"


class _Tf32Switch:
    """torch's TF32 switch for CUDA matrix products is one flag for the whole process: it is on
    while at least one training run (on any thread) holds it, and back to what it was after the
    last lets go."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.holders = 0
        self.before = False

    @contextlib.contextmanager
    def held(self, wanted: bool) -> Iterator[None]:
        if not wanted:
            yield
            return
        with self.lock:
            if self.holders == 0:
                self.before = torch.backends.cuda.matmul.allow_tf32
                torch.backends.cuda.matmul.allow_tf32 = True
            self.holders += 1
        try:
            yield
        finally:
            with self.lock:
                self.holders -= 1
                if self.holders == 0:
                    torch.backends.cuda.matmul.allow_tf32 = self.before


TF32 = _Tf32Switch()
"""The process's one TF32 switch (see :class:`_Tf32Switch`)."""
