"""The engine settings a client may set in ``submit_job.overrides``, as the wire lists them.

One list serves the ``settings`` reply (with this backend's defaults) and the table in
``protocol/README.md`` (with the engine's), so a client reads the same rows either way.
"""

from __future__ import annotations

from siren_recon.protocol import SettingEntry

from ..engine.config.reconstruction import ReconstructionConfig
from ..engine.config.settings_catalog import SettingInfo, describe_settings

BACKEND_OWNED: dict[str, str] = {
    "train.device": "the backend trains on its own device (`serve --device`); an override is accepted and ignored",
}
"""Engine settings the backend sets itself, left out of the list, with what becomes of an override."""


def wire_settings(defaults: ReconstructionConfig | None = None) -> list[SettingInfo]:
    """The overridable settings, with ``defaults`` (the engine's when ``None``) as their defaults."""
    return describe_settings(defaults, exclude=frozenset(BACKEND_OWNED))


def setting_entries(defaults: ReconstructionConfig | None = None) -> list[SettingEntry]:
    """:func:`wire_settings` as the rows of a ``settings`` reply."""
    return [
        SettingEntry(name=s.name, type=s.type, default=s.default, choices=list(s.choices), range=s.range,
                     meaning=s.meaning)
        for s in wire_settings(defaults)
    ]
