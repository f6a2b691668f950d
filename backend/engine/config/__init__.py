"""A reconstruction's settings: the typed sections (:mod:`.reconstruction`), the bounds each
number must lie in (:mod:`.bounds`), and the catalogue that describes them to a user
(:mod:`.settings_catalog`)."""

from .reconstruction import ReconstructionConfig, apply_overrides

__all__ = ["ReconstructionConfig", "apply_overrides"]
