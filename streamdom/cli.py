"""The command line: parse options into a Config, serve until Ctrl-C/SIGTERM, flush, exit 0."""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from streamdom.archive.command import add_archive_options, archive_options
from streamdom.bus import jetstream as J
from streamdom.config import Config
from streamdom.ingest import access
from streamdom.web.app import make_app
from streamdom.wire import valid_id

log = logging.getLogger("streamdom")

# A cluster node acks once JetStream has (a few ms). A quiet connection's ack goes at once
# (AckBatcher); one that was acked less than a tick ago waits for the next tick: 20 ms keeps that
# wait short at about one ack per JetStream message of a busy recorder (25/s in the benchmark),
# where the embedded default's 500 ms spares CPU.
CLUSTER_ACK_INTERVAL = 0.02


def parse_args(argv: list[str] | None = None) -> Config:
    """Options → Config (the password may also come from $STREAMDOM_PASSWORD)."""
    d = Config()
    ap = argparse.ArgumentParser(prog="python -m streamdom", description=__doc__)
    ap.add_argument("--host", default=d.host, help="address to bind (default %(default)s)")
    ap.add_argument("--port", type=int, default=d.port, help="port (default %(default)s; 0 picks one)")
    ap.add_argument("--data-dir", type=Path, default=d.data_dir, help="data directory (default ./data)")
    ap.add_argument("--password-file", type=Path,
                    help="file whose first line is the viewer password (or $STREAMDOM_PASSWORD); "
                         "a password is required to bind beyond loopback")
    ap.add_argument("--password", help="the viewer password on the command line (visible to "
                                       "every user in `ps`: prefer --password-file)")
    ap.add_argument("--cookie-secret", default=os.environ.get("STREAMDOM_COOKIE_SECRET"),
                    help="secret for login cookies (default: random per start)")
    ap.add_argument("--public-url", help="the URL the viewer is reached at, e.g. "
                                         "https://replay.example.com; without a password only "
                                         "loopback names and this URL's host are served")
    ap.add_argument("--ingest-secret", default=os.environ.get("STREAMDOM_INGEST_SECRET"),
                    help="recorders must bring a token minted from this secret for their session "
                         "(or $STREAMDOM_INGEST_SECRET; see `python -m streamdom token --help`)")
    ap.add_argument("--write-key", action="append", default=[],
                    help="accept recorders only with ?key=<this> (repeatable)")
    ap.add_argument("--allowed-origin", action="append", default=[],
                    help="accept recorders only from this page origin (repeatable)")
    ap.add_argument("--retention-days", type=int, default=d.retention_days,
                    help="delete day partitions older than this (default %(default)s)")
    ap.add_argument("--flush-interval", type=float, default=d.flush_interval,
                    help="seconds between Parquet flushes (default %(default)s)")
    ap.add_argument("--wal-sync-interval", type=float, default=d.wal_sync_interval,
                    help="seconds between WAL fsyncs; acks follow each (default %(default)s)")
    ap.add_argument("--flusher-priority", choices=("idle", "low"), default=d.flusher_priority,
                    help="CPU priority of the Parquet flusher process: idle (SCHED_IDLE: only CPU "
                         "nothing else wants; best for the live relay) or low (nice 10: for "
                         "machines whose CPUs are always busy, so flushes cannot starve)")
    ap.add_argument("--grace-seconds", type=float, default=d.grace_seconds,
                    help="a session stays live this long after its recorder leaves (default %(default)s)")
    ap.add_argument("--max-message-bytes", type=int, default=d.max_message_bytes)
    ap.add_argument("--max-events-per-second", type=float, default=d.max_events_per_second)
    ap.add_argument("--max-events-per-second-per-ip", type=float,
                    default=d.max_events_per_second_per_ip)
    ap.add_argument("--max-sessions-per-ip", type=int, default=d.max_sessions_per_ip)
    ap.add_argument("--hello-timeout", type=float, default=d.hello_timeout,
                    help="seconds an /ingest socket may take to say hello (default %(default)s)")
    ap.add_argument("--header-timeout", type=float, default=d.header_timeout,
                    help="seconds a client may take to send a request's headers, and may idle "
                         "between requests (default %(default)s)")
    ap.add_argument("--body-timeout", type=float, default=d.body_timeout,
                    help="seconds a client may take to send a request's body (default %(default)s)")
    ap.add_argument("--max-connections", type=int, default=d.max_connections,
                    help="open sockets in all; past it the oldest idle one is shed, else 503 "
                         "(default 0: the open-files limit less a reserve)")
    ap.add_argument("--max-connections-per-ip", type=int, default=d.max_connections_per_ip,
                    help="open sockets per client address; past it the address's oldest idle "
                         "one is shed, else 429 (default 0: 2 x --max-sessions-per-ip + 64)")
    ap.add_argument("--ring-max-bytes", type=int, default=d.ring_max_bytes,
                    help="per-session ring buffer budget (the latest full snapshot is always kept)")
    ap.add_argument("--ring-max-age", type=float, default=d.ring_max_age,
                    help="seconds a ring keeps events from before its latest full snapshot "
                         "(default %(default)s)")
    ap.add_argument("--viewer-queue-max-bytes", type=int, default=d.viewer_queue_max_bytes,
                    help="a viewer further behind than this is resynced from the latest snapshot")
    ap.add_argument("--min-free-mb", type=int, default=d.min_free_bytes // 2**20,
                    help="refuse events when the data disk has less free space (default %(default)s)")
    cluster = ap.add_argument_group("cluster mode (docs/SCALING.md)")
    cluster.add_argument("--bus", metavar="nats://HOST:PORT[,HOST:PORT...]",
                         help="be a cluster node on NATS JetStream (the durable log, presence, "
                              "cross-node relay) instead of the embedded default")
    cluster.add_argument("--bus-replicas", type=int, default=d.bus_replicas,
                         help="replicas of the stream and key-value buckets (default "
                              "%(default)s; 3 in production)")
    cluster.add_argument("--bus-max-age", type=float, default=d.bus_max_age,
                         help="seconds of history the stream keeps: the rewind window "
                              "(default %(default)s)")
    cluster.add_argument("--bus-connect-timeout", type=float, default=10.0,
                         help="seconds to reach NATS at start before giving up with an error")
    ap.add_argument("--ack-interval", type=float, default=None,
                    help="a recorder connection's ack goes at once, or with the next tick of "
                         "this interval if it had one since the last tick, seconds (default "
                         f"{d.ack_interval:g}; {CLUSTER_ACK_INTERVAL:g} with --bus)")
    cluster.add_argument("--presence-heartbeat", type=float, default=d.presence_heartbeat,
                         help="seconds between presence refreshes; a node that stops refreshing "
                              "(killed) has its sessions end after three (default %(default)s)")
    cluster.add_argument("--workers", type=int, default=d.workers,
                         help="with --bus: processes sharing the port (SO_REUSEPORT), each a "
                              "node (default %(default)s)")
    cluster.add_argument("--archiver", action="store_true",
                         help="with --bus: also archive the stream in this process (in one of "
                              "its workers), as `python -m streamdom archive` does: for small "
                              "deployments; larger ones run archivers apart")
    add_archive_options(ap)
    ap.add_argument("--log-level", default="INFO")
    a = ap.parse_args(argv)
    if a.workers > 1 and not a.bus:
        ap.error("--workers needs --bus (the workers relay to each other through NATS)")
    if a.archiver and not a.bus:
        ap.error("--archiver needs --bus (the embedded default archives by itself)")
    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return Config(
        host=a.host, port=a.port, data_dir=a.data_dir, password=_password(ap, a),
        cookie_secret=a.cookie_secret, public_url=a.public_url, write_keys=tuple(a.write_key),
        ingest_secret=a.ingest_secret or None,
        allowed_origins=tuple(o.rstrip("/") for o in a.allowed_origin),
        retention_days=a.retention_days, flush_interval=a.flush_interval,
        wal_sync_interval=a.wal_sync_interval,
        grace_seconds=a.grace_seconds,
        flusher_priority=a.flusher_priority,
        max_message_bytes=a.max_message_bytes, max_events_per_second=a.max_events_per_second,
        max_events_per_second_per_ip=a.max_events_per_second_per_ip,
        max_sessions_per_ip=a.max_sessions_per_ip, hello_timeout=a.hello_timeout,
        header_timeout=a.header_timeout, body_timeout=a.body_timeout,
        max_connections=a.max_connections, max_connections_per_ip=a.max_connections_per_ip,
        ring_max_bytes=a.ring_max_bytes,
        ring_max_age=a.ring_max_age, viewer_queue_max_bytes=a.viewer_queue_max_bytes,
        min_free_bytes=a.min_free_mb * 2**20, bus_urls=J.parse_urls(a.bus),
        bus_replicas=a.bus_replicas, bus_max_age=a.bus_max_age, workers=max(1, a.workers), archiver=a.archiver,
        bus_connect_timeout=a.bus_connect_timeout, presence_heartbeat=a.presence_heartbeat,
        ack_interval=a.ack_interval if a.ack_interval is not None else
        CLUSTER_ACK_INTERVAL if a.bus else d.ack_interval,
        **archive_options(ap, a),
    )


def _password(ap: argparse.ArgumentParser, a: argparse.Namespace) -> str | None:
    """The viewer password from --password-file, --password or $STREAMDOM_PASSWORD (taken out
    of the environment, so that processes we start do not inherit it). Config hashes it at once
    and keeps only the hash."""
    from_env = os.environ.pop("STREAMDOM_PASSWORD", None)
    if a.password_file is not None:
        try:
            lines = a.password_file.read_text().splitlines()
        except OSError as exc:
            ap.error(f"--password-file: {exc}")
        if not lines or not lines[0]:
            ap.error(f"--password-file: {a.password_file} is empty")
        return lines[0]
    if a.password:
        log.warning("--password shows in `ps` to every user of this machine: use "
                    "--password-file or $STREAMDOM_PASSWORD")
        return a.password
    return from_env or None


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server on this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve(config: Config, reuse_port: bool = False,
                ready: Callable[[int], None] | None = None) -> None:
    """Run until SIGINT/SIGTERM, then stop accepting, flush and return.

    `ready(port)` replaces the 'listening' line (a worker tells its parent instead).
    """
    if not config.requires_login and not is_loopback(config.host):
        sys.exit(f"refusing to bind {config.host} without a viewer password: "
                 "set --password or $STREAMDOM_PASSWORD, or bind 127.0.0.1")
    if not config.requires_login:
        log.info("no viewer password set: listening on loopback only, viewer open to this machine")
    app = make_app(config)
    try:
        await app.services.start()
    except J.BusUnreachable as exc:
        sys.exit(f"streamdom: {exc}")
    # The cyclic GC's full passes pause the IOLoop (the relay) for their whole length, so keep
    # them rare and short. What exists now (modules, the app) lives as long as the process:
    # leave it out of every pass. And collect generation 1 every ~200 young passes instead of
    # 10: a connection's read future or timer lives tens of ms, long enough to outlive a few
    # young passes but not 200, so it dies there instead of piling up in the oldest generation,
    # whose growth (by a quarter) is what triggers a full pass.
    gc.freeze()
    gc.set_threshold(700, 200, 10)
    server = app.listen(config.port, config.host, reuse_port=reuse_port)
    port = next(iter(server._sockets.values())).getsockname()[1]
    if ready is not None:
        ready(port)
    else:
        print(f"StreamDOM listening on http://{config.host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: flushing buffered events")
    server.stop()
    await app.services.close()
    log.info("stopped cleanly")


def token_main(argv: list[str]) -> None:
    """`python -m streamdom token SESSION_ID`: print an ingest token for a session."""
    ap = argparse.ArgumentParser(
        prog="python -m streamdom token",
        description="Print an ingest token for SESSION_ID, minted from the server's ingest secret "
                    "(as the app's backend would mint it; see the README).")
    ap.add_argument("session_id", metavar="SESSION_ID")
    ap.add_argument("--ingest-secret", default=os.environ.get("STREAMDOM_INGEST_SECRET"),
                    help="the server's --ingest-secret (or $STREAMDOM_INGEST_SECRET)")
    ap.add_argument("--ttl", type=int, default=access.DEFAULT_TTL,
                    help="seconds the token stays valid (default %(default)s)")
    a = ap.parse_args(argv)
    if not a.ingest_secret:
        ap.error("an ingest secret is needed: --ingest-secret or $STREAMDOM_INGEST_SECRET")
    if not valid_id(a.session_id):
        ap.error("SESSION_ID must be 1-128 chars of [A-Za-z0-9._:@-]")
    print(access.mint(a.ingest_secret, a.session_id, a.ttl))


def main(argv: list[str] | None = None) -> None:
    """Entry point of `python -m streamdom` (and of its `archive` and `token` commands)."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["archive"]:
        from streamdom.archive.command import main as archive_main

        archive_main(args[1:])
        return
    if args[:1] == ["token"]:
        token_main(args[1:])
        return
    config = parse_args(args)
    if config.workers > 1:
        from streamdom.web.workers import run_workers

        sys.exit(run_workers(config, serve))
    asyncio.run(serve(config))
