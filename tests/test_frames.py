"""Recorder frames decoded strictly with `data` kept as received (streamdom.ingest.frames)."""

from __future__ import annotations

import json
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamdom.ingest.frames import EventsSpan, clean_str, lone_surrogates_replaced, parse_frame
from streamdom.wire import ProtocolError
from tests.helpers import strict_loads, well_formed

# JSON values as browsers produce them: any text (lone surrogates included), finite numbers.
scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(
    allow_nan=False, allow_infinity=False) | st.text()
values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
    st.text(max_size=8), kids, max_size=4), max_leaves=20)
events = st.fixed_dictionaries({
    "type": st.integers(0, 100), "timestamp": st.integers(0, 2**53 - 1),
    "data": st.dictionaries(st.text(max_size=8), values, max_size=5) | st.lists(values, max_size=4),
})


def frame(evs: list[dict], seq: int = 1, **dumps: object) -> str:
    return json.dumps({"type": "events", "seq": seq, "events": evs}, **dumps)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.lists(events, min_size=1, max_size=5), st.booleans())
def test_any_frame_a_browser_sends_is_kept_as_strict_utf8_json(evs: list[dict], ascii_only: bool) -> None:
    """Canonical or not, every event's data comes back as strict, UTF-8-encodable JSON text."""
    text = frame(evs, ensure_ascii=ascii_only) if ascii_only else frame(evs, ensure_ascii=False,
                                                                          separators=(",", ":"))
    try:
        text.encode()
    except UnicodeEncodeError:  # a raw lone surrogate: no browser sends that (UTF-8 on the wire)
        text = frame(evs)
    msg = parse_frame(text)
    span = msg["events"]
    assert isinstance(span, EventsSpan) and len(span.events) == len(evs)
    for ev, raw in zip(evs, span.events, strict=True):
        assert (raw.type, raw.timestamp) == (ev["type"], ev["timestamp"])
        raw.data.encode()  # no lone surrogate can reach UTF-8 storage
        assert strict_loads(raw.data) == well_formed(ev["data"])


def test_canonical_frames_are_kept_byte_for_byte() -> None:
    evs = [{"type": 3, "data": {"source": 0, "texts": [{"id": 1, "value": "é 🙂 \"q\""}]}, "timestamp": 5},
           {"type": 2, "data": {"node": {"childNodes": []}}, "timestamp": 6}]
    text = frame(evs, separators=(",", ":"), ensure_ascii=False)
    span = parse_frame(text)["events"]
    assert span.text == json.dumps(evs, separators=(",", ":"), ensure_ascii=False)
    assert [e.data for e in span.events] == [
        json.dumps(e["data"], separators=(",", ":"), ensure_ascii=False) for e in evs]


def test_a_single_canonical_event_is_kept_byte_for_byte() -> None:
    ev = {"type": 3, "data": {"source": 5, "text": "é 🙂 \"q\"", "isChecked": False, "x": 1.5}, "timestamp": 9}
    msg = parse_frame(frame([ev], seq=7, separators=(",", ":"), ensure_ascii=False))
    (raw,) = msg["events"].events
    assert msg["seq"] == 7 and msg["events"].text == json.dumps([ev], separators=(",", ":"), ensure_ascii=False)
    assert (raw.type, raw.timestamp, raw.extra) == (3, 9, None)
    assert raw.data == json.dumps(ev["data"], separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize("blank", ["\n", "\t", "\r\n", " \n\t "])
@pytest.mark.parametrize("events", [1, 2])
def test_raw_tabs_and_newlines_between_tokens_are_not_kept(blank: str, events: int) -> None:
    # The log and the cluster's messages are tab-separated lines: a raw tab or newline kept in
    # `data` would break a log frame open (and lose the rest of its segment at the next flush).
    data = f'{{"source":0,{blank}"texts":[{blank}1,{blank}"a\\tb\\n"]{blank}}}'
    one = f'{{"type":3,"data":{data},"timestamp":5}}'
    msg = parse_frame('{"type":"events","seq":1,"events":[' + ",".join([one] * events) + "]}")
    for raw in msg["events"].events:
        assert not {"\t", "\n", "\r"} & set(raw.data)
        assert json.loads(raw.data) == {"source": 0, "texts": [1, "a\tb\n"]}
    assert msg["events"].text is None  # rewritten: not spliced into viewers' frames as it came


def test_other_shapes_are_read_and_extras_kept() -> None:
    text = '{ "events" : [ { "data" : [ 1 , 2 ] , "timestamp" : 7.9, "type" : 5, "x": "\\ud83d" } ], "seq": 4, "type": "events" }'
    msg = parse_frame(text)
    (ev,) = msg["events"].events
    assert msg["seq"] == 4 and msg["events"].text is None
    assert (ev.type, ev.timestamp, ev.data, ev.extra) == (5, 7, "[ 1 , 2 ]", '{"x":"\\ufffd"}')


@pytest.mark.parametrize("bad", [
    '{"type":"events","seq":1,"events":[{"type":3,"data":{"a":NaN},"timestamp":1}]}',
    '{"type":"events","seq":1,"events":[{"type":3,"data":{"a":-Infinity},"timestamp":1}]}',
    '{"type":"events","seq":1,"events":[{"type":3,"data":{"a":1e999},"timestamp":1}]}',
    '{"type":"events","seq":1,"events":[{"type":3,"data":{"a":"\x01"},"timestamp":1}]}',
    '{"type":"events","seq":1,"events":[{"type":3,"data":{"a":"\\x"},"timestamp":1}]}',
    '{"type":"events","seq":1,"events":[{"type":3,"data":"text","timestamp":1}]}',
    '{"type":"events","seq":1,"events":[{"type":3,"data":{},"timestamp":-1}]}',
    '{"type":"events","seq":1,"events":[{"type":101,"data":{},"timestamp":1}]}',
    '{"type":"events","seq":1,"events":[{"type":true,"data":{},"timestamp":1}]}',
    '{"type":"events","seq":1,"events":[{"type":3,"timestamp":1}]}',
    '{"type":"events","seq":1,"events":[{"type":3,"data":{},"timestamp":1}]} trailing',
    '{"type":"events","seq":1,"events":[{"type":3,"data":{},"timestamp":1},]}',
    '{"type":"ping","t0":NaN}',
    '[1]', '{"type":1}', '', '{"type":"x"',
    # leading zeros are not JSON (a verbatim events array goes into viewers' frames as it came)
    '{"type":"events","seq":1,"events":[{"type":03,"data":{},"timestamp":1}]}',
    '{"type":"events","seq":1,"events":[{"type":3,"data":{},"timestamp":01}]}',
    '{"type":"events","seq":01,"events":[{"type":3,"data":{},"timestamp":1}]}',
    '{"type":"events","seq":1,"events":[{"type":3,"data":{},"timestamp":1},{"type":3,"data":{},"timestamp":02}]}',
])
def test_anything_but_strict_json_is_refused(bad: str) -> None:
    with pytest.raises(ProtocolError):
        parse_frame(bad)


def test_depth_is_bounded_by_the_stack_not_the_recursion_limit() -> None:
    # A DOM 1,000 elements deep nests rrweb's snapshot over 2,000 levels: far past the C
    # decoder's usual limit (about 1,000).
    data = '{"node":' + '{"childNodes":[' * 3000 + "]}" * 3000 + "}"
    (ev,) = parse_frame(frame([{"type": 2, "data": {}, "timestamp": 1}]).replace("{}", data))["events"].events
    assert ev.data == data
    with pytest.raises(ProtocolError, match="nested deeper"):  # only what no stack could take
        parse_frame(frame([{"type": 2, "data": [], "timestamp": 1}]).replace("[]", "[" * 200_000 + "]" * 200_000))


def test_a_deep_decode_leaves_the_process_recursion_limit_as_it_found_it() -> None:
    # The limit is process-wide: a deep frame, accepted or refused, must not change it for
    # every other thread afterwards.
    before = sys.getrecursionlimit()
    parse_frame(frame([{"type": 2, "data": {}, "timestamp": 1}]).replace("{}", "[" * 3000 + "]" * 3000))
    assert sys.getrecursionlimit() == before
    with pytest.raises(ProtocolError):
        parse_frame(frame([{"type": 2, "data": {}, "timestamp": 1}]).replace("{}", "[" * 3000 + "]" * 2999))
    assert sys.getrecursionlimit() == before


def test_lone_surrogate_escapes_become_replacement_characters() -> None:
    pair, lone_hi, lone_lo = "\\ud83d\\ude00", "\\ud83d", "\\ude00"
    assert lone_surrogates_replaced(f'"{pair}"') == f'"{pair}"'
    assert lone_surrogates_replaced(f'"a{lone_hi}b"') == '"a\\ufffdb"'
    assert lone_surrogates_replaced(f'"{lone_lo}{lone_hi}"') == '"\\ufffd\\ufffd"'
    assert lone_surrogates_replaced('"\\\\ud83d"') == '"\\\\ud83d"'  # an escaped backslash, then text
    assert clean_str("a\ud83db") == "a\ufffdb"
