"""The wire codec: every message round-trips through real msgpack bytes; every fault is named."""

from __future__ import annotations

import dataclasses

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from siren_recon.protocol import (
    MESSAGE_TYPES,
    JobSummary,
    MeshUpdate,
    Ping,
    Progress,
    ProtocolError,
    SubmitJob,
    decode,
    encode,
)
from siren_recon.protocol import errors as E
from siren_recon.protocol.messages import array_fields, body_fields

text = st.text(max_size=20)
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
floats = st.floats(allow_nan=False, width=64)
scalars = st.one_of(text, ints, floats, st.booleans())


def values_for(kind: str, metadata: dict):
    if kind == "str":
        return text
    if kind == "int":
        return ints
    if kind == "float":
        return floats
    if kind == "bool":
        return st.booleans()
    if kind == "scalar":
        return scalars
    if kind == "list_str":
        return st.lists(text, max_size=4)
    if kind == "dict_str_float":
        return st.dictionaries(text, floats, max_size=4)
    if kind == "dict_str_scalar":
        return st.dictionaries(text, scalars, max_size=4)
    if kind == "list_record":
        record = metadata["record"]
        return st.lists(
            st.builds(record, **{f.name: values_for(f.metadata["kind"], f.metadata) for f in body_fields(record)}),
            max_size=3,
        )
    raise AssertionError(kind)


@st.composite
def messages(draw, cls):
    values = {f.name: draw(values_for(f.metadata["kind"], f.metadata)) for f in body_fields(cls)}
    for name in ("session", "job", "parent"):
        values[name] = draw(text)
    rows = draw(st.integers(0, 30))
    for f in array_fields(cls):
        meta = f.metadata
        if meta["optional"] and draw(st.booleans()):
            continue
        if meta["dtype"] == "uint32":
            values[f.name] = draw(
                hnp.arrays(np.uint32, (draw(st.integers(0, 20)), 3), elements=st.integers(0, max(rows - 1, 0)))
            )
        else:
            values[f.name] = draw(hnp.arrays(np.float32, (rows, 3), elements=st.floats(-1e6, 1e6, width=32)))
    if "faces" in values and rows == 0:
        values["faces"] = np.zeros((0, 3), np.uint32)
    return cls(**values)


def assert_same(a, b) -> None:
    assert type(a) is type(b)
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            assert x is not None and y is not None
            np.testing.assert_array_equal(np.asarray(x, dtype=y.dtype), y)
        else:
            assert x == y, f.name


@pytest.mark.parametrize("kind", sorted(MESSAGE_TYPES))
def test_every_message_type_round_trips(kind):
    cls = MESSAGE_TYPES[kind]

    @settings(max_examples=40, deadline=None)
    @given(messages(cls))
    def round_trip(message):
        frames = [bytes(frame) for frame in encode(message)]  # real bytes, as off the wire
        assert_same(message, decode(frames))

    round_trip()


def frames_of(message) -> list[bytes]:
    return [bytes(f) for f in encode(message)]


def tamper(message, **changes) -> list[bytes]:
    frames = frames_of(message)
    head = msgpack.unpackb(frames[0], raw=False)
    for key, value in changes.items():
        target = head
        *path, last = key.split("__")
        for part in path:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        elif value is DELETE:
            del target[last]
        else:
            target[last] = value
    return [msgpack.packb(head, use_bin_type=True)] + frames[1:]


DELETE = object()


def submit(rows: int = 5) -> SubmitJob:
    rng = np.random.default_rng(0)
    return SubmitJob(tag="t", points=rng.random((rows, 3)), normals=rng.random((rows, 3)))


def mesh() -> MeshUpdate:
    return MeshUpdate(iteration=3, vertices=np.eye(3), faces=np.array([[0, 1, 2]]))


def expect(code: str, frames, **kwargs) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode(frames, **kwargs)
    assert info.value.code == code
    return info.value


def test_unknown_type():
    assert "'frobnicate'" in expect(E.UNKNOWN_TYPE, tamper(Ping(), type="frobnicate")).message


def test_missing_and_wrongly_typed_fields():
    assert "'tag'" in expect(E.MISSING_FIELD, tamper(submit(), body__tag=DELETE)).message
    assert (
        "submit_job.detached must be a boolean"
        in expect(E.BAD_FIELD_TYPE, tamper(submit(), body__detached="yes")).message
    )
    expect(E.BAD_FIELD_TYPE, tamper(submit(), body__overrides={"a": [1, 2]}))
    expect(E.BAD_FIELD_TYPE, tamper(mesh(), body__iteration=1.5))
    expect(E.BAD_FIELD_TYPE, tamper(mesh(), body__iteration=True))
    expect(E.MISSING_FIELD, tamper(Ping(), msg_id=DELETE))
    expect(E.BAD_FIELD_TYPE, tamper(Ping(), job=7))
    expect(E.MISSING_FIELD, tamper(submit(), arrays=[])[:1])


def test_an_array_name_of_the_wrong_type_is_refused_not_a_crash():
    assert "no array named" in expect(E.BAD_FIELD_TYPE, tamper(submit(), arrays__0__name=["points"])).message


def test_dtype_and_shape_as_declared():
    expect(E.BAD_DTYPE, tamper(submit(), arrays__0__dtype="float64"))
    frames = tamper(submit(), arrays__0__shape=[5, 4])
    expect(E.BAD_SHAPE, frames)
    frames = tamper(submit(), arrays__1__shape=[4, 3])
    frames[2] = frames[2][:48]
    assert "normals has 4 rows, points has 5" in expect(E.BAD_SHAPE, frames).message


def test_buffer_length_mismatch():
    frames = frames_of(submit())
    frames[1] = frames[1][:-4]
    assert "56 bytes" in expect(E.BUFFER_LENGTH, frames).message


def test_non_finite_coordinates():
    points = np.random.default_rng(0).random((5, 3)).astype(np.float32)
    frames = frames_of(SubmitJob(points=points))
    bad = points.copy()
    bad[2, 1] = np.nan
    frames[1] = bad.tobytes()
    expect(E.NON_FINITE, frames)


def test_face_index_out_of_range():
    frames = frames_of(mesh())
    frames[2] = np.array([[0, 1, 3]], dtype="<u4").tobytes()
    assert "row 3 of vertices" in expect(E.INDEX_OUT_OF_RANGE, frames).message


def test_major_version_refused_minor_accepted():
    assert "2.0" in expect(E.UNSUPPORTED_VERSION, tamper(Ping(), v="2.0")).message
    assert isinstance(decode(tamper(Ping(), v="1.7")), Ping)
    expect(E.BAD_VERSION, tamper(Ping(), v="one"))


@pytest.mark.parametrize("version", ["banana", "1", "1.2.3", "v1.2", "1.", ".2", " 1.2", "1.2 ", "\u0661.2", "12345.0"])
def test_a_version_not_of_the_form_major_minor_is_bad_version(version):
    assert repr(version) in expect(E.BAD_VERSION, tamper(Ping(), v=version)).message


@pytest.mark.parametrize("value", [1.2, 1, True, ["1", "2"]])
def test_a_version_that_is_not_a_string_is_bad_version(value):
    expect(E.BAD_VERSION, tamper(Ping(), v=value))


@pytest.mark.parametrize("key", ["v", "type", "msg_id", "session", "job", "parent", "body", "arrays"])
def test_every_missing_header_key_is_missing_field_naming_it(key):
    error = expect(E.MISSING_FIELD, tamper(submit(), **{key: DELETE}))
    assert repr(key) in error.message


def refusal(frames, **kwargs) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode(frames, **kwargs)
    return info.value


@pytest.mark.parametrize(
    ("code", "change"),
    [
        (E.UNKNOWN_TYPE, {"type": "frobnicate"}),
        (E.UNSUPPORTED_VERSION, {"v": "9.0"}),
        (E.BAD_VERSION, {"v": "banana"}),
        (E.MISSING_FIELD, {"session": DELETE}),
        (E.MISSING_FIELD, {"type": DELETE}),
        (E.BAD_FIELD_TYPE, {"body__tag": 3}),
        (E.MISSING_FIELD, {"arrays": DELETE}),
        (E.MALFORMED, {"arrays": []}),
    ],
)
def test_errors_carry_the_refused_messages_msg_id_and_job(code, change):
    request = SubmitJob(msg_id="m-1", job="j-1", points=np.zeros((4, 3)))
    error = refusal(tamper(request, **change))
    assert (error.code, error.msg_id, error.job) == (code, "m-1", "j-1")


def test_a_too_large_message_names_its_msg_id_when_frame_0_is_within_the_limit():
    frames = frames_of(SubmitJob(msg_id="m-1", points=np.zeros((40, 3))))
    error = refusal(frames, max_bytes=len(frames[0]) + 10)
    assert (error.code, error.msg_id) == (E.TOO_LARGE, "m-1")


@pytest.mark.parametrize("frames", [[b"\xc1"], tamper(Ping(), msg_id=DELETE), tamper(Ping(), msg_id=5)])
def test_an_unreadable_msg_id_leaves_the_errors_parent_empty(frames):
    assert refusal(frames).msg_id == ""


def test_a_missing_or_wrongly_typed_arrays_table():
    expect(E.MISSING_FIELD, tamper(submit(), arrays=DELETE))
    expect(E.BAD_FIELD_TYPE, tamper(submit(), arrays={"points": 1}))
    assert "'shape'" in expect(E.MISSING_FIELD, tamper(submit(), arrays__0__shape=DELETE)).message


def test_size_limit():
    frames = frames_of(submit(1000))
    expect(E.TOO_LARGE, frames, max_bytes=1000)
    assert isinstance(decode(frames, max_bytes=100_000), SubmitJob)


def test_a_cloud_over_the_point_limit_is_refused_naming_the_limit():
    frames = frames_of(submit(1001))
    error = expect(E.TOO_MANY_POINTS, frames, max_rows=1000)
    assert "1001 rows" in error.message and "limit of 1000 points" in error.message
    assert len(decode(frames, max_rows=1001).points) == 1001


def test_the_point_limit_is_checked_before_the_arrays_frames_are_read():
    """A header declaring 10^9 points with no bytes behind them: refused for the count, not the bytes."""
    frames = tamper(submit(), arrays__0__shape=[10**9, 3], arrays__1__shape=[10**9, 3])
    assert "limit of 10000000 points" in expect(E.TOO_MANY_POINTS, frames, max_rows=10_000_000).message
    expect(E.BUFFER_LENGTH, frames)


def test_no_extension_types_and_no_raw_bytes_keys():
    head = msgpack.unpackb(frames_of(Ping())[0], raw=False)
    head["body"] = msgpack.ExtType(1, b"\x80\x04")  # what a pickle smuggled in would look like
    expect(E.MALFORMED, [msgpack.packb(head, use_bin_type=True)])
    expect(E.MALFORMED, [msgpack.packb({b"v": "1.0"}, use_bin_type=True)])  # bytes keys are refused
    expect(E.MALFORMED, [b"\x93\x01\x02\x03"])  # a list, not a map


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), min_size=0, max_size=4))
def test_random_bytes_only_ever_raise_protocol_error(frames):
    try:
        decode(frames)
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_truncated_frames_only_ever_raise_protocol_error(data):
    frames = frames_of(submit(8))
    index = data.draw(st.integers(0, len(frames) - 1))
    cut = data.draw(st.integers(0, max(0, len(frames[index]) - 1)))
    frames[index] = frames[index][:cut]
    keep = data.draw(st.integers(1, len(frames)))
    with pytest.raises(ProtocolError):
        decode(frames[:keep])


def test_job_list_records_round_trip():
    from siren_recon.protocol import JobList

    listing = JobList(jobs=[JobSummary(job="a", tag="x", state="running", iteration=5, total=10)])
    assert decode(frames_of(listing)).jobs == listing.jobs


@pytest.mark.live
def test_decoder_fuzz_run_has_no_crashes(tmp_path):
    """The fuzz script (scripts/fuzz_protocol.py) on 5,000 damaged messages: errors, never crashes."""
    import json
    import subprocess
    import sys

    from .paths import REPO

    out = tmp_path / "fuzz.json"
    run = subprocess.run(
        [sys.executable, "scripts/fuzz_protocol.py", "--count", "5000", "--seed", "3", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    figures = json.loads(out.read_text())
    assert run.returncode == 0 and figures["crashes"] == 0, run.stderr
    assert figures["outcomes"]["decoded"] > 0 and figures["outcomes"]["malformed"] > 0


def test_a_progress_from_a_1_2_backend_reads_as_one_field_and_a_1_3_one_names_its_tile():
    frames = encode(Progress(job="j", iteration=5, total=10, mode="oriented", tile=2, tiles=3))
    assert (decode(frames).tile, decode(frames).tiles) == (2, 3)
    head = msgpack.unpackb(frames[0], raw=False)
    head["v"] = "1.2"
    del head["body"]["tile"], head["body"]["tiles"]
    older = decode([msgpack.packb(head, use_bin_type=True)])
    assert (older.iteration, older.tile, older.tiles) == (5, 0, 0)
    head["body"]["tile"] = 1.0  # present, it must be an int like every int field
    with pytest.raises(ProtocolError) as caught:
        decode([msgpack.packb(head, use_bin_type=True)])
    assert caught.value.code == E.BAD_FIELD_TYPE and "tile" in str(caught.value)
