"""Background upkeep of the dataset: compaction of small files and retention of whole days."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from streamdom import layout, queries
from streamdom.layout import DataFile

if TYPE_CHECKING:
    from streamdom.storage import Storage

log = logging.getLogger(__name__)

SMALL_FILE_BYTES = 32 * 1024 * 1024  # files below this are merged
TARGET_FILE_BYTES = 256 * 1024 * 1024  # a merge stops growing at about this much input


async def run(storage: Storage) -> None:
    """One maintenance pass: retention first (less to compact), then compaction."""
    expired = expired_files(storage.catalog.files(), storage.config.retention_days)
    if expired:
        storage.catalog.change(remove=expired)
        log.info("retention: removed %d files of days before the last %d",
                 len(expired), storage.config.retention_days)
    for group in compaction_groups(storage.catalog.files(), storage.config.compaction_min_files):
        try:
            merged = await storage.in_flusher(compact, storage.data_dir, group,
                                              storage.config.parquet_compression_level)
        except OSError as exc:
            log.error("compaction of %s failed, old files kept: %s", group[0].day, exc)
            continue
        storage.catalog.change(add=[merged], remove=group)  # type: ignore[list-item]


def expired_files(files: tuple[DataFile, ...] | list[DataFile], retention_days: int,
                  today: datetime | None = None) -> list[DataFile]:
    """Files of days older than the retention window (today counts as day 1)."""
    today = today or datetime.now(UTC)
    first_kept = (today - timedelta(days=retention_days - 1)).strftime("%Y-%m-%d")
    return [f for f in files if f.day < first_kept]


def compaction_groups(files: tuple[DataFile, ...] | list[DataFile], min_files: int) -> list[list[DataFile]]:
    """Groups of small files, per day, worth merging into one file each."""
    by_day: dict[str, list[DataFile]] = {}
    for f in files:
        try:
            size = f.events.stat().st_size
        except FileNotFoundError:
            continue
        if size < SMALL_FILE_BYTES:
            by_day.setdefault(f.day, []).append(f)
    groups = []
    for day_files in by_day.values():
        if len(day_files) < min_files:
            continue
        group: list[DataFile] = []
        total = 0
        for f in day_files:
            group.append(f)
            total += f.events.stat().st_size
            if total >= TARGET_FILE_BYTES:
                groups.append(group)
                group, total = [], 0
        if len(group) >= 2:
            groups.append(group)
    return groups


def compact(data_dir: Path, group: list[DataFile], level: int) -> DataFile:
    """Merge one day's files into one pair, sorted by session and time, written atomically."""
    day = group[0].day
    name = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-c{uuid.uuid4().hex[:8]}.parquet"
    con = queries.cursor()
    out = layout.DataFile(day, layout.events_dir(data_dir, day) / name,
                          layout.index_dir(data_dir, day) / name)
    ev_tmp = out.events.with_name("." + name + ".tmp")
    ix_tmp = out.index.with_name("." + name + ".tmp")
    opts = f"FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL {int(level)}, ROW_GROUP_SIZE 65536"
    try:
        con.execute(
            f"COPY (SELECT * FROM read_parquet(?) ORDER BY {', '.join(layout.SORT_KEY)}) "
            f"TO '{_sql_path(ev_tmp)}' ({opts})", [[str(f.events) for f in group]])
        con.execute(
            f"""COPY (SELECT session_id, stream_id, min(first_server_time) AS first_server_time,
                   max(last_server_time) AS last_server_time, min(first_timestamp) AS first_timestamp,
                   max(last_timestamp) AS last_timestamp, sum(event_count)::BIGINT AS event_count,
                   sum(bytes)::BIGINT AS bytes, min(min_seq) AS min_seq, max(max_seq) AS max_seq,
                   arg_min(url, first_server_time) AS url,
                   arg_min(user_agent, first_server_time) AS user_agent
                FROM read_parquet(?) GROUP BY session_id, stream_id ORDER BY session_id)
               TO '{_sql_path(ix_tmp)}' ({opts})""", [[str(f.index) for f in group]])
        for tmp, final in ((ev_tmp, out.events), (ix_tmp, out.index)):
            layout.fsync_file(tmp)
            tmp.replace(final)
            layout.fsync_dir(final.parent)
    except BaseException:
        for tmp in (ev_tmp, ix_tmp):
            tmp.unlink(missing_ok=True)
        raise
    return out


def _sql_path(p: Path) -> str:
    return str(p).replace("'", "''")

