"""Every message of the siren-recon wire protocol, its fields and their types, written once.

Each message is a frozen dataclass. Its fields are declared with the helpers below
(:func:`text`, :func:`integer`, :func:`array`, ...), which record the wire type in the field's
metadata; the codec reads that metadata both to encode and to validate on decode, so a field's
type is stated in exactly one place. ``protocol/README.md`` is the prose form of this file.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

PROTOCOL_VERSION = "1.3"

MIN_POINTS = 16
"""The fewest points a job's cloud may have: a backend refuses fewer with ``too_few_points``,
and a client need not send them."""

SCALAR = "scalar"  # str, int, float or bool


def _field(kind: str, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING, **extra: Any) -> Any:
    """A field with its wire kind; ``added="1.1"`` marks a field a peer of an older minor version
    does not send (the default is used when it is absent)."""
    metadata = {"kind": kind, **extra}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def text(default: str = "") -> Any:
    """A UTF-8 string."""
    return _field("str", default)


def integer(default: int = 0, added: str | None = None) -> Any:
    """A signed 64-bit integer."""
    return _field("int", default, added=added)


def real(default: float = 0.0, added: str | None = None) -> Any:
    """A 64-bit float (an integer on the wire is accepted)."""
    return _field("float", default, added=added)


def flag(default: bool = False) -> Any:
    """A boolean (never an integer)."""
    return _field("bool", default)


def scalar(default: Any = "") -> Any:
    """One str, int, float or bool."""
    return _field("scalar", default)


def float_map() -> Any:
    """A map from strings to floats."""
    return _field("dict_str_float", factory=dict)


def scalar_map() -> Any:
    """A map from strings to a str, int, float or bool each."""
    return _field("dict_str_scalar", factory=dict)


def text_list() -> Any:
    """A list of strings."""
    return _field("list_str", factory=list)


def record_list(record: type) -> Any:
    """A list of maps, each with the fields of the dataclass ``record``."""
    return _field("list_record", factory=list, record=record)


def array(dtype: str, columns: int, optional: bool = False, rows_like: str | None = None,
          indexes: str | None = None) -> Any:
    """An array travelling in its own frame: ``dtype`` little-endian, shape ``(N, columns)``.

    ``rows_like`` names an array whose row count this one must share; ``indexes`` names an
    array whose rows this one's values index (faces into vertices). Float arrays must be finite.
    """
    return _field("array", None, dtype=dtype, columns=columns, optional=optional,
                  rows_like=rows_like, indexes=indexes)


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, eq=False)
class Message:
    """The header every message carries."""

    TYPE: ClassVar[str] = ""
    msg_id: str = field(default_factory=new_id, metadata={"kind": "str", "header": True})
    """Unique id of this message."""
    session: str = field(default="", metadata={"kind": "str", "header": True})
    """The backend's session id (new at each backend start); empty from clients."""
    job: str = field(default="", metadata={"kind": "str", "header": True})
    """The job this message is about, or empty."""
    parent: str = field(default="", metadata={"kind": "str", "header": True})
    """``msg_id`` of the message this one answers, or empty."""


@dataclass(frozen=True, eq=False)
class Hello(Message):
    """Client -> backend, first: who is asking. Answered by ``welcome``."""

    TYPE: ClassVar[str] = "hello"
    client_name: str = text()
    client_version: str = text()


@dataclass(frozen=True, eq=False)
class Welcome(Message):
    """Backend -> client: what the backend is and what it accepts."""

    TYPE: ClassVar[str] = "welcome"
    backend_version: str = text()
    device: str = text()
    """e.g. ``cuda:0 (NVIDIA H100)`` or ``cpu``."""
    device_memory: int = integer()
    """Bytes of accelerator memory, 0 for a CPU."""
    modes: list = text_list()
    """Reconstruction modes accepted: ``auto``, ``oriented``, ``unoriented``."""
    max_message_bytes: int = integer()
    heartbeat_interval: float = real()
    """Seconds between a client's pings."""
    heartbeat_timeout: float = real()
    """Seconds of silence after which either side considers the other gone."""
    queue_length: int = integer()
    max_points: int = integer(added="1.1")
    """Most points one job may have (0: no limit stated)."""
    max_queued_jobs: int = integer(added="1.1")
    """Most unfinished jobs one client may have (0: no limit stated)."""
    results_kept_seconds: float = real(added="1.1")
    """How long finished meshes stay fetchable with ``fetch_result`` (0: not kept)."""


@dataclass(frozen=True, eq=False)
class SubmitJob(Message):
    """Client -> backend: reconstruct this cloud. Answered by ``job_accepted`` or ``error``."""

    TYPE: ClassVar[str] = "submit_job"
    tag: str = text()
    """The client's own label for the job (e.g. the Blender object name)."""
    detached: bool = flag()
    """Keep running when the client goes silent."""
    overrides: dict = scalar_map()
    """Engine settings by dotted name, e.g. ``{"train.iterations": 500, "mode": "oriented"}``."""
    points: np.ndarray | None = array("float32", 3)
    normals: np.ndarray | None = array("float32", 3, optional=True, rows_like="points")
    colours: np.ndarray | None = array("float32", 3, optional=True, rows_like="points")
    """Linear RGB in [0, 1]."""


@dataclass(frozen=True, eq=False)
class JobAccepted(Message):
    TYPE: ClassVar[str] = "job_accepted"
    queue_position: int = integer()
    """0: a worker was free and the job started at once; n > 0: it waits until n jobs have
    started before it (the first of them when a running job ends)."""
    tag: str = text()


@dataclass(frozen=True, eq=False)
class Progress(Message):
    TYPE: ClassVar[str] = "progress"
    iteration: int = integer()
    total: int = integer()
    losses: dict = float_map()
    iterations_per_second: float = real()
    eta_seconds: float = real()
    mode: str = text()
    """The mode in use: ``oriented`` or ``unoriented``."""
    tile: int = integer(added="1.3")
    """The tile being trained, from 1, in a tiled job (``tiles.size``); 0 when one field fits the
    whole cloud."""
    tiles: int = integer(added="1.3")
    """How many tiles the job trains; 0 when one field fits the whole cloud."""


@dataclass(frozen=True, eq=False)
class MeshUpdate(Message):
    """A preview or the final mesh; a newer one replaces every older one of the job."""

    TYPE: ClassVar[str] = "mesh_update"
    iteration: int = integer()
    """Training iteration the mesh was taken at (the job's last for the final mesh)."""
    resolution: int = integer()
    """Grid points along the longest side of the box the mesh was extracted on (0: unknown,
    only in a result kept by a backend older than 1.2)."""
    final: bool = flag()
    vertices: np.ndarray | None = array("float32", 3)
    faces: np.ndarray | None = array("uint32", 3, indexes="vertices")
    colours: np.ndarray | None = array("float32", 3, optional=True, rows_like="vertices")


@dataclass(frozen=True, eq=False)
class JobDone(Message):
    TYPE: ClassVar[str] = "job_done"
    mode: str = text()
    stats: dict = float_map()
    timings: dict = float_map()


@dataclass(frozen=True, eq=False)
class JobFailed(Message):
    TYPE: ClassVar[str] = "job_failed"
    code: str = text()
    message: str = text()


@dataclass(frozen=True, eq=False)
class CancelJob(Message):
    """Client -> backend: stop the job named in the header."""

    TYPE: ClassVar[str] = "cancel_job"


@dataclass(frozen=True, eq=False)
class JobCancelled(Message):
    TYPE: ClassVar[str] = "job_cancelled"
    reason: str = text()


@dataclass(frozen=True, eq=False)
class FetchResult(Message):
    """Client -> backend (1.1): send again the final mesh of the job named in the header.

    Answered by its ``mesh_update`` (``final``) and ``job_done``, or by ``error`` with
    ``unknown_job`` (no such result of yours, or it has expired).
    """

    TYPE: ClassVar[str] = "fetch_result"


@dataclass(frozen=True, eq=False)
class ListJobs(Message):
    TYPE: ClassVar[str] = "list_jobs"


@dataclass(frozen=True)
class JobSummary:
    """One row of ``job_list``."""

    job: str = text()
    tag: str = text()
    state: str = text()
    """``queued``, ``running``, ``done``, ``failed`` or ``cancelled``."""
    iteration: int = integer()
    total: int = integer()


@dataclass(frozen=True, eq=False)
class JobList(Message):
    TYPE: ClassVar[str] = "job_list"
    jobs: list = record_list(JobSummary)


@dataclass(frozen=True, eq=False)
class GetSettings(Message):
    """Client -> backend (1.2): which engine settings ``submit_job.overrides`` may set. Answered
    by ``settings``."""

    TYPE: ClassVar[str] = "get_settings"


@dataclass(frozen=True)
class SettingEntry:
    """One row of ``settings``: an override key and what it accepts."""

    name: str = text()
    """Dotted name, the key in ``overrides`` (``train.iterations``)."""
    type: str = text()
    """``int``, ``float``, ``bool`` or ``str``."""
    default: Any = scalar()
    """The value this backend uses when no override sets it."""
    choices: list = text_list()
    """The values a ``str`` setting allows; empty when it is free or not a string."""
    range: str = text()
    """Interval a number must lie in, e.g. ``[8, 2048]``, ``(0, 1]``, ``[1, inf)``; empty: any."""
    meaning: str = text()
    """One sentence on what it does."""


@dataclass(frozen=True, eq=False)
class Settings(Message):
    """Backend -> client (1.2): the settings a job may override, and rules between them."""

    TYPE: ClassVar[str] = "settings"
    backend_version: str = text()
    settings: list = record_list(SettingEntry)
    relations: list = text_list()
    """Rules tying two settings, e.g. ``preview.min_resolution <= preview.max_resolution``."""


@dataclass(frozen=True, eq=False)
class Ping(Message):
    TYPE: ClassVar[str] = "ping"


@dataclass(frozen=True, eq=False)
class Pong(Message):
    TYPE: ClassVar[str] = "pong"


@dataclass(frozen=True, eq=False)
class Error(Message):
    """Backend -> client: the message ``parent`` was refused; nothing else is affected."""

    TYPE: ClassVar[str] = "error"
    code: str = text()
    message: str = text()


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.TYPE: cls
    for cls in (Hello, Welcome, SubmitJob, JobAccepted, Progress, MeshUpdate, JobDone, JobFailed,
                CancelJob, JobCancelled, FetchResult, ListJobs, JobList, GetSettings, Settings, Ping, Pong,
                Error)
}


def body_fields(cls: type) -> list[dataclasses.Field]:
    """The non-header, non-array fields of a message class (or record) in declaration order."""
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("header") and f.metadata["kind"] != "array"]


def array_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("kind") == "array"]


def header_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("header")]
