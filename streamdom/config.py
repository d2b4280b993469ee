"""The one configuration object, built by the CLI (or a test) and passed down everywhere."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Config:
    """Every setting of a StreamDOM server; nothing deeper reads globals or the environment."""

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")

    # Viewer access: a password (kept only as a PBKDF2 hash in memory) and the cookie secret.
    password: str | None = None
    cookie_secret: str | None = None

    # Ingest access: optional write keys (any one accepted) and allowed page origins.
    ingest_secret: str | None = None  # when set, a hello needs a token minted from it (tokens.py)
    write_keys: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()  # empty: any origin may record

    # Live relay.
    grace_seconds: float = 5.0  # a session stays live this long after its last recorder leaves
    ring_max_bytes: int = 8 * 1024 * 1024  # per session; the latest full snapshot is always kept
    ring_max_age: float = 60.0  # seconds older segments (before the latest snapshot) are kept
    ring_total_max_bytes: int = 512 * 1024 * 1024  # all sessions; oldest idle rings are evicted
    viewer_queue_max_bytes: int = 4 * 1024 * 1024  # beyond this a slow viewer is resynced

    # Limits on the public ingest endpoint.
    max_message_bytes: int = 4 * 1024 * 1024
    max_events_per_second: float = 2000.0  # per connection, token bucket (burst = 2 s worth)
    max_events_per_second_per_ip: float = 10000.0
    max_sessions_per_ip: int = 200

    # Archive.
    wal_sync_interval: float = 0.02  # seconds between WAL fsyncs; acks follow each fsync
    ack_interval: float = 0.5  # at most one ack per recorder connection this often
    flush_interval: float = 5.0  # seconds between Parquet flushes
    flusher_idle: bool = True  # Parquet work only on otherwise idle CPU (else at nice 10)
    flush_max_events: int = 50_000  # flush early when this many events are pending
    compaction_interval: float = 60.0
    compaction_min_files: int = 8
    retention_days: int = 30
    min_free_bytes: int = 64 * 1024 * 1024  # below this, ingest refuses events (4507)
    parquet_compression_level: int = 9
    query_threads: int = 2

    # Cluster mode (--bus): NATS JetStream is the log; nothing here changes without it.
    bus_urls: tuple[str, ...] = ()  # nats://host:port of the NATS servers; empty: embedded
    bus_replicas: int = 1  # replicas of the stream and buckets (3 in production)
    bus_max_age: float = 86_400.0  # seconds of history the stream keeps: the rewind window
    bus_connect_timeout: float = 10.0  # seconds to reach NATS at start, then a clear error
    presence_heartbeat: float = 5.0  # s between presence refreshes; stale (not live) after 3
    workers: int = 1  # processes sharing the port (SO_REUSEPORT), each a cluster node

    @property
    def clustered(self) -> bool:
        """Whether this process is a cluster node (NatsBus) rather than the embedded default."""
        return bool(self.bus_urls)

    @property
    def requires_login(self) -> bool:
        """Whether viewer routes need a login."""
        return self.password is not None

    def replace(self, **changes: object) -> Config:
        """Return a copy with some settings changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
