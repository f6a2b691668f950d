"""The one exception the protocol raises, and its codes."""

from __future__ import annotations

MALFORMED = "malformed"
"""Not a multipart message of the documented layout, or not msgpack, or not a map."""
UNSUPPORTED_VERSION = "unsupported_version"
"""The major protocol version differs from ours (a different minor is accepted)."""
BAD_VERSION = "bad_version"
"""``v`` is not a version string of the form ``MAJOR.MINOR`` (1.2)."""
UNKNOWN_TYPE = "unknown_type"
"""``type`` names no message of the protocol."""
MISSING_FIELD = "missing_field"
"""A header key, a body field, a key of an array's entry or a required array is absent."""
BAD_FIELD_TYPE = "bad_field_type"
"""A value has the wrong type, or an array has a name the message does not have."""
BAD_DTYPE = "bad_dtype"
BAD_SHAPE = "bad_shape"
BUFFER_LENGTH = "buffer_length"
"""An array frame's byte length differs from what its dtype and shape declare."""
NON_FINITE = "non_finite"
INDEX_OUT_OF_RANGE = "index_out_of_range"
TOO_LARGE = "too_large"
"""The message is over the receiver's size limit."""
TOO_MANY_POINTS = "too_many_points"
"""An array has more rows than the receiver takes (a backend's ``max_points``)."""

CODES = (
    MALFORMED, UNSUPPORTED_VERSION, BAD_VERSION, UNKNOWN_TYPE, MISSING_FIELD, BAD_FIELD_TYPE, BAD_DTYPE,
    BAD_SHAPE, BUFFER_LENGTH, NON_FINITE, INDEX_OUT_OF_RANGE, TOO_LARGE, TOO_MANY_POINTS,
)


class ProtocolError(ValueError):
    """A message that cannot be decoded or does not match the schema.

    ``msg_id`` and ``job`` are the refused message's own, when its header could be read that
    far (else empty): the ``error`` reply names them as its ``parent`` and ``job``.
    """

    def __init__(self, code: str, message: str, msg_id: str = "", job: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.msg_id = msg_id
        self.job = job


class SecurityError(RuntimeError):
    """CURVE security cannot be set up: no CURVE in libzmq, or a key file that is missing or wrong."""
