"""`--workers N`: N server processes on one port, each its own cluster node.

Each worker binds the port with SO_REUSEPORT, so the kernel spreads new connections over them
and relay capacity grows with cores. A watcher and its recorder may land on different workers:
they meet through JetStream exactly as if on different machines. The parent only starts the
workers, prints the one 'listening' line once all are up, forwards SIGTERM/SIGINT, and starts a
new worker if one dies. Workers die with the parent (PR_SET_PDEATHSIG), so a kill -9 of the
parent takes the whole node down, as it would a single process.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Coroutine
from typing import Any

from streamdom.config import Config

log = logging.getLogger(__name__)

Serve = Callable[..., Coroutine[Any, Any, None]]
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: a worker outliving a killed parent is the price
        pass


def _start_worker(config: Config, serve: Serve, ready_fd: int) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        _die_with_parent()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        asyncio.run(serve(config, reuse_port=True,
                          ready=lambda port: os.write(ready_fd, f"{port}\n".encode())))
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr, flush=True)
            code = 2
        else:
            code = exc.code or 0
    except BaseException:  # noqa: BLE001 - a worker reports and exits; the parent decides
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run_workers(config: Config, serve: Serve) -> int:
    """Run `config.workers` workers until SIGTERM/SIGINT; return the exit code."""
    reserve = None
    if config.port == 0:  # pick the port once, for all workers (held until they listen)
        reserve = socket.socket()
        reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        reserve.bind((config.host, 0))
        config = config.replace(port=reserve.getsockname()[1])
    read_fd, ready_fd = os.pipe()
    # --archiver: the first worker archives (one archiver per node is enough), the others not
    others = config.replace(archiver=False)
    archiving = _start_worker(config, serve, ready_fd)
    workers = {archiving, *(_start_worker(others, serve, ready_fd)
                            for _ in range(config.workers - 1))}
    ready = 0
    with os.fdopen(read_fd) as lines:
        while ready < config.workers:
            line = lines.readline()
            if not line:
                break
            ready += 1
            if ready == 1:
                os.close(ready_fd)  # EOF once every worker has written (or died)
        if ready < config.workers:
            for pid in workers:
                _signal(pid, signal.SIGTERM)
            for pid in workers:
                os.waitpid(pid, 0)
            return 2
    if reserve is not None:
        reserve.close()
    print(f"StreamDOM listening on http://{config.host}:{config.port} "
          f"({config.workers} workers)", flush=True)
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in workers:
            _signal(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    while workers:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid not in workers:
            continue
        workers.discard(pid)
        exit_code = os.waitstatus_to_exitcode(status)
        code = code or (exit_code if exit_code > 0 else 0)
        if not stopping:
            log.error("worker %d exited (%d); starting another", pid, exit_code)
            time.sleep(0.5)
            devnull = os.open(os.devnull, os.O_WRONLY)  # nobody waits for its 'ready' now
            if pid == archiving:  # its successor archives in its stead
                archiving = _start_worker(config, serve, devnull)
                workers.add(archiving)
            else:
                workers.add(_start_worker(others, serve, devnull))
            os.close(devnull)
    return code


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
