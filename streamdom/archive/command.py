"""`python -m streamdom archive --bus ... --data-dir DIR`: run a cluster archiver until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from streamdom.archive.archiver import Archiver, ParquetArchive
from streamdom.bus.jetstream import BusSettings, BusUnreachable, parse_urls
from streamdom.config import Config

log = logging.getLogger("streamdom")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The archiver's options."""
    d = Config()
    ap = argparse.ArgumentParser(prog="python -m streamdom archive", description=__doc__)
    ap.add_argument("--bus", required=True, metavar="nats://HOST:PORT[,HOST:PORT...]",
                    help="the NATS servers of the cluster")
    ap.add_argument("--data-dir", type=Path, default=d.data_dir,
                    help="the archive directory every node reads (default ./data)")
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
    ap.add_argument("--log-level", default="INFO")
    a = ap.parse_args(argv)
    a.urls = parse_urls(a.bus)
    return a


async def run(a: argparse.Namespace) -> None:
    """Archive until SIGTERM/SIGINT."""
    d = Config()
    writer = ParquetArchive(a.data_dir, d.parquet_compression_level, a.retention_days,
                            d.compaction_min_files)
    archiver = Archiver(BusSettings(a.urls, a.bus_replicas, a.bus_max_age), writer, a.batch,
                        a.compaction_interval, a.redeliver_after)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, archiver.stop.set)
    task = asyncio.ensure_future(archiver.run())
    started = asyncio.ensure_future(archiver.started.wait())
    await asyncio.wait([task, started], return_when=asyncio.FIRST_COMPLETED)
    if started.done():
        print(f"StreamDOM archiver consuming {', '.join(a.urls)} into {a.data_dir}", flush=True)
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
