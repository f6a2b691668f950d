"""Messages to multipart frames and back, with every field validated on the way in.

Frame 0 is a msgpack map: the version, the type, the header, the body and a table of the arrays
that follow (name, dtype, shape); frames 1..n are the arrays' raw little-endian bytes, sent
without copying. Nothing is ever unpickled or evaluated: msgpack is read with ``raw=False``,
``strict_map_key=True`` and no extension types, and every value is checked against the
schema in :mod:`protocol.messages` before a message object is built.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import msgpack
import numpy as np

from . import errors as E
from .errors import ProtocolError
from .messages import (
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    Message,
    array_fields,
    body_fields,
    header_fields,
)

DEFAULT_MAX_BYTES = 512 * 1024 * 1024
"""Largest message accepted unless the receiver says otherwise: a cloud of 10M points with normals
and colours is 360 MB; 512 MiB takes about 15M of them, or 44M points alone."""
MAX_ARRAY_ROWS = 2**31 - 1
INT64 = (-(2**63), 2**63 - 1)
DTYPES = {"float32": np.dtype("<f4"), "uint32": np.dtype("<u4")}
VERSION_FORMAT = re.compile(r"[0-9]{1,4}\.[0-9]{1,4}")
"""``v``: the major version, a dot, the minor version, each 1 to 4 ASCII digits (e.g. ``1.2``)."""

Frame = Any  # bytes, bytearray, memoryview or a zmq.Frame


def encode(message: Message) -> list[Any]:
    """Frames of ``message``: a msgpack header frame, then one buffer per array (zero-copy)."""
    cls = type(message)
    if MESSAGE_TYPES.get(cls.TYPE) is not cls:
        raise ProtocolError(E.UNKNOWN_TYPE, f"{cls.__name__} is not a protocol message")
    head: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": cls.TYPE}
    for f in header_fields(cls):
        head[f.name] = getattr(message, f.name)
    head["body"] = {f.name: _to_wire(getattr(message, f.name), f.metadata) for f in body_fields(cls)}
    table, buffers = [], []
    for f in array_fields(cls):
        value = getattr(message, f.name)
        if value is None:
            if not f.metadata["optional"]:
                raise ProtocolError(E.MISSING_FIELD, f"{cls.TYPE}.{f.name} is required")
            continue
        data = np.ascontiguousarray(value, dtype=DTYPES[f.metadata["dtype"]])
        if data.ndim != 2 or data.shape[1] != f.metadata["columns"]:
            raise ProtocolError(
                E.BAD_SHAPE, f"{cls.TYPE}.{f.name} must have shape (N, {f.metadata['columns']}), got {data.shape}"
            )
        table.append({"name": f.name, "dtype": f.metadata["dtype"], "shape": list(data.shape)})
        buffers.append(data.reshape(-1).data.cast("B") if data.size else b"")
    head["arrays"] = table
    return [msgpack.packb(head, use_bin_type=True)] + buffers


def _to_wire(value: Any, metadata: Mapping[str, Any]) -> Any:
    if metadata["kind"] == "list_record":
        return [{f.name: getattr(item, f.name) for f in body_fields(metadata["record"])} for item in value]
    if metadata["kind"] in ("dict_str_float", "dict_str_scalar"):
        return dict(value)
    if metadata["kind"] == "list_str":
        return list(value)
    return value


def _buffer(frame: Frame) -> memoryview:
    if hasattr(frame, "buffer"):
        frame = frame.buffer
    try:
        return memoryview(frame).cast("B")
    except TypeError as exc:
        raise ProtocolError(E.MALFORMED, f"frame of type {type(frame).__name__} is not a byte buffer") from exc


def _reject_ext(code: int, data: bytes) -> Any:
    raise ProtocolError(E.MALFORMED, f"msgpack extension type {code} is not allowed")


def decode(frames: Sequence[Frame], max_bytes: int = DEFAULT_MAX_BYTES, max_rows: int | None = None) -> Message:
    """Validate and decode a multipart message; raise :class:`ProtocolError` on any fault.

    ``max_rows`` (a backend's ``max_points``) refuses an array declared with more rows, naming the
    limit, before its frame is looked at (code ``too_many_points``).

    The error carries the message's ``msg_id`` and ``job`` whenever frame 0 could be read as a
    map holding them as strings, so the reply to a refused message names what it refuses.
    """
    buffers = [_buffer(frame) for frame in frames]
    if not buffers:
        raise ProtocolError(E.MALFORMED, "empty message: no frames")
    size = sum(len(b) for b in buffers)
    if size > max_bytes:
        head = _unpack_head(buffers[0]) if len(buffers[0]) <= max_bytes else None
        raise ProtocolError(E.TOO_LARGE, f"message of {size} bytes is over the limit of {max_bytes} bytes",
                            *_ids(head))
    head = _unpack_head(buffers[0])
    try:
        return _decode_head(head, buffers[1:], max_rows)
    except ProtocolError as exc:
        exc.msg_id, exc.job = _ids(head)
        raise


def _unpack_head(frame: memoryview) -> Any:
    """Frame 0 as a Python value: strict msgpack, string map keys, no extension types."""
    try:
        return msgpack.unpackb(frame, raw=False, strict_map_key=True, ext_hook=_reject_ext, use_list=True)
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types for bad bytes
        raise ProtocolError(E.MALFORMED, f"header frame is not valid msgpack ({type(exc).__name__})") from exc


def _ids(head: Any) -> tuple[str, str]:
    """The ``msg_id`` and ``job`` of a header map, each ``""`` where absent or not a string."""
    if not isinstance(head, dict):
        return "", ""
    msg_id, job = head.get("msg_id"), head.get("job")
    return (msg_id if isinstance(msg_id, str) else "", job if isinstance(job, str) else "")


def _decode_head(head: Any, frames: list[memoryview], max_rows: int | None = None) -> Message:
    """The message described by the header map ``head`` with its array ``frames``."""
    if not isinstance(head, dict) or not all(isinstance(key, str) for key in head):
        raise ProtocolError(E.MALFORMED, "header frame is not a map with string keys")
    _check_version(head.get("v"))
    if "type" not in head:
        raise ProtocolError(E.MISSING_FIELD, "header field 'type' is missing")
    kind = head["type"]
    if not isinstance(kind, str):
        raise ProtocolError(E.BAD_FIELD_TYPE, f"header field 'type' must be a string, got {type(kind).__name__}")
    if kind not in MESSAGE_TYPES:
        raise ProtocolError(E.UNKNOWN_TYPE, f"unknown message type {kind!r}")
    cls = MESSAGE_TYPES[kind]
    values: dict[str, Any] = {}
    for f in header_fields(cls):
        if f.name not in head:
            raise ProtocolError(E.MISSING_FIELD, f"{kind}: header field {f.name!r} is missing")
        values[f.name] = _check_value(kind, f.name, head[f.name], f.metadata)
    if "body" not in head:
        raise ProtocolError(E.MISSING_FIELD, f"{kind}: header field 'body' is missing")
    body = head["body"]
    if not isinstance(body, dict):
        raise ProtocolError(E.BAD_FIELD_TYPE, f"{kind}: 'body' must be a map")
    for f in body_fields(cls):
        if f.name not in body:
            if f.metadata.get("added"):
                continue  # a newer minor version's field, absent from an older peer: its default
            raise ProtocolError(E.MISSING_FIELD, f"{kind}: field {f.name!r} is missing")
        values[f.name] = _check_value(kind, f.name, body[f.name], f.metadata)
    if "arrays" not in head:
        raise ProtocolError(E.MISSING_FIELD, f"{kind}: header field 'arrays' is missing")
    values.update(_decode_arrays(cls, head["arrays"], frames, max_rows))
    return cls(**values)


def _check_version(version: Any) -> None:
    """Refuse a missing or malformed ``v`` and a major version other than ours."""
    if version is None:
        raise ProtocolError(E.MISSING_FIELD, "header field 'v' (protocol version) is missing")
    if not isinstance(version, str) or not VERSION_FORMAT.fullmatch(version):
        raise ProtocolError(
            E.BAD_VERSION, f"protocol version {version!r} is not 'MAJOR.MINOR' (1 to 4 ASCII digits each)"
        )
    if int(version.split(".")[0]) != int(PROTOCOL_VERSION.split(".")[0]):
        raise ProtocolError(
            E.UNSUPPORTED_VERSION, f"protocol version {version} is not supported (this side speaks {PROTOCOL_VERSION})"
        )


def _check_value(kind: str, name: str, value: Any, metadata: Mapping[str, Any]) -> Any:
    wire = metadata["kind"]
    where = f"{kind}.{name}"

    def wrong(expected: str) -> ProtocolError:
        return ProtocolError(E.BAD_FIELD_TYPE, f"{where} must be {expected}, got {type(value).__name__}")

    if wire == "str":
        if not isinstance(value, str):
            raise wrong("a string")
        return value
    if wire == "int":
        if not _is_int(value):
            raise wrong("an integer")
        return value
    if wire == "float":
        if not _is_number(value):
            raise wrong("a number")
        return float(value)
    if wire == "bool":
        if not isinstance(value, bool):
            raise wrong("a boolean")
        return value
    if wire == "scalar":
        if not (isinstance(value, (str, bool, float)) or _is_int(value)):
            raise wrong("a string, number or boolean")
        return value
    if wire == "list_str":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise wrong("a list of strings")
        return value
    if wire == "dict_str_float":
        if not isinstance(value, dict) or not all(isinstance(k, str) and _is_number(v) for k, v in value.items()):
            raise wrong("a map of string to number")
        return {k: float(v) for k, v in value.items()}
    if wire == "dict_str_scalar":
        ok = isinstance(value, dict) and all(
            isinstance(k, str) and (isinstance(v, (str, bool)) or _is_int(v) or isinstance(v, float))
            for k, v in value.items()
        )
        if not ok:
            raise wrong("a map of string to string, number or boolean")
        return value
    if wire == "list_record":
        record = metadata["record"]
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise wrong("a list of maps")
        rows = []
        for item in value:
            fields = {}
            for f in body_fields(record):
                if f.name not in item:
                    raise ProtocolError(E.MISSING_FIELD, f"{where}: an entry lacks {f.name!r}")
                fields[f.name] = _check_value(kind, f"{name}.{f.name}", item[f.name], f.metadata)
            rows.append(record(**fields))
        return rows
    raise ProtocolError(E.MALFORMED, f"{where} has unknown wire kind {wire!r}")  # schema bug guard


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and INT64[0] <= value <= INT64[1]


def _is_number(value: Any) -> bool:
    """An int or a float; NaN and infinities are allowed in body fields (a diverged loss)."""
    return isinstance(value, float) or _is_int(value)


def _decode_arrays(
    cls: type[Message], table: Any, frames: list[memoryview], max_rows: int | None = None
) -> dict[str, np.ndarray | None]:
    kind = cls.TYPE
    if not isinstance(table, list) or not all(isinstance(entry, dict) for entry in table):
        raise ProtocolError(E.BAD_FIELD_TYPE, f"{kind}: 'arrays' must be a list of maps")
    for entry in table:
        for key in ("name", "dtype", "shape"):
            if key not in entry:
                raise ProtocolError(E.MISSING_FIELD, f"{kind}: an entry of 'arrays' lacks {key!r}")
    if len(table) != len(frames):
        raise ProtocolError(E.MALFORMED, f"{kind}: {len(table)} arrays declared but {len(frames)} array frames sent")
    declared = {f.name: f.metadata for f in array_fields(cls)}
    arrays: dict[str, np.ndarray | None] = {name: None for name in declared}
    for entry, frame in zip(table, frames):
        name = entry.get("name")
        if not isinstance(name, str) or name not in declared:
            raise ProtocolError(E.BAD_FIELD_TYPE, f"{kind}: no array named {name!r} in this message")
        if arrays[name] is not None:
            raise ProtocolError(E.MALFORMED, f"{kind}: array {name!r} sent twice")
        meta = declared[name]
        if entry.get("dtype") != meta["dtype"]:
            raise ProtocolError(E.BAD_DTYPE, f"{kind}.{name} must be {meta['dtype']}, declared {entry.get('dtype')!r}")
        shape = entry.get("shape")
        if (
            not isinstance(shape, list)
            or len(shape) != 2
            or not all(_is_int(s) and s >= 0 for s in shape)
            or shape[1] != meta["columns"]
            or shape[0] > MAX_ARRAY_ROWS
        ):
            raise ProtocolError(
                E.BAD_SHAPE, f"{kind}.{name} must have shape [N, {meta['columns']}], declared {shape!r}"
            )
        if max_rows is not None and shape[0] > max_rows:
            raise ProtocolError(
                E.TOO_MANY_POINTS, f"{kind}.{name} has {shape[0]} rows, over the limit of {max_rows} points per job"
            )
        dtype = DTYPES[meta["dtype"]]
        expected = shape[0] * shape[1] * dtype.itemsize
        if len(frame) != expected:
            raise ProtocolError(
                E.BUFFER_LENGTH,
                f"{kind}.{name}: frame has {len(frame)} bytes, shape {shape} of {meta['dtype']} needs {expected}",
            )
        data = np.frombuffer(frame, dtype=dtype).reshape(shape)
        if dtype.kind == "f" and not np.isfinite(data).all():
            raise ProtocolError(E.NON_FINITE, f"{kind}.{name} has NaN or infinite values")
        arrays[name] = data
    for name, meta in declared.items():
        column = arrays[name]
        if column is None:
            if not meta["optional"]:
                raise ProtocolError(E.MISSING_FIELD, f"{kind}: array {name!r} is required")
            continue
        other = meta["rows_like"]
        rows_like = arrays[other] if other else None
        if rows_like is not None and len(column) != len(rows_like):
            raise ProtocolError(E.BAD_SHAPE, f"{kind}.{name} has {len(column)} rows, {other} has {len(rows_like)}")
        target = meta["indexes"]
        indexed = arrays[target] if target else None
        if indexed is not None and len(column) and int(column.max()) >= len(indexed):
            raise ProtocolError(
                E.INDEX_OUT_OF_RANGE,
                f"{kind}.{name} refers to row {int(column.max())} of {target}, which has {len(indexed)} rows",
            )
    return arrays
