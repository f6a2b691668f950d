"""PLY point clouds (ascii, binary little- and big-endian) read with NumPy alone.

The vertex element's ``x y z`` are the points, ``nx ny nz`` the normals and ``red green blue``
the colours, each used only when all three are present; other properties and other elements
(faces, edges) are skipped. Values are read as Open3D reads them: every number becomes a
float64 (an ascii ``float`` keeps its full decimal value), and colours of any type are divided
by 255.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..engine.errors import InputError
from .cloud import Cloud, unreadable

PLY_FORMATS = (".ply",)

TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
"""PLY's scalar type names and the NumPy type codes they stand for."""

ENCODINGS = {"ascii": "", "binary_little_endian": "<", "binary_big_endian": ">"}
"""PLY's data formats and the byte order each stores (none for ascii)."""

COLOUR_SCALE = 255.0
"""What every colour value is divided by, whatever its type (Open3D's rule: a float 1.0 is a faint 1/255)."""


@dataclass(frozen=True)
class Property:
    """One property of an element: a scalar, or a list whose length precedes its items."""

    name: str
    kind: str
    """NumPy type code of the value (of each item, for a list)."""
    count_kind: str | None = None
    """NumPy type code of a list's length; ``None`` for a scalar."""


@dataclass(frozen=True)
class Element:
    """One element of the header: its name, its record count and each record's properties."""

    name: str
    count: int
    properties: tuple[Property, ...]

    @property
    def has_lists(self) -> bool:
        """Whether a record's length varies (it holds a list property)."""
        return any(prop.count_kind is not None for prop in self.properties)


@dataclass(frozen=True)
class Header:
    """A PLY header: the data's encoding, its elements in file order, and where the data starts."""

    encoding: str
    elements: tuple[Element, ...]
    data_start: int


def read_ply(source: Path) -> Cloud:
    """The vertices of a PLY file as a :class:`Cloud`; :func:`unreadable` for a broken or empty file."""
    data = source.read_bytes()
    header = parse_header(source, data)
    vertex = next((element for element in header.elements if element.name == "vertex"), None)
    if vertex is None or vertex.count == 0:
        raise unreadable(source, "holds no points (no vertex element, or one of 0 vertices)", "empty_cloud")
    names = {prop.name for prop in vertex.properties}
    if not {"x", "y", "z"} <= names:
        raise unreadable(source, "has no x, y and z vertex properties")
    if header.encoding == "ascii":
        columns = ascii_vertices(source, data[header.data_start:], header.elements, vertex)
    else:
        columns = binary_vertices(source, data, header, vertex)
    return Cloud(
        points=stack(columns, ("x", "y", "z")),
        normals=stack(columns, ("nx", "ny", "nz")) if {"nx", "ny", "nz"} <= names else None,
        colours=stack(columns, ("red", "green", "blue")) / COLOUR_SCALE if {"red", "green", "blue"} <= names else None,
    )


def stack(columns: dict[str, np.ndarray], names: tuple[str, str, str]) -> np.ndarray:
    """The three named columns side by side, float64 (N, 3)."""
    return np.column_stack([columns[name] for name in names]).astype(np.float64)


def parse_header(source: Path, data: bytes) -> Header:
    """The header at the start of ``data``; :func:`unreadable` naming the first thing wrong with it."""
    if not data.startswith(b"ply"):
        raise unreadable(source, "could not be read as a point cloud: not a PLY file")
    end = data.find(b"\nend_header") + 1
    if end == 0:
        raise unreadable(source, "truncated or damaged PLY header: no end_header")
    line_end = data.find(b"\n", end)
    if line_end < 0:
        raise unreadable(source, "truncated PLY file: nothing after end_header")
    lines = data[:end].decode("ascii", errors="replace").splitlines()[1:]
    encoding: str | None = None
    elements: list[tuple[str, int, list[Property]]] = []
    for line in lines:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format" and len(words) == 3 and words[1] in ENCODINGS:
            encoding = words[1]
        elif words[0] == "element" and len(words) == 3 and words[2].isdigit():
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property" and elements and len(words) == 3 and words[1] in TYPES:
            elements[-1][2].append(Property(words[2], TYPES[words[1]]))
        elif (words[0] == "property" and elements and len(words) == 5 and words[1] == "list"
              and words[2] in TYPES and words[3] in TYPES):
            elements[-1][2].append(Property(words[4], TYPES[words[3]], TYPES[words[2]]))
        else:
            raise unreadable(source, f"damaged PLY header: cannot read the line {line.strip()!r}")
    if encoding is None:
        raise unreadable(source, "damaged PLY header: no 'format ascii|binary_little_endian|binary_big_endian' line")
    return Header(encoding, tuple(Element(name, count, tuple(props)) for name, count, props in elements), line_end + 1)


def ascii_vertices(source: Path, body: bytes, elements: tuple[Element, ...], vertex: Element) -> dict[str, np.ndarray]:
    """The vertex element's scalar columns of an ascii body, a stream of whitespace-separated numbers."""
    words = body.split()
    at = 0
    for element in elements:
        if element is vertex:
            break
        if element.has_lists:
            for _ in range(element.count):
                _, at = ascii_record(source, words, at, element)
        else:
            at += element.count * len(element.properties)
    if vertex.has_lists:
        rows = []
        for _ in range(vertex.count):
            row, at = ascii_record(source, words, at, vertex)
            rows.append(row)
        table = np.array(rows)
    else:
        width = len(vertex.properties)
        if len(words) - at < width * vertex.count:
            raise truncated(source, vertex)
        table = np.array(words[at:at + width * vertex.count]).reshape(vertex.count, width)
    scalars = [prop for prop in vertex.properties if prop.count_kind is None]
    return {prop.name: ascii_column(source, table[:, index], prop) for index, prop in enumerate(scalars)}


def ascii_record(source: Path, words: list[bytes], at: int, element: Element) -> tuple[list[bytes], int]:
    """One record of ``element`` from ``words[at:]``: its scalar values' words, and where the next record starts."""
    row: list[bytes] = []
    for prop in element.properties:
        if at >= len(words):
            raise truncated(source, element)
        if prop.count_kind is None:
            row.append(words[at])
            at += 1
            continue
        if not words[at].isdigit():
            raise unreadable(source, f"damaged {element.name} record: list length {words[at]!r} is not a count")
        at += 1 + int(words[at])
    if at > len(words):
        raise truncated(source, element)
    return row, at


def ascii_column(source: Path, words: np.ndarray, prop: Property) -> np.ndarray:
    """One property's words as float64: integers of the property's range, or numbers within its float range."""
    kind = np.dtype(prop.kind)
    try:
        if kind.kind == "f":
            values = words.astype(np.float64)
            limit = float(np.finfo(kind).max)
            bad = np.abs(values) > limit
        else:
            integers = words.astype(np.int64)
            info = np.iinfo(kind)
            bad = (integers < info.min) | (integers > info.max)
            values = integers.astype(np.float64)
    except (ValueError, OverflowError) as exc:
        raise unreadable(source, f"damaged vertex data: a {prop.name} value is not a {kind.name} ({exc})") from exc
    if bad.any():
        raise unreadable(source, f"damaged vertex data: {prop.name} value {words[np.argmax(bad)]!r} is out of range")
    return values


def binary_vertices(source: Path, data: bytes, header: Header, vertex: Element) -> dict[str, np.ndarray]:
    """The vertex element's scalar columns of a binary body, in the header's byte order."""
    order = ENCODINGS[header.encoding]
    at = header.data_start
    for element in header.elements:
        if element is vertex:
            break
        if element.has_lists:
            for _ in range(element.count):
                _, at = binary_record(source, data, at, element, order)
        else:
            at += element.count * sum(np.dtype(prop.kind).itemsize for prop in element.properties)
    scalars = [prop for prop in vertex.properties if prop.count_kind is None]
    if vertex.has_lists:
        rows = []
        for _ in range(vertex.count):
            row, at = binary_record(source, data, at, vertex, order)
            rows.append(row)
        table = np.array(rows, dtype=np.float64).reshape(vertex.count, len(scalars))
        return {prop.name: table[:, index] for index, prop in enumerate(scalars)}
    layout = np.dtype([(f"p{index}", order + prop.kind) for index, prop in enumerate(scalars)])
    if len(data) - at < layout.itemsize * vertex.count:
        raise truncated(source, vertex)
    records = np.frombuffer(data, dtype=layout, count=vertex.count, offset=at)
    return {prop.name: records[f"p{index}"].astype(np.float64) for index, prop in enumerate(scalars)}


def binary_record(source: Path, data: bytes, at: int, element: Element, order: str) -> tuple[list[float], int]:
    """One record of ``element`` at byte ``at``: its scalar values, and where the next record starts."""
    row: list[float] = []
    try:
        for prop in element.properties:
            if prop.count_kind is None:
                row.append(float(struct.unpack_from(order + np.dtype(prop.kind).char, data, at)[0]))
                at += np.dtype(prop.kind).itemsize
                continue
            (length,) = struct.unpack_from(order + np.dtype(prop.count_kind).char, data, at)
            at += np.dtype(prop.count_kind).itemsize + int(length) * np.dtype(prop.kind).itemsize
    except struct.error as exc:
        raise truncated(source, element) from exc
    if at > len(data):
        raise truncated(source, element)
    return row, at


def truncated(source: Path, element: Element) -> InputError:
    """The error of a file that ends before its header's ``element`` records do."""
    return unreadable(
        source, f"truncated: the header counts {element.count} {element.name} records, the file ends first"
    )
