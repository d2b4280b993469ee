"""Recorder frames decoded strictly, each event's `data` kept as the JSON text that was received.

To relay, log and store an event the server needs only its `type`, its `timestamp` and where its
`data` starts and ends; `data` itself goes everywhere as the text the recorder sent. Decoding it
into Python objects only to encode it again cost as much as everything else we do per event, and
the C decoder's recursion limit (about 1,000 levels) refused pages that rrweb records and replays
without trouble (a DOM 600 elements deep nests its snapshot 1,200 levels).

What is kept is strict JSON (RFC 8259), so every reader downstream (DuckDB's json_extract, a
browser's JSON.parse, the events API) takes it:
- every value is validated by the C decoder: `NaN`, `Infinity`, numbers beyond a double, control
  characters in strings and broken escapes are refused (ProtocolError, close code 4400);
- a `\\uD83D`-style escape of a lone UTF-16 surrogate (a string cut inside an emoji, as pages
  do) is valid JSON grammar but not Unicode; it is stored as `\\ufffd` (U+FFFD), as a browser's
  TextEncoder would turn it;
- nesting is bounded by the frame size (--max-message-bytes) and the thread's stack, not by the
  interpreter's recursion limit: a deep value is decoded again with a limit sized to the stack;
- raw tabs, CRs and newlines between tokens are dropped (the log and the cluster's messages are
  tab-separated lines; inside a JSON string those characters are always escaped).

The common shape, `{"type":N,"data":...,"timestamp":T}` as JSON.stringify writes rrweb's
events, is read with two regular expressions around the data (a frame of just one such event,
the most common frame, with one for the whole frame up to its data and one after it); anything
else (other key orders, whitespace, extra keys) goes the general way and is re-assembled in
that canonical shape.
"""

from __future__ import annotations

import json
import math
import re
import resource
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from json.decoder import scanstring
from typing import Any

from streamdom.wire import ProtocolError

MAX_EVENT_TYPE = 100
MAX_TIMESTAMP = 2**53


@dataclass(slots=True)
class RawEvent:
    """An rrweb event of a frame: its type and timestamp, `data` as the JSON text received."""

    type: int
    timestamp: int
    data: str  # JSON text (an object or an array), strict
    extra: str | None  # any other top-level members, as a compact JSON object's text


@dataclass(slots=True)
class EventsSpan:
    """A frame's `events` array: the events, and the array's text when it needs no rewriting.

    `text` is set when every event is in the canonical shape and kept byte for byte, so a
    relay of all of them can splice the array into its own frame as it came.
    """

    events: list[RawEvent]
    text: str | None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:24]} is out of range")
    return value


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
_raw_decode = _DECODER.raw_decode
_scan_once = _DECODER.scan_once  # raw_decode without its Python frame: (value, end) or an exception
_WS = re.compile(r"[ \t\n\r]*")
_BLANK = frozenset((" ", "\t", "\n", "\r", ""))  # and "" (the end): whatever _ws would look at
# Numbers as JSON writes them (no leading zeros: "007" is not JSON, and a verbatim array is
# spliced into viewers' frames as it came).
_FAST_FRAME = re.compile(r'\{"type":"events","seq":(0|[1-9]\d{0,15}),"events":(?=\[)')
_FAST_HEAD = re.compile(r'\{"type":(0|[1-9]\d{0,2}),"data":')
_FAST_TAIL = re.compile(r',"timestamp":(0|[1-9]\d{0,15})\}')
# The whole of the most common frame, one event in the canonical shape, but for its data.
_FAST_ONE = re.compile(r'\{"type":"events","seq":(0|[1-9]\d{0,15}),"events":\[\{"type":(0|[1-9]\d{0,2}),"data":')
_ONE_EVENTS_AT = len('[{"type":')  # where the events array starts, before the type's digits
_FAST_ONE_END = re.compile(r',"timestamp":(0|[1-9]\d{0,15})\}\]\}\Z')
_DROP_BLANKS = str.maketrans("", "", "\t\n\r")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# Escapes in order, so an escaped backslash is never read as the start of another escape:
# a surrogate pair (kept), a lone surrogate (replaced), any other escape (kept).
_ESCAPE = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
                     r"|\\u[dD][89a-fA-F][0-9a-fA-F]{2}|\\.")


_DEEP_DECODE = threading.Lock()


def _stack_depth_budget() -> int:
    """How many nesting levels the C decoder may recurse on this thread without risking its stack.

    Measured: about 160 bytes of C stack per level (CPython 3.11); 512 leaves room to spare.
    """
    if threading.current_thread() is threading.main_thread():
        soft = resource.getrlimit(resource.RLIMIT_STACK)[0]
        stack = 8 << 20 if soft == resource.RLIM_INFINITY else soft
    else:
        stack = threading.stack_size() or 2 << 20
    return max(1000, stack // 512)


def lone_surrogates_replaced(json_text: str) -> str:
    """`json_text` with every escape of a lone UTF-16 surrogate turned into `\\ufffd`."""
    if "\\u" not in json_text or not _SURROGATE_ESCAPE.search(json_text):
        return json_text
    return _ESCAPE.sub(lambda m: "\\ufffd" if len(m.group()) == 6 else m.group(), json_text)


def stored_text(json_text: str) -> str:
    """Validated JSON text as it is kept: lone surrogate escapes as `\\ufffd`, and no tab, CR or
    LF (the log and the cluster's messages are lines of tab-separated fields).

    Strict JSON has those three raw only as blanks between tokens (inside a string they must be
    escaped), so dropping them changes no value: `{"a":\\n1}` is kept as `{"a":1}`.
    """
    # (`in` checks: each a fast scan in C, where a regex for all of them steps char by char)
    if "\n" in json_text or "\t" in json_text or "\r" in json_text:
        json_text = json_text.translate(_DROP_BLANKS)
    if "\\u" not in json_text:
        return json_text
    return lone_surrogates_replaced(json_text)


def clean_str(value: str) -> str:
    """A decoded string with lone surrogates (no UTF-8 form) replaced by U+FFFD."""
    try:
        value.encode()
        return value
    except UnicodeEncodeError:
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _ws(text: str, i: int) -> int:
    return _WS.match(text, i).end()  # type: ignore[union-attr]  # matches the empty string


def _value(text: str, i: int) -> tuple[Any, int]:
    """Decode the JSON value at `i` strictly; (value, end)."""
    try:
        return _raw_decode(text, i)
    except RecursionError:
        pass
    except ValueError as exc:  # JSONDecodeError, or NaN/Infinity/out of range
        raise ProtocolError(f"frame is not valid JSON: {exc}"[:120]) from None
    # Deeper than the interpreter's recursion limit: again, with a limit the stack can take.
    budget = _stack_depth_budget()
    # The limit is the whole process's: one deep decode at a time, and it is put back only if
    # nobody else changed it meanwhile (lowering another thread's raised limit under its feet
    # would fail that thread's work, and restoring over its change would leak ours).
    with _DEEP_DECODE:
        old = sys.getrecursionlimit()
        raised = old + min(budget, text.count("{", i) + text.count("[", i)) + 64
        sys.setrecursionlimit(raised)
        try:
            return _raw_decode(text, i)
        except RecursionError:
            raise ProtocolError(f"value nested deeper than {budget} levels") from None
        except ValueError as exc:
            raise ProtocolError(f"frame is not valid JSON: {exc}"[:120]) from None
        finally:
            if sys.getrecursionlimit() == raised:
                sys.setrecursionlimit(old)


def _expect(text: str, i: int, char: str, what: str) -> int:
    if not text.startswith(char, i):
        raise ProtocolError(f"frame is not valid JSON (expected {what} at {i})")
    return i + 1


def _object(text: str, i: int, member: Callable[[str, int], int]) -> int:
    """Walk the object at `i`: `member(key, value_start)` reads each value and returns its end.

    Returns the end of the object.
    """
    i = _ws(text, _expect(text, i, "{", "an object"))
    if text.startswith("}", i):
        return i + 1
    while True:
        i = _expect(text, i, '"', "a key")
        try:
            key, i = scanstring(text, i, True)
        except ValueError as exc:
            raise ProtocolError(f"frame is not valid JSON: {exc}"[:120]) from None
        i = _ws(text, member(key, _ws(text, _expect(text, _ws(text, i), ":", "':'"))))
        if text.startswith(",", i):
            i = _ws(text, i + 1)
        else:
            return _expect(text, i, "}", "',' or '}'")


def _skip(text: str, i: int) -> int:
    """End of the (validated) value at `i`."""
    return _value(text, i)[1]


def _check_type(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_EVENT_TYPE:
        raise ProtocolError(f"event.type must be an integer 0-{MAX_EVENT_TYPE}")
    return value


def _check_timestamp(value: object) -> int:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < MAX_TIMESTAMP:
        raise ProtocolError("event.timestamp must be a non-negative number")
    return int(value)


def _data(text: str, start: int, end: int) -> str:
    if text[start] not in "{[":
        raise ProtocolError("event.data must be an object")
    return text[start:end]


def _event(text: str, i: int) -> tuple[RawEvent, int, bool]:
    """The event object at `i`: (event, end, kept byte for byte in the canonical shape)."""
    head = _FAST_HEAD.match(text, i)
    if head is not None:
        start = head.end()
        try:  # the C scanner straight away; on any trouble _skip decodes again and words it
            end = _scan_once(text, start)[1]
        except (StopIteration, ValueError, RecursionError):
            end = _skip(text, start)
        tail = _FAST_TAIL.match(text, end)
        if tail is not None:
            data = _data(text, start, end)
            clean = stored_text(data)
            ev = RawEvent(_check_type(int(head.group(1))), _check_timestamp(int(tail.group(1))), clean, None)
            return ev, tail.end(), clean is data
    fields: dict[str, Any] = {}
    spans: dict[str, tuple[int, int]] = {}

    def member(key: str, start: int) -> int:
        if key == "data":
            spans["data"] = (start, _skip(text, start))
            return spans["data"][1]
        fields[key], end = _value(text, start)
        return end

    end = _object(text, i, member)
    typ, ts = _check_type(fields.pop("type", None)), _check_timestamp(fields.pop("timestamp", None))
    if "data" not in spans:
        raise ProtocolError("event.data must be an object")
    data = stored_text(_data(text, *spans["data"]))
    extra = None
    if fields:
        extra = lone_surrogates_replaced(json.dumps(fields, separators=(",", ":"), allow_nan=False))
    return RawEvent(typ, ts, data, extra), end, False


def _events(text: str, i: int, first_seq: object) -> tuple[EventsSpan, int]:
    start = i
    i = _ws(text, _expect(text, i, "[", "an array"))
    events: list[RawEvent] = []
    verbatim = True
    if text.startswith("]", i):
        return EventsSpan(events, None), i + 1
    while True:
        try:
            ev, i, kept = _event(text, i)
        except ProtocolError as exc:  # say which event, so a recorder can drop just that one
            where = (f"seq {first_seq + len(events)}" if isinstance(first_seq, int)
                     else f"event {len(events)}")
            raise ProtocolError(f"{where}: {exc.reason}"[:120], exc.code) from None
        events.append(ev)
        verbatim = verbatim and kept
        c = text[i:i + 1]
        if c in _BLANK:
            i = _ws(text, i)
            c = text[i:i + 1]
        if c == ",":
            i += 1
            if text[i:i + 1] in _BLANK:
                i = _ws(text, i)
        else:
            end = _expect(text, i, "]", "',' or ']'")
            return EventsSpan(events, text[start:end] if verbatim else None), end


def one_event(text: str) -> tuple[int, EventsSpan] | None:
    """(seq, events) of the most common frame, one event in the canonical shape with its data
    kept as it came (as our recorder writes it); else None, and `parse_frame` decodes the frame
    (and words any refusal) as it does any other. The seq is not range-checked here."""
    head = _FAST_ONE.match(text)
    if head is None:
        return None
    start = head.end()
    try:
        end = _scan_once(text, start)[1]
    except (StopIteration, ValueError, RecursionError):
        return None
    tail = _FAST_ONE_END.match(text, end)
    if tail is None or text[start] not in "{[":
        return None
    data = text[start:end]
    typ, ts = int(head.group(2)), int(tail.group(1))
    if stored_text(data) is not data or typ > MAX_EVENT_TYPE or ts >= MAX_TIMESTAMP:
        return None
    return int(head.group(1)), EventsSpan([RawEvent(typ, ts, data, None)],
                                          text[head.start(2) - _ONE_EVENTS_AT:-1])


def parse_frame(text: str | bytes) -> dict[str, Any]:
    """Decode one recorder frame into a dict of its members, refusing anything but strict JSON.

    An `events` member comes back as an EventsSpan (data kept as text); every other member is
    decoded, strings cleaned of lone surrogates. The frame must be an object with a string `type`.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError("frame is not UTF-8") from exc
    one = one_event(text)
    if one is not None:  # one event, as our recorder writes it (most frames)
        return {"type": "events", "seq": one[0], "events": one[1]}
    return parse_other(text)


def parse_other(text: str) -> dict[str, Any]:
    """`parse_frame` for a frame that `one_event` did not take (for a caller that tried it first)."""
    fast = _FAST_FRAME.match(text)
    if fast is not None:  # as our recorder writes it
        span, end = _events(text, fast.end(), int(fast.group(1)))
        if text[end:] == "}":
            return {"type": "events", "seq": int(fast.group(1)), "events": span}
    start = _ws(text, 0)
    if not text.startswith("{", start):
        _value(text, start)  # "not valid JSON" unless it is some other JSON value
        raise ProtocolError("frame must be a JSON object with a string 'type'")
    msg: dict[str, Any] = {}

    def member(key: str, start: int) -> int:
        if key == "events" and text.startswith("[", start):
            msg[key], end = _events(text, start, msg.get("seq"))
        else:
            value, end = _value(text, start)
            msg[key] = clean_str(value) if isinstance(value, str) else value
        return end

    if _ws(text, _object(text, start, member)) != len(text):
        raise ProtocolError("frame is not valid JSON (data after the object)")
    if not isinstance(msg.get("type"), str):
        raise ProtocolError("frame must be a JSON object with a string 'type'")
    return msg
