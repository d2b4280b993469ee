"""Upkeep of the dataset: retention of whole days and compaction of small files.

The policy (`expired_files`, `compaction_groups`) is pure: file lists in, file lists out.
`run` is the one entry point that applies it; `compact` is the job it runs in the flusher process.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from streamdom.archive import layout, queries
from streamdom.archive.catalog import Catalog
from streamdom.archive.layout import DataFile
from streamdom.config import Config

RunJob = Callable[..., Awaitable[object]]

log = logging.getLogger(__name__)

TIER_BASE_BYTES = 1024 * 1024  # files below this are all in tier 0
TARGET_FILE_BYTES = 256 * 1024 * 1024  # files this big are left alone; a merge stops growing here


async def run(catalog: Catalog, config: Config, run_job: RunJob) -> None:
    """One maintenance pass: retention first (less to compact), then compaction.

    `run_job(fn, *args)` runs a job away from the IOLoop (the flusher process); an OSError
    from it means the job failed and the files it read stay as they were.
    """
    expired = expired_files(catalog.files(), config.retention_days)
    if expired:
        catalog.change(remove=expired)
        log.info("retention: removed %d files of days before the last %d",
                 len(expired), config.retention_days)
    for group in compaction_groups(catalog.files(), config.compaction_min_files):
        try:
            merged = await run_job(compact, config.data_dir, group, config.parquet_compression_level)
        except OSError as exc:
            log.error("compaction of %s failed, old files kept: %s", group[0].day, exc)
            continue
        catalog.change(add=[merged], remove=group)  # type: ignore[list-item]


def expired_files(files: tuple[DataFile, ...] | list[DataFile], retention_days: int,
                  today: datetime | None = None) -> list[DataFile]:
    """Files of days older than the retention window (today counts as day 1)."""
    today = today or datetime.now(UTC)
    first_kept = (today - timedelta(days=retention_days - 1)).strftime("%Y-%m-%d")
    return [f for f in files if f.day < first_kept]


def compaction_groups(files: tuple[DataFile, ...] | list[DataFile], min_files: int) -> list[list[DataFile]]:
    """Groups of a day's files of about the same size, `min_files` or more, worth merging.

    Size tiers (each `min_files` times the one below) make this a log-structured merge: a
    merged file joins the next tier up and is merged again only with its peers there, so an
    event is rewritten a few times in all, not once per pass as a merge-everything-small policy
    would do to an ever-growing file.
    """
    tiers: dict[tuple[str, int], list[tuple[DataFile, int]]] = {}
    for f in files:
        try:
            size = f.events.stat().st_size
        except FileNotFoundError:
            continue
        if size < TARGET_FILE_BYTES:
            tiers.setdefault((f.day, _tier(size, min_files)), []).append((f, size))
    groups = []
    for members in tiers.values():
        if len(members) < min_files:
            continue
        group: list[DataFile] = []
        total = 0
        for f, size in members:
            group.append(f)
            total += size
            if total >= TARGET_FILE_BYTES:
                groups.append(group)
                group, total = [], 0
        if len(group) >= 2:
            groups.append(group)
    return groups


def _tier(size: int, min_files: int) -> int:
    tier, limit = 0, TIER_BASE_BYTES
    while size >= limit:
        tier, limit = tier + 1, limit * min_files
    return tier


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

