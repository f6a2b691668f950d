"""The catalogue of engine settings: each one's name, type, default, allowed values and meaning.

Read from the dataclasses of :mod:`siren_recon.engine.config.reconstruction` and nothing else: the fields give
names, types and defaults, ``Literal`` types the choices, :data:`~siren_recon.engine.config.reconstruction.BOUNDS`
the ranges, and the first sentence of each field's docstring the meaning. The settings table of
``protocol/README.md`` and the backend's ``settings`` reply are both made from it.
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
from dataclasses import dataclass

from . import reconstruction as config_module
from .reconstruction import BOUNDS, RELATIONS, ReconstructionConfig, setting_choices, setting_fields

Scalar = bool | int | float | str

_SENTENCE_END = re.compile(r"(?<=\.)\s+(?=[A-Z`(])")


@dataclass(frozen=True)
class SettingInfo:
    """One setting as a client sees it."""

    name: str
    """Dotted name, as an override key (``train.iterations``)."""
    type: str
    """``int``, ``float``, ``bool`` or ``str``."""
    default: Scalar
    """Value used when no override sets it."""
    choices: tuple[str, ...]
    """Allowed values of a ``str`` setting limited to a list; empty otherwise."""
    range: str
    """Interval a number must lie in (``[8, 2048]``, ``(0, 1]``, ``[1, inf)``); empty if any."""
    meaning: str
    """One sentence on what it does."""


def describe_settings(config: ReconstructionConfig | None = None, exclude: frozenset[str] = frozenset()
                      ) -> list[SettingInfo]:
    """Every setting of ``config`` (its values are the defaults), in declaration order, but those
    named in ``exclude``."""
    config = config or ReconstructionConfig()
    docs = field_docstrings()
    rows = []
    for name, section, spec in setting_fields(config):
        if name in exclude:
            continue
        value = getattr(section, spec.name)
        bound = BOUNDS.get(name)
        rows.append(SettingInfo(
            name=name,
            type=type(value).__name__,
            default=value,
            choices=setting_choices(section, spec.name),
            range=bound.interval() if bound is not None else "",
            meaning=first_sentence(docs.get((type(section).__name__, spec.name), "")),
        ))
    return rows


def relations() -> list[str]:
    """The rules that tie two settings together, e.g. ``preview.min_resolution <= preview.max_resolution``."""
    return [statement for statement, _ in RELATIONS]


@functools.lru_cache(maxsize=1)
def field_docstrings() -> dict[tuple[str, str], str]:
    """The docstring under each dataclass field of the config module, by (class, field)."""
    tree = ast.parse(inspect.getsource(config_module))
    docs: dict[tuple[str, str], str] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        for field_node, after in zip(node.body, node.body[1:]):
            if (
                isinstance(field_node, ast.AnnAssign)
                and isinstance(field_node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[(node.name, field_node.target.id)] = after.value.value
    return docs


def first_sentence(text: str) -> str:
    """The first sentence of ``text`` on one line, with reStructuredText's double backquotes as
    Markdown's single ones."""
    flat = re.sub(r":\w+:`", "`", " ".join(text.split()).replace("``", "`"))
    return _SENTENCE_END.split(flat, maxsplit=1)[0]
