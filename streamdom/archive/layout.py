"""The archive's rows: the Parquet schemas of `events` and `sessions` (a public interface; see
README) and how record rows become Arrow tables of them. Where the files go is DuckLake's
business (lake.py): `<data path>/main/<table>/day=YYYY-MM-DD/ducklake-<uuid>.parquet`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from streamdom.records import Row
from streamdom.rrweb import EventType
from streamdom.signals import SOURCE_PATTERN, Signals
from streamdom.useragent import browser_of, os_of

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

# Record rows (records.Row's fields, in its order) as an Arrow table: what the flusher reads
# from the log and what commits are given, before the `source` column and the sort.
ROWS_SCHEMA = pa.schema([EVENTS_SCHEMA.field(name) for name in (
    "session_id", "stream_id", "seq", "type", "timestamp", "server_time", "data", "extra")])

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
    # Derived from the events (streamdom/signals.py, README "Session index"); NULL in rows
    # written before they existed. Per row: what that row's events said.
    pa.field("browser", pa.string()),
    pa.field("os", pa.string()),
    pa.field("user_id", pa.string()),
    pa.field("traits", pa.string()),  # JSON object of strings
    pa.field("metadata", pa.string()),  # JSON object of strings
    pa.field("urls", pa.list_(pa.string())),
    pa.field("clicked", pa.list_(pa.string())),
    pa.field("errors", pa.int32()),
    pa.field("warnings", pa.int32()),
    pa.field("network_errors", pa.int32()),
    pa.field("rage_clicks", pa.int32()),
    pa.field("dead_clicks", pa.int32()),
])
SIGNAL_COLUMNS = ("user_id", "traits", "metadata", "urls", "clicked", "errors", "warnings",
                  "network_errors", "rage_clicks", "dead_clicks")

SORT_KEY = ("session_id", "server_time", "stream_id", "seq")


DAY_MS = 86_400_000  # a UTC day in ms (UTC has no leap seconds in epoch time)


def day_of(ms: int) -> str:
    """UTC day (YYYY-MM-DD) of a server timestamp in ms."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


_SOURCE = "^" + SOURCE_PATTERN  # data.source, read as signals.py reads it (match: anchored)
_SOURCE_MAX = 2**15 - 1  # the column is a SMALLINT: a larger data.source is no rrweb source


def rows_table(rows: Sequence[Row]) -> pa.Table:
    """Record rows as a table of ROWS_SCHEMA."""
    columns = zip(*rows, strict=True) if rows else ([],) * len(ROWS_SCHEMA)
    return pa.table(dict(zip(ROWS_SCHEMA.names, columns, strict=True)), schema=ROWS_SCHEMA)


def records_table(rows: pa.Table) -> pa.Table:
    """An events table (schema EVENTS_SCHEMA) from a table of record rows, sorted by SORT_KEY.

    IncrementalSnapshot (3) events carry data.source; it is kept as a column so analysts and
    DuckDB can filter clicks or mutations without parsing JSON (found by Arrow's regex, in C).
    """
    found = pc.struct_field(pc.extract_regex(rows["data"], _SOURCE), [0])
    source = pc.cast(found, pa.int64())
    keep = pc.and_(pc.equal(rows["type"], int(EventType.IncrementalSnapshot)),
                   pc.less_equal(source, _SOURCE_MAX))
    source = pc.cast(pc.if_else(keep, source, pa.scalar(None, pa.int64())), pa.int16())
    table = pa.table([rows[name] if name != "source" else source for name in EVENTS_SCHEMA.names],
                     schema=EVENTS_SCHEMA)
    # Arrow's sort, not Python's with a key per row (half of this function's time): the key is
    # unique per event (a stream's seqs are), so the order is the same.
    return table.sort_by([(k, "ascending") for k in SORT_KEY])


def table_rows(table: pa.Table) -> list[Row]:
    """A table's record rows (its ROWS_SCHEMA columns) as Rows."""
    return list(zip(*(table[name].to_pylist() for name in ROWS_SCHEMA.names), strict=True))


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
                href = json.loads(data).get("href")
            except (ValueError, AttributeError, RecursionError):  # (ingest accepts any depth)
                continue
            # A recorder is a stranger: an href that is no string is no page URL (it made the
            # url column, hence the whole commit, fail: no flush archived anything any more).
            hrefs[(sid, stream)] = href if isinstance(href, str) else ""
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
        "browser": [browser_of(ua) if ua else None for ua in uas],
        "os": [os_of(ua) if ua else None for ua in uas],
        **{c: [None] * len(sids) for c in SIGNAL_COLUMNS},
    }, schema=INDEX_SCHEMA)


def signal_values(sig: Signals | None) -> dict[str, object]:
    """The index's signal columns of one row (see INDEX_SCHEMA)."""
    if sig is None:
        return {"user_id": None, "traits": None, "metadata": None, "urls": None, "clicked": None,
                "errors": 0, "warnings": 0, "network_errors": 0, "rage_clicks": 0, "dead_clicks": 0}
    return {
        "user_id": sig.user_id,
        "traits": json.dumps(sig.traits, ensure_ascii=False) if sig.traits else None,
        "metadata": json.dumps(sig.metadata, ensure_ascii=False) if sig.metadata else None,
        "urls": sig.urls or None, "clicked": sig.clicked or None,
        "errors": sig.errors, "warnings": sig.warnings, "network_errors": sig.network_errors,
        "rage_clicks": sig.rage_clicks, "dead_clicks": sig.dead_clicks,
    }


def with_signals(index: pa.Table, signals: dict[tuple[str, str], Signals]) -> pa.Table:
    """Index rows with their signal columns: each stream's signals on its first row here, zero
    counts on the others (so that sums over a session's rows are its figures)."""
    cols: dict[str, list[object]] = {c: [] for c in SIGNAL_COLUMNS}
    seen: set[tuple[str, str]] = set()
    for key in zip(index["session_id"].to_pylist(), index["stream_id"].to_pylist(), strict=True):
        first = key not in seen
        seen.add(key)
        for c, v in signal_values(signals.get(key) if first else None).items():
            cols[c].append(v)
    for c in SIGNAL_COLUMNS:
        index = index.set_column(index.schema.get_field_index(c), INDEX_SCHEMA.field(c),
                                 pa.array(cols[c], INDEX_SCHEMA.field(c).type))
    return index


def split_by_day(rows: pa.Table) -> dict[str, pa.Table]:
    """Group a table's rows by the UTC day of their server time (days in order of first row)."""
    days = pc.divide(rows["server_time"], DAY_MS)  # integer division (server times are > 0)
    distinct = pc.unique(days).to_pylist()
    if len(distinct) == 1:  # nearly always: no filter
        return {day_of(distinct[0] * DAY_MS): rows}
    return {day_of(day * DAY_MS): rows.filter(pc.equal(days, day)) for day in distinct}


