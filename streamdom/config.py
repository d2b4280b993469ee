"""The one configuration object, built by the CLI (or a test) and passed down everywhere."""

from __future__ import annotations

import configparser
import dataclasses
import hashlib
import hmac
import resource
import secrets
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from pathlib import Path

PBKDF2_ITERATIONS = 200_000


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


@dataclass(frozen=True)
class PasswordHash:
    """The viewer password as a salted PBKDF2-SHA256 hash: the plain text is never kept."""

    salt: bytes = field(repr=False)
    digest: bytes = field(repr=False)
    iterations: int = PBKDF2_ITERATIONS

    @classmethod
    def of(cls, password: str, iterations: int = PBKDF2_ITERATIONS) -> PasswordHash:
        """Hash `password` with a fresh random salt."""
        salt = secrets.token_bytes(16)
        return cls(salt, hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations),
                   iterations)

    def verify(self, password: str) -> bool:
        """Whether `password` is the hashed one (constant time; ~0.1 s of CPU: never on the
        IOLoop, see web/auth.py)."""
        attempt = hashlib.pbkdf2_hmac("sha256", password.encode(), self.salt, self.iterations)
        return hmac.compare_digest(attempt, self.digest)


def fd_limit() -> int:
    """This process's soft limit on open files (RLIMIT_NOFILE)."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class Config:
    """Every setting of a StreamDOM server; nothing deeper reads globals or the environment."""

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")

    # Viewer access: a password, hashed at once (only password_hash is kept), the cookie secret,
    # and the public URL: without a password only loopback Host names and this one are served.
    password: InitVar[str | None] = None
    password_hash: PasswordHash | None = None
    cookie_secret: str | None = field(default=None, repr=False)
    public_url: str | None = None  # e.g. https://replay.example.com (its Host is served)

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
    hello_timeout: float = 10.0  # an /ingest socket that has not said hello by then is closed

    # Every connection: deadlines and budgets (docs/SECURITY.md).
    header_timeout: float = 10.0  # to send a request's headers, and to idle between requests
    body_timeout: float = 10.0  # to send a request's body
    max_body_bytes: int = 1024 * 1024  # HTTP request bodies (login forms); WebSockets: above
    max_connections: int = 0  # open sockets in all; 0: derived from RLIMIT_NOFILE
    max_connections_per_ip: int = 0  # open sockets per address; 0: 2 x max_sessions_per_ip + 64
    events_page_max_bytes: int = 4 * 1024 * 1024  # an /events page ends early past this

    # Archive: DuckLake tables. Data under data_dir, or on S3 at `archive` (s3://bucket/prefix);
    # the table catalog in <data_dir>/catalog.sqlite, or in PostgreSQL at `catalog`.
    archive: str | None = None
    s3_endpoint: str | None = None  # e.g. http://127.0.0.1:8333 for SeaweedFS or MinIO
    s3_credentials: S3Credentials | None = field(default=None, repr=False)
    catalog: str | None = None  # postgresql://user:password@host:port/db
    wal_sync_interval: float = 0.02  # seconds between WAL fsyncs; acks follow each fsync
    ack_interval: float = 0.5  # acks: at once if none since the last tick, else with the next
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

    def __post_init__(self, password: str | None) -> None:
        if password is not None:
            self.password_hash = PasswordHash.of(password)

    @property
    def connection_cap(self) -> int:
        """Open sockets allowed in all: what was set, else the file limit less a reserve for the
        archive's files, pipes and threads, so the server answers 503 before accept() fails."""
        if self.max_connections > 0:
            return self.max_connections
        soft = fd_limit()
        return max(8, soft - min(1024, max(64, soft // 8)))

    @property
    def connection_cap_per_ip(self) -> int:
        """Open sockets allowed per client address."""
        return self.max_connections_per_ip or 2 * self.max_sessions_per_ip + 64

    @property
    def clustered(self) -> bool:
        """Whether this process is a cluster node (NatsBus) rather than the embedded default."""
        return bool(self.bus_urls)

    @property
    def requires_login(self) -> bool:
        """Whether viewer routes need a login."""
        return self.password_hash is not None

    def replace(self, **changes: object) -> Config:
        """Return a copy with some settings changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
