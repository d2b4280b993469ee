"""The flusher process: one child process for Parquet writes and compaction, off our GIL.

Building Arrow columns from hundreds of thousands of Python objects holds the GIL for most of a
flush; in a thread of the server that stalls the relay (every socket read and write waits to get
the GIL back), so flushes (`flusher.segments_to_parquet`) and merges (`maintenance.compact`) run
here, where the events already are, on disk. Only paths and small dicts cross the boundary.
"""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

PR_SET_PDEATHSIG = 1  # linux/prctl.h


class FlusherProcess:
    """The child process jobs run in; one that died is replaced and its job reported as OSError."""

    def __init__(self, idle: bool) -> None:
        self.idle = idle
        self._pool = make_pool(idle)

    def warm_up(self) -> None:
        """Start the process now (it imports pyarrow), not at the first flush."""
        self._pool.submit(ready)

    async def run(self, fn: Callable[..., object], *args: object) -> object:
        """Run `fn(*args)` in the process."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        except BrokenProcessPool as exc:
            self._pool = make_pool(self.idle)
            raise OSError(f"the flusher process died: {exc}") from exc

    def shutdown(self) -> None:
        """Wait for the running job, then stop the process (blocking: call from a thread)."""
        self._pool.shutdown()


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


