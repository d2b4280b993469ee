"""pytest plugin for benchmarks/suite.py: the CPU each test costs, its whole process tree counted.

Loaded with `-p suite_cpu` (suite.py puts this folder on the child's PYTHONPATH, so a baseline
checkout's tests take the same plugin). Every test's CPU is what the worker and everything it
started (servers, their flushers, Chromium, Playwright's driver) spent between the test's start
and end: a test leaves nothing running behind it, and session services (NATS, SeaweedFS,
PostgreSQL, the browser) count toward the test that started them. A process killed with kill -9
takes its unreaped children's time with it, so a kill test may count a little short, and a
worker's last test comes out negative when the session's services (the browser, NATS) end in its
teardown without being reaped inside the tree. Each worker writes its rows to
`$SUITE_CPU_DIR/<worker>.json`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CLK_TCK = os.sysconf("SC_CLK_TCK")


def processes(with_children: bool = True) -> tuple[dict[int, float], dict[int, list[int]]]:
    """Every process's CPU seconds so far (user + system; `with_children`: plus its reaped
    children's), and each process's children."""
    cpu: dict[int, float] = {}
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:  # exited meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after the command name, which may hold spaces
        pid = int(entry.name)
        cpu[pid] = sum(int(x) for x in fields[11:15 if with_children else 13]) / CLK_TCK
        children.setdefault(int(fields[1]), []).append(pid)
    return cpu, children


def descendants(root: int, children: dict[int, list[int]]) -> list[int]:
    """`root` and every process below it."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def tree_cpu(root: int) -> float:
    """CPU seconds of `root` and its descendants, with their reaped children."""
    cpu, children = processes()
    return sum(cpu.get(pid, 0.0) for pid in descendants(root, children))


_rows: list[dict[str, object]] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Measure one test: setup, call and teardown."""
    cpu, wall = tree_cpu(os.getpid()), time.monotonic()
    yield
    _rows.append({"id": item.nodeid, "cpu": tree_cpu(os.getpid()) - cpu,
                  "wall": time.monotonic() - wall})


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write this worker's rows."""
    out = os.environ.get("SUITE_CPU_DIR")
    if out:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        Path(out, f"{worker}.json").write_text(json.dumps(_rows))
