"""Real nats-server processes with JetStream for tests and benchmarks: one node or a 3-node cluster.

Part of the package (like streamdom.testing) so that tests and benchmarks share it.

Client ports are picked by the server itself (`-p -1`, read back from its ports file), so two
test runs on one machine never race for a port. A cluster's route ports must be known before
the nodes start (each node lists the others); they come from the kernel (bind to port 0) just
before the start. A restarted node keeps its ports, so clients' URL lists stay valid.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

_probes = itertools.count()
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def free_port() -> int:
    """A TCP port that was free a moment ago (for route ports, which must be known up front)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the process that started it dies, so a test
    run killed from outside (a CI timeout, kill -9) leaves no nats-server behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)


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
                                     stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
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
        self.size = size
        self.nodes = self._make_nodes()

    def _make_nodes(self) -> list[NatsNode]:
        if self.size == 1:
            return [NatsNode(self.root / "n1", "n1")]
        cports = [free_port() for _ in range(self.size)]
        return [NatsNode(self.root / f"n{i + 1}", f"n{i + 1}", cports[i],
                         tuple(p for j, p in enumerate(cports) if j != i))
                for i in range(self.size)]

    def start(self, retries: int = 3) -> NatsCluster:
        """Start every node and wait until JetStream is ready (see wait_jetstream); on failure
        stop what started, so no nats-server outlives a failed fixture or benchmark. When a
        route port was taken meanwhile (by another test run), start again on new ones."""
        try:
            for node in self.nodes:
                node.start()
            wait_jetstream(self.urls, len(self.nodes))
        except BaseException as exc:
            self.stop()
            taken = isinstance(exc, RuntimeError) and "address already in use" in str(exc)
            if taken and retries > 0 and self.size > 1:
                for node in self.nodes:  # a fresh store: its raft state names the old routes
                    shutil.rmtree(node.root, ignore_errors=True)
                self.nodes = self._make_nodes()
                return self.start(retries - 1)
            raise
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


async def reset_jetstream(urls: list[str], timeout: float = 30) -> None:
    """Delete every stream (KV buckets are streams too), so a shared server starts empty.

    Right after a node of a cluster restarted, a stream may still be electing its leader and
    not answer a delete: ask again until it is gone.
    """
    import nats
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.errors import NotFoundError, ServiceUnavailableError

    nc = await nats.connect(urls, connect_timeout=5)
    try:
        js = nc.jetstream(timeout=2)
        deadline = time.monotonic() + timeout
        names = [info.config.name for info in await _retry(js.streams_info, deadline)]
        for name in names:
            async def delete(name: str = name) -> None:
                try:
                    await js.delete_stream(name)
                except NotFoundError:
                    pass  # a timed-out try deleted it after all
            await _retry(delete, deadline, (NatsTimeout, ServiceUnavailableError))
    finally:
        await nc.close()


async def _retry(call: Any, deadline: float, retry_on: tuple[type[Exception], ...] = (),
                 what: str = "") -> Any:
    """`await call()` until it returns; retry `retry_on` (default: timeouts and 503s) until the
    deadline, then raise RuntimeError naming `what`."""
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.errors import ServiceUnavailableError

    retry_on = retry_on or (NatsTimeout, ServiceUnavailableError)
    while True:
        try:
            return await call()
        except retry_on as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"JetStream: {what or getattr(call, '__name__', call)} "
                                   f"failed until the deadline: {exc!r}") from exc
            await asyncio.sleep(0.1)


def wait_jetstream(urls: list[str], replicas: int = 1, timeout: float = 30) -> None:
    """Block until JetStream on `urls` is ready for the tests, waiting for each condition in turn
    (each failure says which was not met):

    1. every node accepts clients;
    2. JetStream answers (a meta leader is elected: until then the API says 503 or is silent);
    3. a stream with `replicas` replicas can be placed (until every peer joined the meta group,
       an R3 stream is refused: "insufficient resources" / "no suitable peers");
    4. that stream has a leader, and every replica is current.

    The probe stream has one name for the whole wait: a try that timed out on the client may
    still have created it, and the next try adopts it (creating is idempotent) instead of
    leaving raft groups behind to load the cluster. It is deleted at the end.
    """
    async def probe() -> None:
        import nats
        from nats.errors import Error as NatsError
        from nats.errors import TimeoutError as NatsTimeout
        from nats.js.api import StreamConfig
        from nats.js.errors import APIError

        deadline = time.monotonic() + timeout
        for url in urls:
            async def connect(url: str = url) -> None:
                # nats-py's connect can loop on a refused server: bound it ourselves
                nc = await asyncio.wait_for(nats.connect(
                    url, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False), 3)
                await nc.close()
            await _retry(connect, deadline, (NatsError, OSError, TimeoutError),
                         f"connecting to {url}")
        nc = await nats.connect(urls, connect_timeout=2, max_reconnect_attempts=-1,
                                reconnect_time_wait=0.1)
        js = nc.jetstream(timeout=2)
        name = f"PROBE_{os.getpid()}_{next(_probes)}"
        config = StreamConfig(name=name, subjects=[f"probe.{name}"], num_replicas=replicas)
        try:
            await _retry(js.account_info, deadline, what="account info (meta leader elected)")
            await _retry(lambda: js.add_stream(config), deadline, (NatsTimeout, APIError),
                         f"placing an R{replicas} stream")

            async def led() -> None:
                info = await js.stream_info(name)
                peers = (info.cluster.replicas or []) if info.cluster else []
                if info.cluster and (not info.cluster.leader or not all(p.current for p in peers)):
                    raise NatsTimeout  # not yet: ask again
            await _retry(led, deadline, what=f"a leader and current replicas for {name}")
        finally:
            try:
                await js.delete_stream(name)
            except (NatsError, APIError):
                pass  # gone with the server, or never made
            await nc.close()

    _run(probe())


def _run(coro: object) -> object:
    """asyncio.run in a thread of its own: the caller may be inside a running loop (Playwright)."""
    with ThreadPoolExecutor(1) as ex:
        return ex.submit(asyncio.run, coro).result()  # type: ignore[arg-type]
