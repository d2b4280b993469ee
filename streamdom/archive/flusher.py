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

from streamdom.archive import layout
from streamdom.archive.layout import DataFile
from streamdom.archive.wal import read_segments
from streamdom.records import ROW_SEQ, ROW_SESSION, ROW_STREAM, Row

PR_SET_PDEATHSIG = 1  # linux/prctl.h
StreamInfo = dict[tuple[str, str], tuple[str, str]]


def make_pool(idle: bool) -> ProcessPoolExecutor:
    """One worker process, started fresh (spawn: the server has threads, so no fork).

    With `idle` it runs only on CPU time nothing else wants (SCHED_IDLE), else at nice 10.
    The worker starts at the pool's first submit, from the submitting thread: the IOLoop's,
    which lives as long as the server (PR_SET_PDEATHSIG follows the creating thread).
    """
    return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(os.getpid(), idle))


def _init_worker(parent: int, idle: bool) -> None:
    # Ctrl-C reaches the whole process group; the server itself decides when its flusher stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Flushes can wait (events are in the WAL and in memory); the relay cannot. At nice 10 a
    # flush still took CPU slices from the IOLoop on a busy 2-core machine (relay p99 within a
    # second of a flush 60-190 ms vs 20-30 elsewhere); at SCHED_IDLE it did not (p99 ~33 ms).
    os.nice(10)
    if idle and hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
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


def segments_to_parquet(data_dir: Path, segments: list[Path], stream_info: StreamInfo,
                        level: int) -> tuple[list[DataFile], int]:
    """Write the records of WAL segments to Parquet, each (session, stream, seq) once.

    Returns the files written and how many records they hold.
    """
    rows = unique_rows(read_segments(segments), {})
    return write_rows(data_dir, rows, stream_info, level), len(rows)


def unique_rows(rows: list[Row], high: dict[tuple[str, str], int]) -> list[Row]:
    """WAL rows, each (session, stream, seq) once and none at or below `high` for its stream."""
    seen: set[tuple[str, str, int]] = set()
    out = []
    for row in rows:
        key = (row[ROW_SESSION], row[ROW_STREAM], row[ROW_SEQ])
        if row[ROW_SEQ] <= high.get(key[:2], 0) or key in seen:
            continue  # archived before a crash, or logged twice
        seen.add(key)
        out.append(row)
    return out


def write_rows(data_dir: Path, rows: list[Row], stream_info: StreamInfo, level: int) -> list[DataFile]:
    """Write record rows as one events + index pair per UTC day; on failure none of them stays."""
    out: list[DataFile] = []
    try:
        for day, day_rows in layout.split_by_day(rows).items():
            events = layout.records_table(day_rows)
            index = layout.index_table(events, stream_info)
            out.append(layout.write_pair(data_dir, day, events, index, level))
    except BaseException:
        # A retry writes every record again: a pair left from this attempt would duplicate it.
        for f in out:
            f.index.unlink(missing_ok=True)
            f.events.unlink(missing_ok=True)
        raise
    return out
