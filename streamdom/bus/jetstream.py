"""What cluster mode keeps in NATS JetStream: names, subjects, message encoding, connecting.

One stream holds every event (`sd.ev.<session>.<stream>`, one subject per recorder stream);
three key-value buckets hold presence, each session's latest full snapshot (a stream seq) and
leases. Every node and archiver declares them at start, idempotently, from the same settings.
See docs/SCALING.md for why each is shaped so.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass

import nats
import zstandard
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType, StreamConfig
from nats.js.errors import BadRequestError
from nats.js.kv import KeyValue

from streamdom.records import Row

log = logging.getLogger(__name__)

STREAM = "SD_EVENTS"
SUBJECT_ROOT = "sd.ev"
LIVE_ROOT = "sd.live"  # core NATS, not stored: see livepath.py
PRESENCE = "sd_live"
SNAPSHOTS = "sd_snap"
LEASES = "sd_lease"
KEYS = "sd_keys"  # secrets every node shares (no TTL): the ingest's resume key
ARCHIVER = "archiver"  # the archivers' durable consumer

HDR_ID = "Nats-Msg-Id"
HDR_NODE = "Sd-Node"
HDR_SNAP = "Sd-Snap"  # "1": the batch starts a playable segment (Meta / FullSnapshot)
HDR_ENC = "Sd-Enc"  # "zstd": the payload is compressed
HDR_SEQ = "Sd-Seq"  # "<first>-<last>": the batch's seq range in its stream
HDR_URL = "Sd-Url"  # on snapshot batches: the page URL and user agent from the recorder's
HDR_UA = "Sd-Ua"  # hello, percent-encoded (header values are one line of text)

DUPLICATE_WINDOW = 120.0  # s: resends come within seconds; a node restart within a minute
COMPRESS_OVER = 1024  # bytes: smaller payloads gain little from zstd and cost its CPU

# Ids are [A-Za-z0-9._:@-]{1,128} (docs/PROTOCOL.md). A subject token may not hold '.', and a KV
# key may not hold ':' or '@': escape those (and the escape character) as _XX, reversibly.
_ESCAPES = {"_": "_5F", ".": "_2E", ":": "_3A", "@": "_40"}
_ESCAPE_RE = re.compile(r"[_.:@]")
_UNESCAPE_RE = re.compile(r"_(5F|2E|3A|40)")
_UNESCAPES = {v[1:]: k for k, v in _ESCAPES.items()}


def token(value: str) -> str:
    """An id as one subject token (and KV key part): only [A-Za-z0-9_-]."""
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group()], value)


def untoken(tok: str) -> str:
    """The id a token was made from."""
    return _UNESCAPE_RE.sub(lambda m: _UNESCAPES[m.group(1)], tok)


def stream_subject(session_id: str, stream_id: str) -> str:
    """The subject of one recorder stream's events."""
    return f"{SUBJECT_ROOT}.{token(session_id)}.{token(stream_id)}"


def session_subjects(session_id: str) -> str:
    """The wildcard over every stream of a session."""
    return f"{SUBJECT_ROOT}.{token(session_id)}.*"


def msg_id(session_id: str, stream_id: str, first: int, last: int) -> str:
    """The dedup id of a batch: a resend of the same seq range is stored once."""
    return f"{token(session_id)}.{token(stream_id)}.{first}-{last}"


_cctx = zstandard.ZstdCompressor(level=1)
_dctx = zstandard.ZstdDecompressor()


def encode_rows(rows: list[Row]) -> tuple[bytes, bool]:
    """A batch's payload: one event per line, the fields of `Row` after the ids, tab-separated.

    Session and stream are in the subject, so lines carry the rest: seq, type, timestamp,
    server time, data, extra. JSON text never holds a raw tab or newline, so nothing is
    escaped (as in the write-ahead log). Returns the payload and whether it is compressed.
    """
    text = "\n".join(f"{seq}\t{typ}\t{ts}\t{st}\t{data}\t{extra or ''}"
                     for _, _, seq, typ, ts, st, data, extra in rows).encode()
    if len(text) > COMPRESS_OVER:
        return _cctx.compress(text), True
    return text, False


def decode_rows(session_id: str, stream_id: str, payload: bytes, compressed: bool) -> list[Row]:
    """The rows of a batch payload (see encode_rows)."""
    text = (_dctx.decompress(payload) if compressed else payload).decode()
    out: list[Row] = []
    for line in text.split("\n"):
        seq, typ, ts, st, data, extra = line.split("\t")
        out.append((session_id, stream_id, int(seq), int(typ), int(ts), int(st), data, extra or None))
    return out


def parse_subject(subject: str) -> tuple[str, str]:
    """(session id, stream id) of an event subject."""
    _, _, s, t = subject.split(".")
    return untoken(s), untoken(t)


def parse_urls(value: str | None) -> tuple[str, ...]:
    """`--bus nats://h1:4222,h2:4222` (or bare `h1:4222,...`) → one URL per server."""
    parts = [p.strip() for p in (value or "").split(",")]
    return tuple(p if "://" in p else f"nats://{p}" for p in parts if p)


@dataclass(frozen=True)
class BusSettings:
    """How to reach NATS and how to shape the JetStream objects (from the CLI flags)."""

    urls: tuple[str, ...]
    replicas: int = 1
    max_age: float = 86_400.0  # s: the stream's history, i.e. the rewind window
    connect_timeout: float = 10.0  # s: at start, then a clear error
    presence_max_age: float = 600.0  # s: an ended session's entry stays this long
    lease_ttl: float = 30.0


class BusUnreachable(Exception):
    """NATS could not be reached (at start) or JetStream is not enabled there."""


async def connect(settings: BusSettings, name: str) -> Client:
    """Connect (reconnecting forever later); raise BusUnreachable if it fails within the timeout.

    nats-py's initial connect never gives up when reconnects are unlimited (and with
    `max_reconnect_attempts=0` it loops too), so the timeout is ours.
    """
    state = {"down": False}
    nc_box: list[Client] = []  # the client, once connected (a close is not a disconnection)

    async def on_error(exc: Exception) -> None:
        if not state["down"]:
            log.warning("NATS: %s", exc or type(exc).__name__)

    async def on_disconnect() -> None:
        state["down"] = True
        if not nc_box or not nc_box[0].is_closed:
            log.warning("NATS: disconnected; reconnecting")

    async def on_reconnect() -> None:
        state["down"] = False
        log.warning("NATS: reconnected")

    try:
        nc = await asyncio.wait_for(nats.connect(
            list(settings.urls), name=name, error_cb=on_error, disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
            connect_timeout=2, ping_interval=5, max_outstanding_pings=3,
            pending_size=64 * 1024 * 1024), settings.connect_timeout)
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        raise BusUnreachable(f"cannot reach NATS at {', '.join(settings.urls)} "
                             f"within {settings.connect_timeout:g} s ({type(exc).__name__})") from exc
    nc_box.append(nc)
    return nc


@dataclass
class Objects:
    """The JetStream context and the key-value buckets, once declared."""

    js: JetStreamContext
    presence: KeyValue
    snapshots: KeyValue
    leases: KeyValue


async def declare(nc: Client, settings: BusSettings, timeout: float = 30.0) -> Objects:
    """Create (or check) the stream and buckets; raise BusUnreachable if JetStream is off.

    JetStream's API answers slowly or not at all while a cluster elects its meta leader (a
    restart of NATS, a node lost): retry timeouts for up to `timeout` seconds.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await _declare(nc, settings)
        except nats.errors.TimeoutError:
            if asyncio.get_running_loop().time() > deadline:
                raise BusUnreachable(f"JetStream did not answer within {timeout:g} s") from None
            log.warning("JetStream did not answer; asking again")
            await asyncio.sleep(0.5)


async def _declare(nc: Client, settings: BusSettings) -> Objects:
    js = nc.jetstream(timeout=5)
    try:
        await js.account_info()
    except nats.js.errors.APIError as exc:
        raise BusUnreachable("JetStream is not enabled on the NATS servers (run nats-server -js)"
                             ) from exc
    config = StreamConfig(
        name=STREAM, subjects=[f"{SUBJECT_ROOT}.>"], storage=StorageType.FILE,
        num_replicas=settings.replicas, max_age=settings.max_age,
        duplicate_window=DUPLICATE_WINDOW, allow_direct=True)
    try:
        await js.add_stream(config)
    except BadRequestError:  # exists with other settings (another node, or new flags): adopt ours
        await js.update_stream(config)
    buckets = []
    for name, age in ((PRESENCE, settings.presence_max_age), (SNAPSHOTS, settings.max_age),
                      (LEASES, settings.lease_ttl)):
        buckets.append(await js.create_key_value(KeyValueConfig(
            bucket=name, history=1, ttl=age, replicas=settings.replicas,
            storage=StorageType.FILE)))
    return Objects(js, *buckets)
