"""The siren-recon wire protocol: typed messages, their msgpack codec and a ZeroMQ client.

Pure Python on msgpack, NumPy and pyzmq, so that it runs inside Blender's own Python; it knows
nothing of torch or of the engine. The specification is ``protocol/README.md``.
"""

from .codec import DEFAULT_MAX_BYTES, decode, encode
from .errors import ProtocolError, SecurityError
from .messages import (
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    CancelJob,
    Error,
    FetchResult,
    GetSettings,
    Hello,
    JobAccepted,
    JobCancelled,
    JobDone,
    JobFailed,
    JobList,
    JobSummary,
    ListJobs,
    MeshUpdate,
    Message,
    Ping,
    Pong,
    Progress,
    SettingEntry,
    Settings,
    SubmitJob,
    Welcome,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "MESSAGE_TYPES",
    "PROTOCOL_VERSION",
    "CancelJob",
    "Error",
    "FetchResult",
    "GetSettings",
    "Hello",
    "JobAccepted",
    "JobCancelled",
    "JobDone",
    "JobFailed",
    "JobList",
    "JobSummary",
    "ListJobs",
    "MeshUpdate",
    "Message",
    "Ping",
    "Pong",
    "Progress",
    "ProtocolError",
    "SecurityError",
    "SettingEntry",
    "Settings",
    "SubmitJob",
    "Welcome",
    "decode",
    "encode",
]
