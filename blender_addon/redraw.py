"""When the timer should draw the 3D views and status bar again (no bpy)."""

from __future__ import annotations

from collections.abc import Hashable


class RedrawGate:
    """Lets a redraw through when what is shown changed, or while work is under way; idle, never."""

    def __init__(self) -> None:
        self._shown: Hashable = object()

    def due(self, signature: Hashable, busy: bool) -> bool:
        """Whether to redraw now, given what would be shown (``signature``) and whether work runs."""
        changed = signature != self._shown
        self._shown = signature
        return changed or busy
