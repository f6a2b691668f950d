"""What the CLI's progress bar shows beside the step count, for a local run and a remote job alike."""

from __future__ import annotations

from typing import Protocol


class StepReport(Protocol):
    """A training step as reported: the engine's ``ProgressEvent`` or the protocol's ``Progress``."""

    @property
    def losses(self) -> dict[str, float]: ...
    @property
    def mode(self) -> str: ...
    @property
    def tile(self) -> int: ...
    @property
    def tiles(self) -> int: ...


def bar_postfix(event: StepReport) -> dict[str, str]:
    """The bar's postfix: the total loss, the mode and, in a tiled run, the tile being trained."""
    postfix = {"loss": f"{event.losses.get('total', float('nan')):.3g}", "mode": event.mode}
    if event.tiles > 0:
        postfix["tile"] = f"{event.tile}/{event.tiles}"
    return postfix
