"""The on-disk dataset: Parquet schemas, paths and atomic writes (a public interface; see README).

    <data-dir>/events/day=YYYY-MM-DD/<name>.parquet    one row per rrweb event
    <data-dir>/sessions/day=YYYY-MM-DD/<name>.parquet  one row per (session, stream) per events file

Every events file has an index file of the same name; writers create both under temporary names
and rename them into place (index last), so readers never see half a file.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

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


@dataclass(frozen=True, slots=True)
class DataFile:
    """One events file and its index file, for one UTC day."""

    day: str
    events: Path
    index: Path


def day_of(ms: int) -> str:
    """UTC day (YYYY-MM-DD) of a server timestamp in ms."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def events_dir(data_dir: Path, day: str) -> Path:
    """Directory of one day's events files."""
    return data_dir / "events" / f"day={day}"


def index_dir(data_dir: Path, day: str) -> Path:
    """Directory of one day's index files."""
    return data_dir / "sessions" / f"day={day}"


def scan(data_dir: Path) -> list[DataFile]:
    """Every complete (events + index) file pair on disk, oldest day first."""
    out: list[DataFile] = []
    root = data_dir / "events"
    if not root.is_dir():
        return out
    for ddir in sorted(root.glob("day=*")):
        day = ddir.name[4:]
        for ev in sorted(ddir.glob("*.parquet")):
            ix = index_dir(data_dir, day) / ev.name
            if ix.exists():
                out.append(DataFile(day, ev, ix))
    return out


def remove_leftovers(data_dir: Path) -> list[Path]:
    """Delete what a crash mid-write left: temp files, and events files whose index never came.

    Only at start-up, with no writer running. An events file without its index holds events
    that are elsewhere too: in the WAL (segments go only after a flush's pairs are complete),
    which recovery writes again, or in the files a merge was reading, which stay until the
    merge completes. Left in place it would show them twice to anyone globbing the directory.
    """
    complete = {f.events for f in scan(data_dir)}
    gone = [ev for ev in (data_dir / "events").glob("day=*/*.parquet") if ev not in complete]
    for top in ("events", "sessions"):
        gone += (data_dir / top).glob("day=*/.*.tmp")
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


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


def write_pair(data_dir: Path, day: str, events: pa.Table, index: pa.Table, level: int,
               name: str | None = None) -> DataFile:
    """Write one events file and its index atomically (temp name, fsync, rename; index last)."""
    name = name or f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}.parquet"
    ev_path = events_dir(data_dir, day) / name
    ix_path = index_dir(data_dir, day) / name
    for table, path, rg in ((events, ev_path, 64 * 1024), (index, ix_path, 1 << 20)):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("." + path.name + ".tmp")
        pq.write_table(table, tmp, compression="zstd", compression_level=level,
                       row_group_size=rg, use_dictionary=["session_id", "stream_id"],
                       write_statistics=True)
        fsync_file(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    return DataFile(day, ev_path, ix_path)


def split_by_day(rows: Iterable[Row]) -> dict[str, list[Row]]:
    """Group record rows by the UTC day of their server time."""
    out: dict[str, list[Row]] = {}
    for r in rows:
        out.setdefault(day_of(r[ROW_SERVER_TIME]), []).append(r)
    return out


def fsync_file(path: Path) -> None:
    """Flush a file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (a rename) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
