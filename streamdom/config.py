"""The one configuration object, built by the CLI (or a test) and passed down everywhere."""

from __future__ import annotations

import configparser
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class S3Credentials:
    """An access key pair (never printed)."""

    key_id: str = field(repr=False)
    secret: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    region: str = "us-east-1"

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> S3Credentials:
        """From AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN), else the
        shared credentials file (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials, AWS_PROFILE).

        The CLI passes os.environ; nothing deeper reads the environment."""
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
            return cls(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"],
                       env.get("AWS_SESSION_TOKEN"), region)
        path = Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or Path.home() / ".aws" / "credentials")
        profile = env.get("AWS_PROFILE", "default")
        parser = configparser.ConfigParser()
        if parser.read(path) and parser.has_section(profile):
            sec = parser[profile]
            if sec.get("aws_access_key_id") and sec.get("aws_secret_access_key"):
                return cls(sec["aws_access_key_id"], sec["aws_secret_access_key"],
                           sec.get("aws_session_token"), sec.get("region", region))
        raise ValueError("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                         f"or put a [{profile}] section in {path}")


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

    # Archive: DuckLake tables. Data under data_dir, or on S3 at `archive` (s3://bucket/prefix);
    # the table catalog in <data_dir>/catalog.sqlite, or in PostgreSQL at `catalog`.
    archive: str | None = None
    s3_endpoint: str | None = None  # e.g. http://127.0.0.1:8333 for SeaweedFS or MinIO
    s3_credentials: S3Credentials | None = field(default=None, repr=False)
    catalog: str | None = None  # postgresql://user:password@host:port/db
    wal_sync_interval: float = 0.02  # seconds between WAL fsyncs; acks follow each fsync
    ack_interval: float = 0.5  # at most one ack per recorder connection this often
    flush_interval: float = 5.0  # seconds between archive commits
    flusher_priority: str = "idle"  # idle: archive writes only on otherwise idle CPU; low: nice 10
    flush_max_events: int = 50_000  # flush early when this many events are pending
    compaction_interval: float = 60.0  # seconds between maintenance passes (merge, retention, cleanup)
    retention_days: int = 30
    min_free_bytes: int = 64 * 1024 * 1024  # below this, ingest refuses events (4507)
    query_threads: int = 2

    # Cluster mode (--bus): NATS JetStream is the log; nothing here changes without it.
    bus_urls: tuple[str, ...] = ()  # nats://host:port of the NATS servers; empty: embedded
    bus_replicas: int = 1  # replicas of the stream and buckets (3 in production)
    bus_max_age: float = 86_400.0  # seconds of history the stream keeps: the rewind window
    bus_connect_timeout: float = 10.0  # seconds to reach NATS at start, then a clear error
    presence_heartbeat: float = 5.0  # s between presence refreshes; stale (not live) after 3
    workers: int = 1  # processes sharing the port (SO_REUSEPORT), each a cluster node
    archiver: bool = False  # also run an archiver in this process (in one worker of N)

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
