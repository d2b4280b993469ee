"""The archive's rows: the Parquet schemas of `events` and `sessions` (a public interface; see
README) and how record rows become Arrow tables of them. Where the files go is DuckLake's
business (lake.py): `<data path>/main/<table>/day=YYYY-MM-DD/ducklake-<uuid>.parquet`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from streamdom.records import ROW_SEQ, ROW_SERVER_TIME, ROW_SESSION, ROW_STREAM, Row
from streamdom.rrweb import EventType

EVENTS_SCHEMA = pa.schema([
    pa.field("session_id", pa.string(), nullable=False),
    pa.field("stream_id", pa.string(), nullable=False),
    pa.field("seq", pa.int64(), nullable=False),
    pa.field("type", pa.int8(), nullable=False),
    pa.field("source", pa.int16()),
    pa.field("timestamp", pa.int64(), nullable=False),
    pa.field("server_time", pa.int64(), nullable=False),
    pa.field("data", pa.string(), nullable=False),
    pa.field("extra", pa.string()),
])

INDEX_SCHEMA = pa.schema([
    pa.field("session_id", pa.string(), nullable=False),
    pa.field("stream_id", pa.string(), nullable=False),
    pa.field("first_server_time", pa.int64(), nullable=False),
    pa.field("last_server_time", pa.int64(), nullable=False),
    pa.field("first_timestamp", pa.int64(), nullable=False),
    pa.field("last_timestamp", pa.int64(), nullable=False),
    pa.field("event_count", pa.int64(), nullable=False),
    pa.field("bytes", pa.int64(), nullable=False),
    pa.field("min_seq", pa.int64(), nullable=False),
    pa.field("max_seq", pa.int64(), nullable=False),
    pa.field("url", pa.string()),
    pa.field("user_agent", pa.string()),
])

SORT_KEY = ("session_id", "server_time", "stream_id", "seq")


def day_of(ms: int) -> str:
    """UTC day (YYYY-MM-DD) of a server timestamp in ms."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


_SOURCE = re.compile(r'\{\s*"source"\s*:\s*(\d{1,9})\b')


def _source(rec_type: int, data: str) -> int | None:
    # IncrementalSnapshot (3) events carry data.source; keep it as a column so analysts and
    # DuckDB can filter clicks or mutations without parsing JSON. `data` is the text the
    # recorder sent (JSON.stringify puts `source` first; other writers may add whitespace).
    if rec_type != EventType.IncrementalSnapshot:
        return None
    m = _SOURCE.match(data)
    return int(m.group(1)) if m else None


def records_table(rows: list[Row]) -> pa.Table:
    """An events table (schema EVENTS_SCHEMA) from record rows, sorted by SORT_KEY."""
    rows = sorted(rows, key=lambda r: (r[ROW_SESSION], r[ROW_SERVER_TIME], r[ROW_STREAM], r[ROW_SEQ]))
    sids, streams, seqs, types, tss, sts, datas, extras = zip(*rows, strict=True) if rows else ([],) * 8
    return pa.table({
        "session_id": sids, "stream_id": streams, "seq": seqs, "type": types,
        "source": [_source(t, d) for t, d in zip(types, datas, strict=True)],
        "timestamp": tss, "server_time": sts, "data": datas, "extra": extras,
    }, schema=EVENTS_SCHEMA)


def index_table(events: pa.Table, stream_info: dict[tuple[str, str], tuple[str, str]]) -> pa.Table:
    """The per-(session, stream) index rows of an events table."""
    keys = ["session_id", "stream_id"]
    agg = events.append_column("nbytes", pc.binary_length(events["data"])).group_by(
        keys, use_threads=False).aggregate([
            ("server_time", "min"), ("server_time", "max"), ("timestamp", "min"),
            ("timestamp", "max"), ("seq", "count"), ("nbytes", "sum"), ("seq", "min"), ("seq", "max"),
        ])
    # Page URL: the hello's, else the first Meta event's href (recovered records have no hello).
    hrefs: dict[tuple[str, str], str] = {}
    metas = events.filter(pc.equal(events["type"], int(EventType.Meta))).select(["session_id", "stream_id", "data"])
    for sid, stream, data in zip(*(metas[c].to_pylist() for c in metas.column_names), strict=True):
        if (sid, stream) not in hrefs:
            try:
                hrefs[(sid, stream)] = json.loads(data).get("href") or ""
            except (ValueError, AttributeError):
                pass
    sids, streams = agg["session_id"].to_pylist(), agg["stream_id"].to_pylist()
    urls, uas = [], []
    for key in zip(sids, streams, strict=True):
        url, ua = stream_info.get(key, ("", ""))
        urls.append(url or hrefs.get(key) or None)
        uas.append(ua or None)
    return pa.table({
        "session_id": sids, "stream_id": streams,
        "first_server_time": agg["server_time_min"], "last_server_time": agg["server_time_max"],
        "first_timestamp": agg["timestamp_min"], "last_timestamp": agg["timestamp_max"],
        "event_count": agg["seq_count"], "bytes": agg["nbytes_sum"],
        "min_seq": agg["seq_min"], "max_seq": agg["seq_max"], "url": urls, "user_agent": uas,
    }, schema=INDEX_SCHEMA)


def split_by_day(rows: Iterable[Row]) -> dict[str, list[Row]]:
    """Group record rows by the UTC day of their server time."""
    out: dict[str, list[Row]] = {}
    for r in rows:
        out.setdefault(day_of(r[ROW_SERVER_TIME]), []).append(r)
    return out


