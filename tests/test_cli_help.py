"""The command line's help and flags: the formats it names are the ones ``siren_recon.io`` reads and
writes; a flag means the same setting in every command that has it."""

from __future__ import annotations

import re

import pytest

from siren_recon.cli import build_parser, main
from siren_recon.commands.job_overrides import job_overrides
from siren_recon.commands.reconstruct import config_from_args
from siren_recon.io import CLOUD_FORMATS, MESH_FORMATS


def help_text(capsys: pytest.CaptureFixture[str], *command: str) -> str:
    """The help of ``siren-recon COMMAND``, its lines joined into one."""
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def suffixes_after(text: str, lead: str) -> tuple[str, ...]:
    """The run of file suffixes that follows ``lead`` in ``text``."""
    found = re.search(re.escape(lead) + r"((?: ?\.\w+)+)", text)
    assert found is not None, f"{lead!r} is not in the help"
    return tuple(found.group(1).split())


def test_reconstruct_help_names_exactly_the_formats_io_reads_and_writes(capsys):
    text = help_text(capsys, "reconstruct")
    assert suffixes_after(text, "point cloud: ") == CLOUD_FORMATS
    assert suffixes_after(text, "mesh: ") == MESH_FORMATS


def test_batch_help_names_exactly_the_formats_io_reads_and_writes(capsys):
    text = help_text(capsys, "batch")
    assert suffixes_after(text, "a folder (its ") == CLOUD_FORMATS
    choices = re.search(r"--format \{([\w,]+)\}", text)
    assert choices is not None
    assert tuple(f".{name}" for name in choices.group(1).split(",")) == MESH_FORMATS


@pytest.mark.parametrize("command", ["submit", "batch"])
def test_submit_and_batch_take_the_same_backend_flags(capsys, command):
    text = help_text(capsys, command)
    for flag in ("--backend", "--iterations", "--mode", "--set KEY=VALUE", "--server-key FILE", "--client-key FILE",
                 "--connect-timeout", "--no-progress", "--tile-size SIZE", "--voxel-size SIZE"):
        assert flag in text, f"{command} has no {flag}"


def test_the_scene_flags_set_the_same_settings_locally_and_on_a_backend():
    parser = build_parser()
    scene = ["--tile-size", "20", "--voxel-size", "0.05"]
    local = config_from_args(parser.parse_args(["reconstruct", "street.laz", "-o", "street.ply", *scene]))
    assert (local.tiles.size, local.mesh.voxel_size) == (20.0, 0.05)
    for command in (["submit", "street.laz", "-o", "street.ply"], ["batch", "scans", "-o", "out"]):
        sent = job_overrides(parser.parse_args([*command, *scene]))
        assert sent == {"tiles.size": 20.0, "mesh.voxel_size": 0.05}, command
    assert job_overrides(parser.parse_args(["submit", "street.laz", "-o", "street.ply"])) == {}


def test_iterations_mean_exactly_that_many_steps_locally_and_on_a_backend():
    parser = build_parser()
    flags = ["--set", "train.until=converged", "--iterations", "300"]
    local = config_from_args(parser.parse_args(["reconstruct", "scan.ply", "-o", "mesh.ply", *flags]))
    assert (local.train.iterations, local.train.until) == (300, "iterations")
    for command in (["submit", "scan.ply", "-o", "mesh.ply"], ["batch", "scans", "-o", "out"]):
        sent = job_overrides(parser.parse_args([*command, *flags]))
        assert (sent["train.iterations"], sent["train.until"]) == (300, "iterations"), command
    unset = config_from_args(parser.parse_args(["reconstruct", "scan.ply", "-o", "mesh.ply", "--set",
                                                "train.until=converged"]))
    assert (unset.train.iterations, unset.train.until) == (2000, "converged")
