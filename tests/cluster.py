"""Cluster-mode test helpers: StreamDOM nodes and archivers as real processes, archive checks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from streamdom.archive import lake
from streamdom.testing import ROOT, ServerProcess

STARTED: list[ServerProcess | ArchiverProcess] = []  # killed after each test (conftest)


def kill_leftovers() -> None:
    """kill -9 every node and archiver a test started and did not stop (it failed midway)."""
    while STARTED:
        proc = STARTED.pop()
        if proc.proc is not None and proc.proc.poll() is None:
            proc.kill()


def node(root: Path, name: str, bus: str, *args: str) -> ServerProcess:
    """A StreamDOM cluster node (not started) reading the archive at `root/archive`.

    Its data dir is a symlink to the shared archive, so each node keeps its own log file
    (`root/<name>.log`).
    """
    archive = root / "archive"
    archive.mkdir(parents=True, exist_ok=True)
    link = root / name
    if not link.exists():
        link.symlink_to(archive, target_is_directory=True)
    proc = ServerProcess(link, "--bus", bus, "--grace-seconds", "1", *args)
    STARTED.append(proc)
    return proc


class ArchiverProcess:
    """`python -m streamdom archive` writing `root/archive`."""

    def __init__(self, root: Path, name: str, bus: str, *args: str) -> None:
        self.root = root
        self.cmd = [sys.executable, "-m", "streamdom", "archive", "--bus", bus,
                    "--data-dir", str(root / "archive"), *args]
        self.log_path = root / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        STARTED.append(self)

    def start(self, timeout: float = 30) -> ArchiverProcess:
        """Start and wait until it consumes."""
        with open(self.log_path, "ab") as log:
            since = log.tell()
            self.proc = subprocess.Popen(self.cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                         env=os.environ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                if b"StreamDOM archiver consuming" in f.read():
                    return self
            if self.proc.poll() is not None:
                raise RuntimeError("archiver exited:\n" + self.log_path.read_text())
            time.sleep(0.05)
        raise RuntimeError("archiver did not start:\n" + self.log_path.read_text())

    def stop(self) -> int:
        """SIGTERM and wait."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.terminate()
        return self.proc.wait(30)

    def kill(self) -> None:
        """kill -9."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def archived_seqs(root: Path, session_id: str) -> dict[str, list[int]]:
    """Per stream, the seqs the archive holds for a session, in archive order (with repeats),
    read through the catalog: one consistent snapshot, whatever merges are under way."""
    if not (root / "archive" / lake.CATALOG_FILE).exists():
        return {}
    con = lake.connect(lake.Location.local(root / "archive"))
    try:
        rows = con.execute("SELECT stream_id, seq FROM lake.events WHERE session_id = ? "
                           "ORDER BY stream_id, seq", [session_id]).fetchall()
    finally:
        con.close()
    out: dict[str, list[int]] = {}
    for stream, seq in rows:
        out.setdefault(stream, []).append(int(seq))
    return out


def node_of(log: str) -> str | None:
    """The node id a node's log announced."""
    m = re.search(r"cluster node (\S+) on", log)
    return m.group(1) if m else None
