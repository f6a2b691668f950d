"""The conformance vectors: committed as the generator makes them, and replayed against a real
backend process on 127.0.0.1 over real ZeroMQ sockets, every case passing."""

from __future__ import annotations

import json
import re
import signal

import msgpack
import pytest

from siren_recon.protocol import Settings
from siren_recon.protocol.client import Client
from siren_recon.server.settings import wire_settings

from .live_backend import free_port, start_backend
from .paths import REPO
from .scripts import load_script

generator = load_script("generate_conformance")
replayer = load_script("replay_conformance")
FOLDER = REPO / "protocol" / "conformance"
SPEC = (REPO / "protocol" / "README.md").read_text(encoding="utf-8")
CASES = replayer.case_names(FOLDER)


def test_the_committed_vectors_are_what_the_generator_makes():
    assert generator.on_disk(FOLDER) == generator.render(generator.cases())


def test_every_refusal_and_job_failure_code_of_the_spec_has_a_vector():
    table = SPEC.split("<!-- codes:begin -->")[1].split("<!-- codes:end -->")[0]
    codes = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)`[^|]* \|(.*)\|$", table, re.M)}
    assert len(codes) >= 30
    expected = set()
    for name in CASES:
        for step in json.loads((FOLDER / name / "case.json").read_text())["steps"]:
            expected |= {reply["code"] for reply in step["expect"] if "code" in reply}
    reachable = {code for code, row in codes.items() if "| none:" not in row}
    assert reachable <= expected, sorted(reachable - expected)
    assert expected <= set(codes), sorted(expected - set(codes))


def test_every_vector_frame_0_is_a_msgpack_map_or_a_deliberate_fault():
    for name in CASES:
        for step in json.loads((FOLDER / name / "case.json").read_text())["steps"]:
            data = (FOLDER / name / step["frames"][0]).read_bytes()
            try:
                head = msgpack.unpackb(data, raw=False, strict_map_key=True, ext_hook=_refuse)
            except Exception:
                assert name.startswith(("09-", "11-")), name  # not msgpack; an extension type
                continue
            assert isinstance(head, dict) or name.startswith("10-"), name


def _refuse(code, data):
    raise ValueError(code)


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    flags = json.loads((FOLDER / "backend.json").read_text())["serve_flags"]
    port = free_port()
    process = start_backend(port, tmp_path_factory.mktemp("conformance") / "log.txt", *flags)
    yield f"tcp://127.0.0.1:{port}"
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


@pytest.mark.live
@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_the_vector_replays_against_a_real_backend(backend, case):
    seen = replayer.replay_case(backend, FOLDER / case)
    assert seen, case


@pytest.mark.live
@pytest.mark.slow
def test_get_settings_lists_the_same_settings_as_the_spec(backend):
    with Client(address=backend) as client:
        request = client.get_settings()
        reply = None
        for _ in range(200):
            reply = next((e for e in client.poll(50) if isinstance(e, Settings)), None)
            if reply is not None:
                break
    assert reply is not None and reply.parent == request
    assert [row.name for row in reply.settings] == [s.name for s in wire_settings()]
    rows = {row.name: row for row in reply.settings}
    assert rows["mesh.resolution"].range == "[8, 2048]" and rows["mesh.resolution"].default == 256
    assert rows["mode"].choices == ["auto", "oriented", "unoriented"]
    assert "train.device" not in rows
    assert "preview.min_resolution <= preview.max_resolution" in reply.relations
    for row in reply.settings:
        assert f"| `{row.name}` |" in SPEC
