"""WAL segments to Parquet, in a child process: the IOLoop's process keeps its GIL while it runs.

Building Arrow columns from hundreds of thousands of Python objects holds the GIL for most of a
flush; in a thread of the server that stalls the relay (every socket read and write waits to get
the GIL back), so the work runs where the events already are, on disk, in another process. Only
paths and the per-stream page URL and user agent cross the process boundary.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from streamdom import layout
from streamdom.layout import DataFile
from streamdom.protocol import EventRecord
from streamdom.wal import read_segments

PR_SET_PDEATHSIG = 1  # linux/prctl.h
StreamInfo = dict[tuple[str, str], tuple[str, str]]


def make_pool() -> ProcessPoolExecutor:
    """One worker process, started fresh (spawn: the server has threads, so no fork)."""
    return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(os.getpid(),))


def _init_worker(parent: int) -> None:
    # Ctrl-C reaches the whole process group; the server itself decides when its flusher stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Flushes can wait; the IOLoop relaying live events should get a core first when both want one.
    os.nice(10)
    # If the server is killed (kill -9), die with it, at once: a flush finishing after a new
    # server has recovered the same WAL would archive those events twice.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: poll for the parent instead
        threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.1)
    os._exit(1)


def ready() -> bool:
    """Nothing: called once so the worker starts (and imports pyarrow) before the first flush."""
    return True


def segments_to_parquet(data_dir: Path, segments: list[Path], stream_info: StreamInfo, level: int,
                        high: dict[tuple[str, str], int] | None = None) -> tuple[list[DataFile], int]:
    """Write the records of WAL segments to Parquet, each (session, stream, seq) once.

    Records at or below `high` for their stream are already archived and skipped. Returns the
    files written and how many records they hold.
    """
    records = unique_records(read_segments(segments), high or {})
    return write_records(data_dir, records, stream_info, level), len(records)


def unique_records(rows: list[tuple], high: dict[tuple[str, str], int]) -> list[EventRecord]:
    """Records from WAL rows, each (session, stream, seq) once and none at or below `high`."""
    seen: set[tuple[str, str, int]] = set()
    records = []
    for sid, stream, seq, typ, ts, st, data, extra in rows:
        if seq <= high.get((sid, stream), 0) or (sid, stream, seq) in seen:
            continue  # archived before a crash, or logged twice
        seen.add((sid, stream, seq))
        # No watch frame: these records go to Parquet only, never to viewers.
        records.append(EventRecord(sid, stream, seq, typ, ts, st, data, extra, b""))
    return records


def write_records(data_dir: Path, records: list[EventRecord], stream_info: StreamInfo,
                  level: int) -> list[DataFile]:
    """Write records as one events + index pair per UTC day; on failure none of them stays."""
    out: list[DataFile] = []
    try:
        for day, recs in layout.split_by_day(records).items():
            events = layout.records_table(recs)
            index = layout.index_table(events, stream_info)
            out.append(layout.write_pair(data_dir, day, events, index, level))
    except BaseException:
        # A retry writes every record again: a pair left from this attempt would duplicate it.
        for f in out:
            f.index.unlink(missing_ok=True)
            f.events.unlink(missing_ok=True)
        raise
    return out
