"""Property-based tests (hypothesis) of the ingest protocol: hostile frames never hurt anyone."""

from __future__ import annotations

import json
import urllib.error
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tornado.websocket import websocket_connect

from streamdom import wire
from streamdom.ingest import frames as frames_mod
from streamdom.ingest import validate
from streamdom.testing import ServerProcess
from streamdom.wire import CloseCode
from tests.helpers import TEST_SERVER_ARGS, Recorder, record, run_async, session_events

# The server must leave the process's recursion limit as it found it, which Hypothesis checks
# around every example.
pytestmark = pytest.mark.filterwarnings("error::hypothesis.errors.HypothesisWarning")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
frames = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300),
    json_values.map(json.dumps),
    st.builds(lambda evs, seq: json.dumps({"type": "events", "seq": seq, "events": evs}),
              st.lists(json_values, max_size=4), json_values),
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 3000).map(lambda n: '{"a":' * n + "1" + "}" * n),
)


@given(frames)
@settings(max_examples=400, deadline=None)
def test_parse_never_raises_anything_but_protocol_errors(frame: str | bytes) -> None:
    try:
        msg = frames_mod.parse_frame(frame)
    except wire.ProtocolError as exc:
        assert exc.code == CloseCode.MALFORMED
        return
    for parse in (validate.parse_hello, validate.parse_events):
        try:
            parse(msg)
        except wire.ProtocolError as exc:
            assert exc.code == CloseCode.MALFORMED


@given(st.lists(json_values, min_size=1, max_size=5))
@settings(max_examples=300, deadline=None)
def test_accepted_events_round_trip_exactly(events: list) -> None:
    evs = [{"type": 3, "timestamp": 5, "data": e if isinstance(e, dict) else {"v": e}} for e in events]
    msg = {"type": "events", "seq": 1, "events": evs}
    # json.dumps' default blanks take the general path; the compact form, as browsers write it,
    # the fast ones (one event: the whole frame at once; several: event by event)
    for text in (json.dumps(msg), json.dumps(msg, separators=(",", ":"), ensure_ascii=False)):
        if any(v != v or v in (float("inf"), float("-inf")) for v in _numbers(evs)):
            with pytest.raises(wire.ProtocolError):  # NaN and Infinity are not JSON: refused
                frames_mod.parse_frame(text)
            return
        seq, span = validate.parse_events(frames_mod.parse_frame(text))
        (batch,) = validate.make_batches("s", "a", seq, span, 0, 1)
        for rec, ev in zip(batch.records, evs, strict=True):
            assert json.loads(rec.event_json()) == ev
        relayed = json.loads(wire.frame_text(batch.frame))
        assert (relayed["events"] if len(evs) > 1 else [relayed["event"]]) == evs


def _numbers(value: object) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, list):
        return [x for v in value for x in _numbers(v)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in _numbers(v)]
    return []


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # A process of its own, not a thread of this one: a deep frame makes the server raise the
    # interpreter's recursion limit while it decodes, and Hypothesis changes the same limit
    # around every example; in one process the two would race.
    srv = ServerProcess(tmp_path_factory.mktemp("fuzz") / "data", *TEST_SERVER_ARGS,
                        "--flush-interval", "0.3", "--max-message-bytes", "100000").start()
    yield srv
    srv.stop()


@given(st.lists(frames, min_size=1, max_size=4))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_hostile_frames_over_a_real_socket(fuzz_server: ServerProcess, attack: list) -> None:
    """After a hello, hostile frames close only their own connection and store nothing."""
    async def go() -> None:
        rec = Recorder(fuzz_server.ws, "fuzzed")
        await rec.connect()
        for frame in attack:
            try:
                await rec.conn.write_message(frame, binary=isinstance(frame, bytes))
            except Exception:  # noqa: BLE001 - the server may have closed us already: that's fine
                break
        rec.close()
        raw = await websocket_connect(fuzz_server.ws + "/ingest")
        for frame in attack:  # the same frames as a first frame, before any hello
            try:
                await raw.write_message(frame, binary=isinstance(frame, bytes))
            except Exception:  # noqa: BLE001
                break
        raw.close()

    run_async(go())


def test_after_fuzzing_the_server_is_healthy_and_sessions_are_intact(fuzz_server: ServerProcess) -> None:
    evs = session_events(30)

    record(fuzz_server.ws, "bystander", evs)
    assert fuzz_server.proc is not None and fuzz_server.proc.poll() is None
    assert fuzz_server.get_json("/healthz")["ok"] is True
    assert fuzz_server.get_json("/api/sessions/bystander/events") == evs
    # Whatever the fuzzer sent as "fuzzed", only well-formed rrweb events could have been stored.
    # (If it stored none, the session is unknown once its grace period is over: 404.)
    try:
        stored = fuzz_server.get_json("/api/sessions/fuzzed/events")
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
        stored = []
    for ev in stored:
        validate.check_event(ev)
