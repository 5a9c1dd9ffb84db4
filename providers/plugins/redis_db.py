"""``Redis::Database``: logical databases of Redis servers the operator declares.

The operator declares *sources* (name, host, port, db, the variable holding the password,
TLS, which projects may see it) and *restore targets* (the same shape). A tenant sees one
instance per source — a UUID5 of host, port and db, and the source's name — and never a host
or a password.

How a copy is taken: SCAN + DUMP/PTTL, key by key
    The replication protocol (SYNC/PSYNC) would give a whole-instance RDB, truly point in
    time, but it copies every database of the server (a tenant may only see one), and restoring
    one database from it, into another database or server, needs a full RDB parser. DUMP is
    Redis's own per-key serialisation (every type, modules included, with a version and CRC
    that RESTORE checks), it works per logical database and with ACL users that may not
    replicate, and PTTL keeps each key's TTL. The price: the copy is consistent *per key*, not
    across keys — SCAN returns every key that exists for the whole scan exactly once in state
    as of the moment it is dumped; keys created or deleted during the scan may or may not be in
    it. (For an instance that must be copied atomically, point a source at a replica whose
    replication the operator pauses.)

Stream format (one bank stream item per resource, cut, deduplicated and encrypted by the bank)
    ``KARBOR-REDIS-DUMP 1\\n`` then records ``type:u8 key_len:u32 expire_at_ms:i64 payload_len:u32
    key payload`` (big endian; expire_at_ms -1 = no expiry) and a trailer ``0xFF count:u64``.
    The expiry is stored as an instant (PEXPIRETIME; before Redis 7: the time of the read plus
    PTTL, rounded to the second), not as a remaining TTL, so an unchanged database yields the
    same bytes again and its next checkpoint deduplicates. Keys are
    read in SCAN batches through one pipeline per batch; nothing but the current batch is in
    memory. A key SCAN returns twice (only when the server resizes its hash table during the
    scan) is stored twice and counted twice; RESTORE … REPLACE makes the later copy win. Filtering
    those would need a set of every key seen, memory growing with the database.

Restore
    Into the source itself (no ``target``) or into a declared restore target named by the
    ``target`` parameter. A destination database that holds keys is refused before anything
    is written unless ``confirm_overwrite`` is true (then the checkpoint's keys replace the
    ones with the same names; ``flush`` empties the database first). Keys go back with
    pipelined RESTORE … REPLACE in batches; TTLs are the remaining time at protect time
    (``ttl: relative``, the default) or the original expiry instant (``ttl: absolute``: keys
    whose expiry has passed are not restored).

Verify
    Streams the copy back from the bank, parses every record and compares the key count and
    the per-type counts with the saved info.
"""
from __future__ import annotations

import itertools
import logging
import struct
import time
from collections.abc import Iterable, Iterator
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from django.core.exceptions import ImproperlyConfigured

from protection.bank import BankError, Progress
from providers.constants import REDIS_DATABASE
from providers.plugins.base import PluginError, ProtectContext, RestoreContext, VerifyContext
from providers.plugins.declared import (
    ENV_NAME_SCHEMA,
    NAME_SCHEMA,
    PROJECTS_SCHEMA,
    Declared,
    DeclaredEndpointPlugin,
    declared_config_schema,
    secret,
)

log = logging.getLogger(__name__)

MAGIC = b"KARBOR-REDIS-DUMP 1\n"
_RECORD = struct.Struct(">BIqI")
_TRAILER = struct.Struct(">BQ")
TRAILER_TYPE = 0xFF
TYPE_CODES = {"string": 1, "list": 2, "set": 3, "zset": 4, "hash": 5, "stream": 6}
OTHER_TYPE = 7
TYPE_NAMES = {code: name for name, code in TYPE_CODES.items()} | {OTHER_TYPE: "other"}
STREAM_NAME = "keys"
SCAN_BATCH = 500
RESTORE_BATCH_KEYS = 500
RESTORE_BATCH_BYTES = 8 * 1024 * 1024

_ENDPOINT_PROPERTIES: dict[str, Any] = {
    "name": NAME_SCHEMA,
    "host": {"type": "string", "minLength": 1},
    "port": {"type": "integer", "minimum": 1, "maximum": 65535},
    "db": {"type": "integer", "minimum": 0},
    "username": {"type": "string", "minLength": 1, "description": "ACL user (Redis 6+); default user when absent."},
    "password_env": ENV_NAME_SCHEMA,
    "tls": {"type": "boolean"},
    "tls_ca_file": {"type": "string", "minLength": 1},
    "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 600,
                "description": "Seconds to wait for a connection or an answer (default 10)."},
    "projects": PROJECTS_SCHEMA,
}
_ENDPOINT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": _ENDPOINT_PROPERTIES,
    "required": ["name", "host"],
    "additionalProperties": False,
}


class RedisDatabasePlugin(DeclaredEndpointPlugin):
    """Protects logical databases of declared Redis servers with SCAN + DUMP/PTTL, restores with RESTORE."""

    resource_type = REDIS_DATABASE
    kind = "Redis"
    options_schema = {
        "title": "Redis backup options",
        "description": "How a Redis database is copied when a checkpoint is taken.",
        "type": "object",
        "properties": {
            "match": {
                "title": "Key pattern",
                "description": "Only keys matching this glob-style pattern (SCAN MATCH), e.g. 'session:*'. "
                "Default: every key.",
                "type": "string",
                "minLength": 1,
                "default": "*",
            },
        },
        "additionalProperties": False,
    }
    restore_schema = {
        "title": "Redis restore options",
        "description": "Where and how the keys are written back.",
        "type": "object",
        "properties": {
            "target": {
                "title": "Restore target",
                "description": "Name of a restore target the operator declared for this project. Default: the "
                "database the keys were copied from.",
                "type": "string",
                "minLength": 1,
            },
            "confirm_overwrite": {
                "title": "Confirm overwrite",
                "description": "Required when the destination database holds keys: keys of the checkpoint replace "
                "keys with the same names. Without it such a restore fails before writing anything.",
                "type": "boolean",
                "default": False,
            },
            "flush": {
                "title": "Empty the destination first",
                "description": "Delete every key of the destination database before restoring (needs "
                "confirm_overwrite), so it ends up holding exactly the checkpoint's keys.",
                "type": "boolean",
                "default": False,
            },
            "ttl": {
                "title": "TTL mode",
                "description": "relative: a key gets the time to live it had left when the copy started (default); "
                "absolute: it expires at the same instant as the original, and keys already expired are skipped.",
                "type": "string",
                "enum": ["relative", "absolute"],
                "default": "relative",
            },
        },
        "additionalProperties": False,
    }
    saved_info_schema = {
        "title": "Saved Redis database information",
        "description": "What a checkpoint records about the copied database.",
        "type": "object",
        "properties": {
            "source": {"title": "Source", "description": "Name of the declared source.", "type": "string"},
            "db": {"title": "Database", "description": "Logical database number.", "type": "integer"},
            "keys": {"title": "Keys", "description": "Keys copied.", "type": "integer", "minimum": 0},
            "types": {"title": "Keys per type", "description": "Keys copied per Redis type.", "type": "object"},
            "bytes": {"title": "Bytes", "description": "Size of the stored stream (DUMP payloads and framing).",
                      "type": "integer", "minimum": 0},
            "expiring_keys": {"title": "Keys with a TTL", "type": "integer", "minimum": 0},
            "redis_version": {"title": "Redis version", "type": "string"},
            "protected_at_ms": {"title": "Copy time", "description": "Unix time (ms) the scan started.",
                                "type": "integer"},
            "new_bytes": {"title": "New bytes", "description": "Bytes the bank did not hold before.",
                          "type": "integer"},
        },
        "required": ["keys", "types", "redis_version", "db"],
        "additionalProperties": True,
    }
    config_schema = declared_config_schema(_ENDPOINT_SCHEMA)

    def configure(self, options: dict[str, Any]) -> None:
        super().configure(options)
        for key, entries in (("sources", self.sources), ("restore_targets", self.restore_targets)):
            for index, entry in enumerate(entries):
                if entry.get("tls_ca_file") and not entry.get("tls"):
                    raise ImproperlyConfigured(f"options.{key}.{index}.tls_ca_file: needs tls: true")

    # --- protectable side -------------------------------------------------------------
    def identity(self, source: Declared) -> tuple:
        return ("redis", source.get("host"), int(source.get("port", 6379)), int(source.get("db", 0)))

    def extra_info(self, source: Declared) -> dict[str, Any]:
        return {"source": source.name, "db": int(source.get("db", 0))}

    # --- protect ----------------------------------------------------------------------
    def protect(self, context: ProtectContext) -> dict[str, Any]:
        source = self.source_of(context.project_id, context.resource)
        client = _connect(source)
        match = context.parameters.get("match") or "*"
        try:
            info = client.info("server")
            total = int(client.dbsize())
        except redis.RedisError as exc:
            client.close()
            raise PluginError(_reason(source, exc)) from None
        counts: dict[str, int] = {}
        state = {"keys": 0, "bytes": 0, "expiring": 0}
        started_ms = int(time.time() * 1000)
        writer = context.writer
        new_before = writer.stats.new_bytes

        def on_progress(progress: Progress) -> None:
            if context.on_progress is not None:
                context.on_progress(Progress(progress.bytes_done, None, state["keys"], max(total, state["keys"])))

        version = str(info.get("redis_version", ""))
        exact_expiry = _version_at_least(version, 7)
        records = _dump_records(client, source, match=match, exact_expiry=exact_expiry, counts=counts, state=state)
        try:
            writer.add_stream(
                f"{context.prefix}/{STREAM_NAME}",
                records,
                meta={"format": "karbor-redis-dump", "version": 1, "db": int(source.get("db", 0))},
                on_progress=on_progress,
            )
        finally:
            client.close()
        return {
            "source": source.name,
            "db": int(source.get("db", 0)),
            "match": match,
            "keys": state["keys"],
            "types": counts,
            "expiring_keys": state["expiring"],
            "bytes": state["bytes"],
            "redis_version": version,
            "protected_at_ms": started_ms,
            "new_bytes": writer.stats.new_bytes - new_before,
        }

    # --- restore ----------------------------------------------------------------------
    def restore(self, context: RestoreContext) -> dict[str, Any]:
        params = context.parameters
        confirm = params.get("confirm_overwrite", False) is True
        flush = params.get("flush", False) is True
        mode = params.get("ttl", "relative")
        if mode not in ("relative", "absolute"):
            raise PluginError("parameter ttl must be 'relative' or 'absolute'")
        if flush and not confirm:
            raise PluginError("flush empties the destination database: it needs confirm_overwrite: true")
        destination = self.destination(context.project_id, context.resource, params)
        where = f"database {int(destination.get('db', 0))} of {destination.name}"
        client = _connect(destination)
        try:
            try:
                existing = int(client.dbsize())
            except redis.RedisError as exc:
                raise PluginError(_reason(destination, exc)) from None
            if existing and not confirm:
                raise PluginError(
                    f"{where} holds {existing} key(s); set confirm_overwrite: true to replace the "
                    "checkpoint's keys there (and flush: true to empty it first)"
                )
            records = _parse(context.bank.open_item(context.checkpoint_id, f"{context.prefix}/{STREAM_NAME}"))
            # Read the first record before touching the destination: a missing or foreign copy changes nothing.
            first = next(records, None)
            records = itertools.chain([first] if first is not None else [], records)
            if flush:
                client.flushdb()
            protected_at = int((context.saved_info or {}).get("protected_at_ms") or 0)
            report = _restore_records(client, destination, records, absolute=mode == "absolute" or not protected_at,
                                      copied_at_ms=protected_at,
                                      expected=int((context.saved_info or {}).get("keys") or 0), on_progress=context.on_progress)
        except redis.RedisError as exc:
            raise PluginError(_reason(destination, exc)) from None
        except BankError as exc:
            raise PluginError(str(exc)) from None
        finally:
            client.close()
        return {"destination": destination.name, "db": int(destination.get("db", 0)), **report}

    # --- verify -----------------------------------------------------------------------
    def verify(self, context: VerifyContext) -> dict[str, Any]:
        saved = context.saved_info or {}
        counts: dict[str, int] = {}
        keys = 0
        try:
            for type_code, _key, _expire_at, _payload in _parse(
                context.bank.open_item(context.checkpoint_id, f"{context.prefix}/{STREAM_NAME}")
            ):
                keys += 1
                name = TYPE_NAMES.get(type_code, "other")
                counts[name] = counts.get(name, 0) + 1
                if context.on_progress and keys % 1000 == 0:
                    context.on_progress(Progress(0, None, keys, saved.get("keys")))
        except BankError as exc:
            raise PluginError(str(exc)) from None
        if "keys" in saved and keys != saved["keys"]:
            raise PluginError(f"the copy holds {keys} key(s), the checkpoint recorded {saved['keys']}")
        if "types" in saved and counts != saved["types"]:
            raise PluginError(f"keys per type {counts} differ from the recorded {saved['types']}")
        return {"keys": keys, "types": counts}


# --- connection ----------------------------------------------------------------------------
def _connect(entry: Declared) -> redis.Redis:
    """A client with bounded waits: a wrong host or a stalled server is an error within ``timeout`` seconds."""
    timeout = float(entry.get("timeout", 10))
    kwargs: dict[str, Any] = {
        "host": entry.get("host"),
        "port": int(entry.get("port", 6379)),
        "db": int(entry.get("db", 0)),
        "username": entry.get("username"),
        "password": secret(entry, "password_env"),
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        # One attempt: redis-py retries three times by default, which would multiply the wait.
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": False,
    }
    if entry.get("tls"):
        kwargs["ssl"] = True
        if entry.get("tls_ca_file"):
            kwargs["ssl_ca_certs"] = entry.get("tls_ca_file")
    return redis.Redis(**kwargs)


def _reason(entry: Declared, exc: Exception) -> str:
    """A tenant-facing reason: what failed and Redis's answer; never the host's password."""
    if isinstance(exc, redis.AuthenticationError) or "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
        what = "authentication failed (check the operator's credentials)"
    elif isinstance(exc, redis.TimeoutError):
        what = "the server did not answer in time"
    elif isinstance(exc, redis.ConnectionError):
        what = "cannot connect"
    else:
        what = "the server refused the operation"
    return f"Redis {entry.name}: {what}: {exc}"


# --- protect: SCAN + DUMP ------------------------------------------------------------------
def _dump_records(client: redis.Redis, source: Declared, *, match: str, exact_expiry: bool, counts: dict[str, int],
                  state: dict[str, int]) -> Iterator[bytes]:
    """The stream: header, one record per key (a SCAN batch per yield), trailer."""
    yield MAGIC
    state["bytes"] += len(MAGIC)
    cursor = 0
    try:
        while True:
            cursor, keys = client.scan(cursor=cursor, match=match, count=SCAN_BATCH)
            fresh = list(dict.fromkeys(keys))
            if fresh:
                now_ms = int(time.time() * 1000)
                pipe = client.pipeline(transaction=False)
                for key in fresh:
                    pipe.type(key)
                    if exact_expiry:
                        pipe.execute_command("PEXPIRETIME", key)
                    else:
                        pipe.pttl(key)
                    pipe.dump(key)
                results = pipe.execute()
                out = bytearray()
                for index, key in enumerate(fresh):
                    kind, expiry, payload = results[3 * index: 3 * index + 3]
                    if payload is None:  # deleted or expired between SCAN and DUMP
                        continue
                    name = kind.decode() if isinstance(kind, bytes) else str(kind)
                    code = TYPE_CODES.get(name, OTHER_TYPE)
                    if expiry is None or expiry < 0:
                        expire_at = -1
                    else:
                        expire_at = int(expiry) if exact_expiry else round((now_ms + int(expiry)) / 1000) * 1000
                        state["expiring"] += 1
                    out += _RECORD.pack(code, len(key), expire_at, len(payload))
                    out += key
                    out += payload
                    state["keys"] += 1
                    counts[TYPE_NAMES[code]] = counts.get(TYPE_NAMES[code], 0) + 1
                state["bytes"] += len(out)
                yield bytes(out)
            if cursor == 0:
                break
    except redis.RedisError as exc:
        raise PluginError(_reason(source, exc)) from None
    trailer = _TRAILER.pack(TRAILER_TYPE, state["keys"])
    state["bytes"] += len(trailer)
    yield trailer


def _version_at_least(version: str, major: int) -> bool:
    try:
        return int(version.split(".")[0]) >= major
    except ValueError:
        return False


# --- reading the stream back ----------------------------------------------------------------
class _Buffered:
    """Exact-size reads from an iterator of byte strings (one record in memory at a time)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = bytearray()
        self._offset = 0

    def read(self, size: int) -> bytes:
        while len(self._buffer) - self._offset < size:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                raise PluginError("the copy in the checkpoint is truncated") from None
            if self._offset:
                del self._buffer[: self._offset]
                self._offset = 0
            self._buffer += chunk
        data = bytes(self._buffer[self._offset: self._offset + size])
        self._offset += size
        return data

    def at_end(self) -> bool:
        if len(self._buffer) > self._offset:
            return False
        for chunk in self._chunks:
            if chunk:
                self._buffer, self._offset = bytearray(chunk), 0
                return False
        return True


def _parse(chunks: Iterable[bytes]) -> Iterator[tuple[int, bytes, int, bytes]]:
    """(type code, key, expire_at_ms, DUMP payload) per record; PluginError on a malformed or truncated copy."""
    reader = _Buffered(chunks)
    if reader.read(len(MAGIC)) != MAGIC:
        raise PluginError("the copy in the checkpoint is not a Karbor Redis dump")
    count = 0
    while True:
        kind = reader.read(1)[0]
        if kind == TRAILER_TYPE:
            (recorded,) = struct.unpack(">Q", reader.read(8))
            if recorded != count:
                raise PluginError(f"the copy's trailer records {recorded} key(s) but holds {count}")
            if not reader.at_end():
                raise PluginError("the copy in the checkpoint has data after its trailer")
            return
        if kind not in TYPE_NAMES:
            raise PluginError(f"the copy in the checkpoint is damaged (record {count + 1} has type {kind})")
        key_len, expire_at, payload_len = struct.unpack(">IqI", reader.read(_RECORD.size - 1))
        key = reader.read(key_len)
        payload = reader.read(payload_len)
        count += 1
        yield kind, key, expire_at, payload


# --- restore: pipelined RESTORE ----------------------------------------------------------------
def _restore_records(client: redis.Redis, destination: Declared, records: Iterator[tuple[int, bytes, int, bytes]], *,
                     absolute: bool, copied_at_ms: int, expected: int, on_progress) -> dict[str, Any]:
    restored = skipped_expired = written_bytes = 0
    pipe = client.pipeline(transaction=False)
    batch: list[bytes] = []
    batch_bytes = 0

    def flush_batch() -> None:
        nonlocal batch_bytes
        for key, result in zip(batch, pipe.execute(raise_on_error=False)):
            if isinstance(result, Exception):
                raise PluginError(f"Redis {destination.name}: RESTORE of key {key[:200]!r} failed: {result}")
        batch.clear()
        batch_bytes = 0
        if on_progress:
            on_progress(Progress(written_bytes, None, restored, expected or None))

    now_ms = int(time.time() * 1000)
    for _type, key, expire_at, payload in records:
        if expire_at < 0:
            pipe.restore(key, 0, payload, replace=True)
        elif absolute:
            if expire_at <= now_ms:
                skipped_expired += 1
                continue
            pipe.restore(key, expire_at, payload, replace=True, absttl=True)
        else:
            # The time it had left at the copy; 0 would mean "no expiry" to RESTORE.
            pipe.restore(key, max(expire_at - copied_at_ms, 1), payload, replace=True)
        batch.append(key)
        restored += 1
        batch_bytes += len(payload) + len(key)
        written_bytes += len(payload) + len(key)
        if len(batch) >= RESTORE_BATCH_KEYS or batch_bytes >= RESTORE_BATCH_BYTES:
            flush_batch()
    if batch:
        flush_batch()
    return {"keys": restored, "skipped_expired": skipped_expired, "bytes": written_bytes}
