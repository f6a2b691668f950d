"""The command line's help: the formats it names are the ones ``siren_recon.io`` reads and writes."""

from __future__ import annotations

import re

import pytest

from siren_recon.cli import main
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
                 "--connect-timeout", "--no-progress"):
        assert flag in text, f"{command} has no {flag}"
