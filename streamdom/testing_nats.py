"""Real nats-server processes with JetStream for tests and benchmarks: one node or a 3-node cluster.

Part of the package (like streamdom.testing) so that tests and benchmarks share it.

Client ports are picked by the server itself (`-p -1`, read back from its ports file), so two
test runs on one machine never race for a port. A cluster's route ports must be known before
the nodes start (each node lists the others); they come from the kernel (bind to port 0) just
before the start. A restarted node keeps its ports, so clients' URL lists stay valid.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_probes = itertools.count()
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def free_port() -> int:
    """A TCP port that was free a moment ago (for route ports, which must be known up front)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsNode:
    """One nats-server process with JetStream, its store under `root`."""

    def __init__(self, root: Path, name: str, cluster_port: int = 0, routes: tuple[int, ...] = ()) -> None:
        self.root = Path(root)
        self.name = name
        self.cluster_port = cluster_port
        self.routes = routes
        self.port = -1  # the server picks one at the first start; kept across restarts
        self.proc: subprocess.Popen[bytes] | None = None
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """This node's client URL."""
        return f"nats://127.0.0.1:{self.port}"

    def _config(self) -> Path:
        lines = [
            f'server_name: "{self.name}"',
            f'listen: "127.0.0.1:{self.port}"',
            f'jetstream {{ store_dir: "{self.root / "js"}", max_memory_store: 64MB, max_file_store: 2GB }}',
            f'ports_file_dir: "{self.root}"',
        ]
        if self.cluster_port:
            routes = ", ".join(f'"nats://127.0.0.1:{p}"' for p in self.routes)
            lines.append(f'cluster {{ name: "sd", listen: "127.0.0.1:{self.cluster_port}", '
                         f'routes: [{routes}] }}')
        path = self.root / "nats.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, timeout: float = 20) -> NatsNode:
        """Start and wait until it accepts clients."""
        for old in self.root.glob("*.ports"):
            old.unlink()
        log = open(self.root / "nats.log", "ab")  # noqa: SIM115 - the child holds it
        self.proc = subprocess.Popen([NATS_SERVER, "-c", str(self._config())], stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server {self.name} exited:\n{self.logs()[-3000:]}")
            ports = list(self.root.glob(f"*_{self.proc.pid}.ports"))
            if ports:
                try:
                    info = json.loads(ports[0].read_text())
                except ValueError:  # being written
                    info = {}
                if info.get("nats"):
                    self.port = int(info["nats"][0].rsplit(":", 1)[1])
                    return self
            time.sleep(0.02)
        raise RuntimeError(f"nats-server {self.name} did not start:\n{self.logs()[-3000:]}")

    def kill(self) -> None:
        """kill -9."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), then kill if it hangs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def logs(self) -> str:
        """What the server logged so far."""
        try:
            return (self.root / "nats.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""


class NatsCluster:
    """One node (`size=1`, no cluster block) or a cluster of `size` nodes routed to each other."""

    def __init__(self, root: Path, size: int = 1) -> None:
        self.root = Path(root)
        if size == 1:
            self.nodes = [NatsNode(self.root / "n1", "n1")]
        else:
            cports = [free_port() for _ in range(size)]
            self.nodes = [NatsNode(self.root / f"n{i + 1}", f"n{i + 1}", cports[i],
                                   tuple(p for j, p in enumerate(cports) if j != i))
                          for i in range(size)]

    def start(self) -> NatsCluster:
        """Start every node and wait until JetStream answers (a meta leader is elected)."""
        for node in self.nodes:
            node.start()
        wait_jetstream(self.urls, len(self.nodes))
        return self

    @property
    def urls(self) -> list[str]:
        """Client URLs of all nodes."""
        return [n.url for n in self.nodes]

    @property
    def bus(self) -> str:
        """The `--bus` value for these nodes."""
        return ",".join(self.urls)

    def node(self, name: str) -> NatsNode:
        """The node with server name `name`."""
        return next(n for n in self.nodes if n.name == name)

    def revive(self) -> None:
        """Start every node that is not running (same ports, same store) and wait for JetStream."""
        dead = [n for n in self.nodes if not n.running]
        for node in dead:
            node.start()
        if dead:
            wait_jetstream(self.urls, len(self.nodes))

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()


async def reset_jetstream(urls: list[str]) -> None:
    """Delete every stream (KV buckets are streams too), so a shared server starts empty."""
    import nats

    nc = await nats.connect(urls, connect_timeout=5)
    try:
        js = nc.jetstream()
        for name in await js.streams_info():
            await js.delete_stream(name.config.name)
    finally:
        await nc.close()


def wait_jetstream(urls: list[str], replicas: int = 1, timeout: float = 30) -> None:
    """Block until JetStream on `urls` can place a stream with `replicas` replicas.

    An account-info answer only says a meta leader exists; until every peer has joined the
    meta group, an R3 stream is refused ("no suitable peers for placement"), so create one.
    """
    async def probe() -> None:
        import nats
        from nats.errors import Error as NatsError
        from nats.js.api import StreamConfig

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            nc = None
            try:
                nc = await nats.connect(urls, connect_timeout=2, max_reconnect_attempts=0,
                                        allow_reconnect=False)
                js = nc.jetstream()
                name = f"PROBE_{os.getpid()}_{next(_probes)}"  # a fresh one per try
                await js.add_stream(StreamConfig(name=name, subjects=[f"probe.{name}"],
                                                 num_replicas=replicas))
                await js.delete_stream(name)
                return
            except (TimeoutError, NatsError, OSError) as exc:
                last = exc
            finally:
                if nc is not None:
                    await nc.close()
            await asyncio.sleep(0.1)
        raise RuntimeError(f"JetStream on {urls} not ready after {timeout} s: {last!r}")

    _run(probe())


def _run(coro: object) -> object:
    """asyncio.run in a thread of its own: the caller may be inside a running loop (Playwright)."""
    with ThreadPoolExecutor(1) as ex:
        return ex.submit(asyncio.run, coro).result()  # type: ignore[arg-type]
