"""What a session's events say about it: who the user is, what went wrong, where they went.

The session index (archive/layout.py) and the live figures of sessions not archived yet
(archive/tail.py) both come from here, one rule for each figure (README, "Session index"):

- `streamdom-identify` / `streamdom-metadata` custom events: user id, traits, metadata (the
  latest value of each key wins);
- `streamdom-error`, `streamdom-console` (level error) → `errors`; console warn → `warnings`;
  `streamdom-network` with status 0 (failed) or ≥ 400 → `network_errors`;
- Meta events: the pages visited (their href); clicks: the clicked element's text, when the
  recorder could send it (`data.text`, masked by its privacy options);
- rage click: a click with at least 2 earlier clicks of the same stream within 1 s before it
  and within 30 px of it; consecutive such clicks are one burst, and `rage_clicks` counts
  bursts;
- dead click: a click followed, within 1 s (recorder clock, same stream), by no change of the
  page: no DOM mutation, input, scroll, media or stylesheet change, and no new page (Meta or
  FullSnapshot), and no next page load in the tab however late (the click navigated). A click is
  decided when its stream shows a change within the second, or an event stamped after it; a
  click whose stream ends first is not counted.

Everything kept is bounded (the ingest endpoint is public): ids, keys, values, URLs and texts
are cut, and only so many keys, URLs and texts are kept per session.
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter

from streamdom.records import ROW_DATA, ROW_SESSION, ROW_STREAM, ROW_TIMESTAMP, ROW_TYPE, Row
from streamdom.rrweb import EventType, IncrementalSource

MAX_USER_ID = 128
MAX_KEYS = 32  # traits, metadata
MAX_KEY = 64
MAX_VALUE = 256
MAX_URLS = 20
MAX_URL = 1024
MAX_TEXTS = 50
MAX_TEXT = 100
MAX_PARSED = 65_536  # custom events bigger than this are not ours: not parsed

RAGE_WINDOW_MS = 1000
RAGE_RADIUS_PX = 30
RAGE_CLICKS = 3
DEAD_WINDOW_MS = 1000
CLICK = 2  # rrweb's MouseInteractions.Click
REACTIONS = frozenset(int(s) for s in (
    IncrementalSource.Mutation, IncrementalSource.Input, IncrementalSource.Scroll,
    IncrementalSource.MediaInteraction, IncrementalSource.StyleSheetRule,
    IncrementalSource.AdoptedStyleSheet, IncrementalSource.StyleDeclaration))
# Plain ints on the per-event path (an enum member lookup costs more than the rest of a row).
_INCREMENTAL, _META, _FULL, _CUSTOM = (int(EventType.IncrementalSnapshot), int(EventType.Meta),
                                       int(EventType.FullSnapshot), int(EventType.Custom))
_MOUSE = int(IncrementalSource.MouseInteraction)
# data.source at the start of an IncrementalSnapshot's data text (JSON.stringify puts it first;
# JSON allows blanks around it). One pattern for the signals here and the archive's `source`
# column (layout.py, by Arrow's RE2): on valid JSON, Python's Unicode \s and \d and RE2's ASCII
# ones match the same.
SOURCE_PATTERN = r'\{\s*"source"\s*:\s*(?P<source>\d{1,9})\b'
_SOURCE = re.compile(SOURCE_PATTERN)
# What nearly every IncrementalSnapshot's data starts with (JSON.stringify: no blanks, a
# one-digit source, then the next key or the end): read by one dict lookup of its first 12
# characters; the pattern reads the rest. Same answers: `\d{1,9}\b` stops at a "," or "}".
_COMPACT = {f'{{"source":{d}{end}': d for d in range(10) for end in ",}"}
_INTERACTION = re.compile(r'\{\s*"source"\s*:\s*2\s*,\s*"type"\s*:\s*(\d{1,9})\b')


def _cut(value: object, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))[:limit]
    return text[:limit]


def clean_fields(raw: object) -> dict[str, str]:
    """Traits or metadata as kept: at most MAX_KEYS string keys, values as (cut) strings."""
    if not isinstance(raw, dict):
        return {}
    out: dict[str, str] = {}
    for k, v in raw.items():
        if len(out) >= MAX_KEYS:
            break
        if v is None:
            continue
        out[str(k)[:MAX_KEY]] = _cut(v, MAX_VALUE)
    return out


@dataclass(slots=True)
class Signals:
    """A stretch of a session's events, summed up (see the module's rules)."""

    user_id: str | None = None
    traits: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    urls: list[str] = field(default_factory=list)  # pages visited, first visit order, unique
    clicked: list[str] = field(default_factory=list)  # clicked texts, unique
    errors: int = 0
    warnings: int = 0
    network_errors: int = 0
    rage_clicks: int = 0
    dead_clicks: int = 0

    def add(self, other: Signals) -> None:
        """Fold a later stretch in: its user id and keys win, lists and counts add up."""
        if other.user_id is not None:
            self.user_id = other.user_id
        _merge(self.traits, other.traits)
        _merge(self.metadata, other.metadata)
        _extend(self.urls, other.urls, MAX_URLS)
        _extend(self.clicked, other.clicked, MAX_TEXTS)
        self.errors += other.errors
        self.warnings += other.warnings
        self.network_errors += other.network_errors
        self.rage_clicks += other.rage_clicks
        self.dead_clicks += other.dead_clicks



def _merge(into: dict[str, str], more: dict[str, str]) -> None:
    for k, v in more.items():
        if k in into or len(into) < MAX_KEYS:
            into[k] = v


def _extend(into: list[str], more: Iterable[str], limit: int) -> None:
    for x in more:
        if len(into) >= limit:
            return
        if x not in into:
            into.append(x)


@dataclass(slots=True)
class _Stream:
    """What a stream's next events need from its earlier ones."""

    clicks: list[tuple[int, float, float]] = field(default_factory=list)  # (ts, x, y), last 1 s
    in_burst: bool = False
    undecided: list[int] = field(default_factory=list)  # timestamps of clicks awaiting a change


class SignalTracker:
    """Reads each stream's events in order and says what each one adds (`Signals` or None).

    Rage and dead clicks need the events before and after a click, which may arrive in another
    batch: the tracker keeps that little per stream (`max_streams` of them, least recently seen
    forgotten first). Its owner feeds it every row of a stream, in seq order, exactly once.
    """

    def __init__(self, max_streams: int = 20_000) -> None:
        self._streams: OrderedDict[tuple[str, str], _Stream] = OrderedDict()
        self._max = max_streams

    def _state(self, session_id: str, stream_id: str) -> _Stream:
        key = (session_id, stream_id)
        st = self._streams.get(key)
        if st is None:
            st = self._streams[key] = _Stream()
            if len(self._streams) > self._max:
                self._streams.popitem(last=False)
        else:
            self._streams.move_to_end(key)
        return st

    def fork(self, keys: Iterable[tuple[str, str]]) -> SignalTracker:
        """A tracker holding a copy of these streams' state (to feed rows that may be rolled back)."""
        out = SignalTracker(self._max)
        for key in keys:
            st = self._streams.get(key)
            if st is not None:
                out._streams[key] = _Stream(list(st.clicks), st.in_burst, list(st.undecided))
        return out

    def absorb(self, fork: SignalTracker) -> None:
        """Take a fork's state of its streams (its rows were committed)."""
        for key, st in fork._streams.items():
            self._streams[key] = st
            self._streams.move_to_end(key)
        while len(self._streams) > self._max:
            self._streams.popitem(last=False)

    def forget(self, session_id: str, stream_id: str) -> None:
        """The stream ended: its undecided clicks stay uncounted."""
        self._streams.pop((session_id, stream_id), None)

    def feed(self, session_id: str, row: Row) -> Signals | None:
        """What this row (the next of its stream) adds, or None (most rows)."""
        found = self.feed_rows(session_id, (row,))
        return found[0][1] if found else None

    def feed_rows(self, session_id: str, rows: Sequence[Row]) -> list[tuple[int, Signals]]:
        """`feed` for many rows of a session (each the next of its stream), in one loop:
        (index in `rows`, what it adds) of the few rows that add anything."""
        out = []
        streams = self._streams
        for i, row in enumerate(rows):
            rec_type = row[ROW_TYPE]
            source = None
            if rec_type == _INCREMENTAL:
                data = row[ROW_DATA]
                source = _COMPACT.get(data[:12])
                if source is None:
                    m = _SOURCE.match(data)
                    source = int(m.group(1)) if m else None
                if source != _MOUSE:  # nearly every row: it can only decide earlier clicks
                    if not streams:
                        continue
                    st = streams.get((session_id, row[ROW_STREAM]))
                    if st is None or not st.undecided:
                        continue
            found = self._signals_of(session_id, row, rec_type, source)
            if found is not None:
                out.append((i, found))
        return out

    def _signals_of(self, session_id: str, row: Row, rec_type: int, source: int | None) -> Signals | None:
        out: Signals | None = None
        if self._streams:
            st = self._streams.get((session_id, row[ROW_STREAM]))
            if st is not None and st.undecided:
                out = self._decide(st, rec_type, source, row[ROW_TIMESTAMP])
        if source == _MOUSE:
            out = _join(out, self._click(session_id, row, row[ROW_TIMESTAMP]))
        elif rec_type == _CUSTOM:
            out = _join(out, _custom(row[ROW_DATA]))
        elif rec_type == _META:
            href = _parse(row[ROW_DATA]).get("href")
            if isinstance(href, str) and href:
                out = _join(out, Signals(urls=[href[:MAX_URL]]))
        return out

    @staticmethod
    def _decide(st: _Stream, rec_type: int, source: int | None, ts: int) -> Signals | None:
        """The stream's clicks that this event decides: a change within a click's second saves
        it, an event after its second kills it, the tab's next page load saves them all."""
        if rec_type == _META:
            st.undecided = []  # the clicks led to the next page, however slowly it came
            return None
        reacted = rec_type == _FULL or source in REACTIONS
        dead = 0
        keep = []
        for t in st.undecided:
            if ts > t + DEAD_WINDOW_MS:
                dead += 1
            elif not (reacted and ts >= t):
                keep.append(t)
        st.undecided = keep
        return Signals(dead_clicks=dead) if dead else None

    def _click(self, session_id: str, row: Row, ts: int) -> Signals | None:
        m = _INTERACTION.match(row[ROW_DATA])
        if m and int(m.group(1)) != CLICK:
            return None  # mouse down, up, focus...: not parsed
        data = _parse(row[ROW_DATA])
        if data.get("type") != CLICK:
            return None
        st = self._state(session_id, row[ROW_STREAM])
        rage = 0
        x, y = data.get("x"), data.get("y")
        if _number(x) and _number(y):
            recent = [c for c in st.clicks if ts - c[0] <= RAGE_WINDOW_MS]
            near = sum(1 for c in recent if math.hypot(c[1] - x, c[2] - y) <= RAGE_RADIUS_PX)  # type: ignore[operator]
            if near + 1 >= RAGE_CLICKS:
                rage = 0 if st.in_burst else 1
                st.in_burst = True
            else:
                st.in_burst = False
            recent.append((ts, float(x), float(y)))  # type: ignore[arg-type]
            st.clicks = recent[-8:]
        st.undecided.append(ts)
        del st.undecided[:-64]  # a flood of clicks with no later event: keep the last ones
        text = data.get("text")
        clicked = [" ".join(text.split())[:MAX_TEXT]] if isinstance(text, str) and text.strip() else None
        if not rage and not clicked:
            return None
        return Signals(rage_clicks=rage, clicked=clicked or [])


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _join(a: Signals | None, b: Signals | None) -> Signals | None:
    if a is None:
        return b
    if b is not None:
        a.add(b)
    return a


def _parse(data: str) -> dict[str, object]:
    if len(data) > MAX_PARSED:
        return {}
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _custom(data: str) -> Signals | None:
    if '"streamdom-' not in data[:40]:
        return None  # another tool's custom event
    ev = _parse(data)
    tag, payload = ev.get("tag"), ev.get("payload")
    if not isinstance(payload, dict):
        return None
    if tag == "streamdom-error":
        return Signals(errors=1)
    if tag == "streamdom-console":
        level = payload.get("level")
        return Signals(errors=1) if level == "error" else Signals(warnings=1) if level == "warn" else None
    if tag == "streamdom-network":
        status = payload.get("status")
        failed = isinstance(status, int | float) and (status == 0 or status >= 400)
        return Signals(network_errors=1) if failed else None
    if tag == "streamdom-identify":
        user = payload.get("userId")
        if not isinstance(user, str | int | float) or isinstance(user, bool):
            return None
        return Signals(user_id=str(user)[:MAX_USER_ID], traits=clean_fields(payload.get("traits")))
    if tag == "streamdom-metadata":
        return Signals(metadata=clean_fields(payload.get("fields")))
    return None


def by_stream(rows: Iterable[Row], tracker: SignalTracker) -> dict[tuple[str, str], Signals]:
    """What rows add, per (session, stream); each stream's rows must come in seq order."""
    out: dict[tuple[str, str], Signals] = {}
    for sid, run in groupby(rows, itemgetter(ROW_SESSION)):
        session_rows = list(run)
        for i, found in tracker.feed_rows(sid, session_rows):
            key = (sid, session_rows[i][ROW_STREAM])
            if key in out:
                out[key].add(found)
            else:
                out[key] = found
    return out
