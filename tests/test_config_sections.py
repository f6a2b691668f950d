"""The settings' sections: the noise rule in ``noise``, the unoriented stages each in their own, and
the old dotted names still setting the new fields, with a warning that names the new one."""

from __future__ import annotations

import dataclasses
import warnings

import pytest

from siren_recon.engine.config.reconstruction import (
    DEPRECATED_NAMES,
    ReconstructionConfig,
    apply_overrides,
    config_from_dict,
    setting_names,
)
from siren_recon.engine.config.settings_catalog import describe_settings

from .paths import REPO


def value_at(config: ReconstructionConfig, name: str) -> object:
    target: object = config
    for part in name.split("."):
        target = getattr(target, part)
    return target


def another_value(config: ReconstructionConfig, name: str) -> object:
    """A valid value of setting ``name`` other than its default."""
    row = next(row for row in describe_settings(config) if row.name == name)
    if row.choices:
        return next(choice for choice in row.choices if choice != row.default)
    if isinstance(row.default, bool):
        return not row.default
    if isinstance(row.default, int):
        return row.default + 1
    assert isinstance(row.default, float)
    return row.default * 0.5 if row.default > 0 else 0.5


@pytest.mark.parametrize(("old", "new"), sorted(DEPRECATED_NAMES.items()))
def test_an_old_name_sets_the_new_field_and_warns_naming_it(old, new):
    config = ReconstructionConfig()
    value = another_value(config, new)
    with pytest.warns(FutureWarning, match=f"'{old}' is deprecated: use '{new}'"):
        updated = apply_overrides(config, {old: value})
    assert value_at(updated, new) == value
    assert updated == apply_overrides(config, {new: value})


def test_the_new_names_warn_nothing_and_the_old_ones_are_no_settings_of_their_own():
    names = setting_names()
    assert set(DEPRECATED_NAMES.values()) <= set(names)
    assert not set(DEPRECATED_NAMES) & set(names)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        apply_overrides(ReconstructionConfig(), {new: value_at(ReconstructionConfig(), new)
                                                 for new in DEPRECATED_NAMES.values()})


def test_a_config_saved_with_the_old_sections_loads_into_the_new_ones():
    saved = dataclasses.asdict(ReconstructionConfig())
    for section in ("noise", "refinement"):
        del saved[section]
    saved["unoriented"].update(noise_free_ratio=0.5, refine_share=0.25, direction_neighbours=30)
    with pytest.warns(FutureWarning):
        loaded = config_from_dict(saved)
    assert (loaded.noise.free_ratio, loaded.refinement.share, loaded.refinement.normals.neighbours) == (0.5, 0.25, 30)


def test_the_noise_rule_is_a_section_of_neither_mode():
    config = ReconstructionConfig()
    assert config.noise.free_ratio == 0.25
    assert not hasattr(config.unoriented, "noise_free_ratio")
    assert not hasattr(config.oriented, "noise_free_ratio")


def test_the_settings_table_lists_the_new_names_and_the_changelog_the_old_ones():
    spec = (REPO / "protocol" / "README.md").read_text(encoding="utf-8")
    table = spec.split("<!-- settings-table:begin", 1)[1].split("<!-- settings-table:end -->", 1)[0]
    changes = spec.split("## Changes", 1)[1]
    for old, new in DEPRECATED_NAMES.items():
        assert f"| `{new}` |" in table, new
        assert f"`{old}`" not in table, old
        assert f"* `{old}` -> `{new}`" in changes, old


def test_the_cli_set_takes_an_old_name():
    from siren_recon.cli import build_parser
    from siren_recon.commands.reconstruct import config_from_args

    argv = ["reconstruct", "in.ply", "-o", "out.ply", "--set", "unoriented.noise_free_ratio=0.5"]
    args = build_parser().parse_args(argv)
    with pytest.warns(FutureWarning, match="'noise.free_ratio'"):
        assert config_from_args(args).noise.free_ratio == 0.5
