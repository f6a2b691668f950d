"""The settings table of protocol/README.md is generated from the engine's config and current;
an unknown override key is refused with the closest valid one named."""

from __future__ import annotations

import pytest

from siren_recon.engine.config.reconstruction import ReconstructionConfig, apply_overrides, closest_setting
from siren_recon.engine.config.settings_catalog import describe_settings
from siren_recon.engine.errors import ConfigError

from .paths import REPO
from .scripts import load_script

table = load_script("generate_settings_table")


def test_the_spec_table_is_what_the_generator_makes():
    assert table.expected_spec() == (REPO / "protocol" / "README.md").read_text(encoding="utf-8"), (
        "protocol/README.md's settings table is stale: run scripts/generate_settings_table.py"
    )


def test_a_changed_default_makes_the_table_stale():
    spec = (REPO / "protocol" / "README.md").read_text(encoding="utf-8")
    changed = describe_settings(ReconstructionConfig(mesh=ReconstructionConfig().mesh.__class__(resolution=300)))
    assert table.updated(spec, table.render_table(changed, [], {})) != spec


@pytest.mark.parametrize(
    ("key", "closest"),
    [("resolution", "mesh.resolution"), ("train.iterationz", "train.iterations"), ("iterations", "train.iterations"),
     ("mesh.resolutoin", "mesh.resolution"), ("seed", "train.seed")],
)
def test_an_unknown_key_names_the_closest_valid_one(key, closest):
    assert closest_setting(key) == closest
    with pytest.raises(ConfigError, match=f"unknown config key '{key}'; did you mean '{closest}'"):
        apply_overrides(ReconstructionConfig(), {key: 1})


def test_every_described_setting_is_accepted_at_its_default_and_every_range_is_enforced():
    config = ReconstructionConfig()
    for row in describe_settings(config):
        apply_overrides(config, {row.name: row.default})
        if row.range.startswith("[") and not row.range.startswith("[-"):
            low = float(row.range[1:].split(",")[0])
            below = int(low) - 1 if row.type == "int" else low - 0.5
            with pytest.raises(ConfigError, match=row.name):
                apply_overrides(config, {row.name: below})


def test_numbers_in_overrides_an_int_for_a_float_never_a_bool_or_a_float_for_an_int():
    config = ReconstructionConfig()
    assert apply_overrides(config, {"train.learning_rate": 1}).train.learning_rate == 1.0
    for key, value in [("train.learning_rate", True), ("train.iterations", 500.0), ("train.iterations", False),
                       ("mesh.narrow_band", 1), ("model.omega_0", float("inf"))]:
        with pytest.raises(ConfigError, match=key):
            apply_overrides(config, {key: value})
