"""`python -m streamdom archive --bus ... [--data-dir DIR | --archive s3://...] [--catalog ...]`:
run a cluster archiver until SIGTERM. Also the archive's location options, shared with the server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from streamdom.archive.archiver import Archiver, LakeArchive
from streamdom.archive.lake import Location
from streamdom.bus.jetstream import BusSettings, BusUnreachable, parse_urls
from streamdom.config import Config, S3Credentials

log = logging.getLogger("streamdom")


def add_archive_options(ap: argparse.ArgumentParser) -> None:
    """--archive, --s3-endpoint, --catalog: where the archive's data and catalog live."""
    g = ap.add_argument_group("archive location (default: Parquet and a SQLite catalog under --data-dir)")
    g.add_argument("--archive", metavar="s3://BUCKET/PREFIX",
                   help="keep the archive's Parquet on S3-compatible storage (credentials: "
                        "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or ~/.aws/credentials and "
                        "AWS_PROFILE; never logged)")
    g.add_argument("--s3-endpoint", metavar="URL",
                   help="S3 endpoint for --archive when not AWS (e.g. http://127.0.0.1:8333)")
    g.add_argument("--catalog", metavar="postgresql://...",
                   help="keep the archive's table catalog in PostgreSQL: needed for several "
                        "writers (archivers) and for nodes on other machines")


def archive_options(ap: argparse.ArgumentParser, a: argparse.Namespace) -> dict[str, Any]:
    """The Config fields of the archive location options (S3 credentials read here, once)."""
    if a.archive and not a.archive.startswith("s3://"):
        ap.error("--archive takes s3://BUCKET/PREFIX (a local archive lives under --data-dir)")
    if a.catalog and not a.catalog.startswith(("postgresql://", "postgres://")):
        ap.error("--catalog takes a postgresql:// URL")
    try:
        creds = S3Credentials.from_environment(os.environ) if a.archive else None
    except ValueError as exc:
        ap.error(str(exc))
    return {"archive": a.archive, "s3_endpoint": a.s3_endpoint, "s3_credentials": creds,
            "catalog": a.catalog}


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The archiver's options."""
    d = Config()
    ap = argparse.ArgumentParser(prog="python -m streamdom archive", description=__doc__)
    ap.add_argument("--bus", required=True, metavar="nats://HOST:PORT[,HOST:PORT...]",
                    help="the NATS servers of the cluster")
    ap.add_argument("--data-dir", type=Path, default=d.data_dir,
                    help="the archive directory (data and SQLite catalog, unless --archive / "
                         "--catalog say otherwise; default ./data)")
    ap.add_argument("--bus-replicas", type=int, default=d.bus_replicas,
                    help="as given to the nodes (default %(default)s)")
    ap.add_argument("--bus-max-age", type=float, default=d.bus_max_age,
                    help="as given to the nodes (default %(default)s)")
    ap.add_argument("--batch", type=int, default=5000, help="messages per commit at most")
    ap.add_argument("--redeliver-after", type=float, default=30.0,
                    help="seconds after which messages an archiver took but did not ack (it died) "
                         "go to another; set when the consumer is first created (default "
                         "%(default)s)")
    ap.add_argument("--retention-days", type=int, default=d.retention_days)
    ap.add_argument("--compaction-interval", type=float, default=d.compaction_interval,
                    help="seconds between maintenance passes (under the cluster's lease)")
    add_archive_options(ap)
    ap.add_argument("--log-level", default="INFO")
    a = ap.parse_args(argv)
    a.urls = parse_urls(a.bus)
    a.config = Config(data_dir=a.data_dir, retention_days=a.retention_days, **archive_options(ap, a))
    return a


async def run(a: argparse.Namespace) -> None:
    """Archive until SIGTERM/SIGINT."""
    location = Location.of(a.config)
    writer = LakeArchive(location, a.retention_days)
    archiver = Archiver(BusSettings(a.urls, a.bus_replicas, a.bus_max_age), writer, a.batch,
                        a.compaction_interval, a.redeliver_after)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, archiver.stop.set)
    task = asyncio.ensure_future(archiver.run())
    started = asyncio.ensure_future(archiver.started.wait())
    await asyncio.wait([task, started], return_when=asyncio.FIRST_COMPLETED)
    if started.done():
        print(f"StreamDOM archiver consuming {', '.join(a.urls)} into {location.data_path}", flush=True)
    await task
    log.info("archiver stopped: %d rows archived", archiver.archived)


def main(argv: list[str]) -> None:
    """Entry point of `python -m streamdom archive`."""
    a = parse_args(argv)
    logging.basicConfig(level=a.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(run(a))
    except BusUnreachable as exc:
        sys.exit(f"streamdom archive: {exc}")
