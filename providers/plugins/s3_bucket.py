"""``S3::Bucket``: buckets (or a prefix of one) on S3-compatible servers the operator declares.

The operator declares *sources* (name, endpoint, bucket, optional prefix and region, the
variables holding the access and secret keys, which projects may see it) and *restore targets*
(the same shape). A tenant sees one instance per source and never an endpoint or a key.

Protect
    Every object under the source's prefix (listed in key order) becomes one bank stream item,
    ``<resource prefix>/objects/<sha256 of the key>``, whose item metadata records the key, ETag,
    size, content type, user metadata, the other stored headers (Cache-Control,
    Content-Disposition, Content-Encoding, Content-Language), the tags and the SHA-256 of the
    bytes. Bodies are streamed from GET straight into the bank writer.

    Incremental: an object whose ETag and size equal those recorded in the parent checkpoint
    (the writer's parent, the plan's previous checkpoint) is not downloaded — a HEAD and a tag
    request refresh its metadata and the item reuses the parent's chunks (``Writer.add_reused``).
    A second checkpoint of an unchanged bucket therefore downloads no object and stores only
    its item list.

Restore
    Into the source bucket (no ``target``) or a declared restore target (``target`` names it),
    under the destination's declared prefix plus an optional ``key_prefix``: an object keeps its
    key relative to the source prefix. An existing object at a destination key is refused
    before anything is written unless ``confirm_overwrite`` is true. Metadata, content type,
    headers and tags are written back. Objects up to 8 MiB go up with one PUT; bigger ones with
    a multipart upload of 8 MiB parts, so memory stays bounded by one part. Every object's
    SHA-256 is checked while it is uploaded; a mismatch aborts that upload.

Verify
    Reads every object back from the bank and compares its size and SHA-256 with what was
    recorded at protect time.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from protection.bank import Item, Progress
from protection.bank.reader import fetch_ordered
from providers.constants import S3_BUCKET
from providers.plugins.base import PluginError, ProtectContext, RestoreContext, VerifyContext, bank_reading
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

OBJECTS = "objects"
PART_SIZE = 8 * 1024 * 1024
READ_SIZE = 1024 * 1024
MAX_REPORTED = 5
# Stored headers besides Content-Type and user metadata: (get/head response field, put argument).
HEADERS = ("CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage")

_ENDPOINT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": NAME_SCHEMA,
        "endpoint_url": {"type": "string", "pattern": "^https?://", "description": "Default: AWS S3."},
        "bucket": {"type": "string", "minLength": 3, "maxLength": 63},
        "prefix": {"type": "string", "description": "Only keys starting with this prefix (e.g. 'app/')."},
        "region": {"type": "string", "minLength": 1},
        "access_key_env": ENV_NAME_SCHEMA,
        "secret_key_env": ENV_NAME_SCHEMA,
        "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 600,
                    "description": "Seconds to wait for a connection or an answer (default 10)."},
        "projects": PROJECTS_SCHEMA,
    },
    "required": ["name", "bucket"],
    "additionalProperties": False,
    "dependentRequired": {"access_key_env": ["secret_key_env"], "secret_key_env": ["access_key_env"]},
}


class S3BucketPlugin(DeclaredEndpointPlugin):
    """Protects the objects of declared S3 buckets (incrementally, by ETag and size)."""

    resource_type = S3_BUCKET
    kind = "S3"
    options_schema = {
        "title": "S3 bucket backup options",
        "description": "How the objects of a bucket are copied.",
        "type": "object",
        "properties": {},
        "additionalProperties": False,
    }
    restore_schema = {
        "title": "S3 bucket restore options",
        "description": "Where the objects are written back.",
        "type": "object",
        "properties": {
            "target": {
                "title": "Restore target",
                "description": "Name of a restore-target bucket the operator declared for this project. "
                "Default: the bucket the objects were copied from.",
                "type": "string",
                "minLength": 1,
            },
            "key_prefix": {
                "title": "Key prefix",
                "description": "Put every restored object under this prefix (after the destination's declared "
                "prefix), e.g. 'restored-2024-05-01/'. Default: none (the original keys).",
                "type": "string",
                "maxLength": 512,
                "default": "",
            },
            "confirm_overwrite": {
                "title": "Confirm overwrite",
                "description": "Replace objects that exist at the destination keys. Without it a restore that "
                "would replace an object fails before writing anything.",
                "type": "boolean",
                "default": False,
            },
        },
        "additionalProperties": False,
    }
    saved_info_schema = {
        "title": "Saved S3 bucket information",
        "description": "What a checkpoint records about the copied bucket.",
        "type": "object",
        "properties": {
            "source": {"title": "Source", "type": "string"},
            "bucket": {"title": "Bucket", "type": "string"},
            "prefix": {"title": "Prefix", "type": "string"},
            "objects": {"title": "Objects", "description": "Objects copied.", "type": "integer", "minimum": 0},
            "bytes": {"title": "Bytes", "description": "Total size of the objects.", "type": "integer", "minimum": 0},
            "objects_reused": {"title": "Unchanged objects", "description": "Objects whose ETag and size matched "
                               "the previous checkpoint: not downloaded.", "type": "integer", "minimum": 0},
            "downloaded_bytes": {"title": "Downloaded bytes", "type": "integer", "minimum": 0},
            "new_bytes": {"title": "New bytes", "description": "Bytes the bank did not hold before.",
                          "type": "integer", "minimum": 0},
        },
        "required": ["objects", "bytes", "bucket"],
        "additionalProperties": True,
    }
    config_schema = declared_config_schema(_ENDPOINT_SCHEMA)

    def identity(self, source: Declared) -> tuple:
        return ("s3", source.get("endpoint_url", ""), source.get("bucket"), source.get("prefix", ""))

    # --- protect ----------------------------------------------------------------------
    def protect(self, context: ProtectContext) -> dict[str, Any]:
        source = self.source_of(context.project_id, context.resource)
        client = _client(source)
        bucket, prefix = source.get("bucket"), source.get("prefix", "")
        writer = context.writer
        new_before = writer.stats.new_bytes
        previous = {item.meta["key"]: item for item in writer.parent_items(context.prefix)
                    if item.meta and "key" in item.meta and "etag" in item.meta}
        totals = {"objects": 0, "bytes": 0, "objects_reused": 0, "downloaded_bytes": 0, "vanished": 0}

        def report() -> None:
            if context.on_progress is not None:
                context.on_progress(Progress(totals["bytes"], None, totals["objects"], None))

        try:
            for listed in _list_objects(client, bucket, prefix):
                key = listed["Key"]
                name = f"{context.prefix}/{OBJECTS}/{hashlib.sha256(key.encode()).hexdigest()}"
                before = previous.get(key)
                if before is not None and _same_version(before, listed):
                    head = _unless_vanished(client.head_object, Bucket=bucket, Key=key)
                    if head is None:
                        totals["vanished"] += 1
                        continue
                    if head.get("ETag") == before.meta["etag"]:
                        meta = _object_meta(key, prefix, head, _tags(client, bucket, key), before.meta.get("sha256"))
                        if writer.add_reused(name, before, meta) is not None:
                            totals["objects"] += 1
                            totals["objects_reused"] += 1
                            totals["bytes"] += before.size
                            report()
                            continue
                response = _unless_vanished(client.get_object, Bucket=bucket, Key=key)
                if response is None:
                    totals["vanished"] += 1
                    continue
                meta = _object_meta(key, prefix, response, _tags(client, bucket, key), None)
                item = writer.add_stream(name, _hashed_body(response["Body"], meta), meta=meta)
                totals["objects"] += 1
                totals["bytes"] += item.size
                totals["downloaded_bytes"] += item.size
                report()
        except (ClientError, BotoCoreError) as exc:
            raise PluginError(_reason(source, exc)) from None
        return {
            "source": source.name,
            "bucket": bucket,
            "prefix": prefix,
            **totals,
            "new_bytes": writer.stats.new_bytes - new_before,
        }

    # --- restore ----------------------------------------------------------------------
    def restore(self, context: RestoreContext) -> dict[str, Any]:
        params = context.parameters
        confirm = params.get("confirm_overwrite", False) is True
        key_prefix = _key_prefix(params)
        destination = self.destination(context.project_id, context.resource, params)
        bucket, base = destination.get("bucket"), destination.get("prefix", "") + key_prefix
        client = _client(destination)
        objects = 0
        restored_bytes = 0
        try:
            with _checkpoint_objects(context, "bank-read") as (items, read):
                wanted = {base + item.meta["rel"]: item for item in items}
                total_bytes = sum(item.size for item in items)
                if not confirm:
                    existing = sorted(key for listed in _list_objects(client, bucket, base) if (key := listed["Key"]) in wanted)
                    if existing:
                        shown = ", ".join(existing[:MAX_REPORTED]) + (" …" if len(existing) > MAX_REPORTED else "")
                        raise PluginError(
                            f"{len(existing)} object(s) exist at the destination ({shown}) in bucket {bucket} of "
                            f"{destination.name}; set confirm_overwrite: true to replace them, or a key_prefix"
                        )
                for key, item in wanted.items():
                    _upload(client, bucket, key, item, read(item))
                    objects += 1
                    restored_bytes += item.size
                    if context.on_progress:
                        context.on_progress(Progress(restored_bytes, total_bytes, objects, len(wanted)))
        except (ClientError, BotoCoreError) as exc:
            raise PluginError(_reason(destination, exc)) from None
        return {"destination": destination.name, "bucket": bucket, "key_prefix": base, "objects": objects,
                "bytes": restored_bytes}

    def check_restore_parameters(self, *, project_id: str, resource, parameters: dict[str, Any]) -> None:
        _key_prefix(parameters)
        super().check_restore_parameters(project_id=project_id, resource=resource, parameters=parameters)

    # --- verify -----------------------------------------------------------------------
    def verify(self, context: VerifyContext) -> dict[str, Any]:
        damaged: dict[str, str] = {}
        objects = checked_bytes = 0
        with _checkpoint_objects(context, "bank-verify") as (items, read):
            for item in items:
                digest = hashlib.sha256()
                size = 0
                try:
                    for data in read(item):
                        digest.update(data)
                        size += len(data)
                except PluginError as exc:
                    damaged[item.meta["key"]] = str(exc)
                    continue
                if size != item.meta.get("size", size):
                    damaged[item.meta["key"]] = f"holds {size} bytes, the object had {item.meta['size']}"
                elif digest.hexdigest() != item.meta.get("sha256"):
                    damaged[item.meta["key"]] = "SHA-256 differs from the one recorded at protect time"
                objects += 1
                checked_bytes += size
                if context.on_progress:
                    context.on_progress(Progress(checked_bytes, None, objects, len(items)))
        if damaged:
            shown = "; ".join(f"{key!r}: {reason}" for key, reason in list(damaged.items())[:MAX_REPORTED])
            raise PluginError(f"{len(damaged)} damaged object(s): {shown}")
        recorded = (context.saved_info or {}).get("objects")
        if recorded is not None and recorded != objects:
            raise PluginError(f"the checkpoint holds {objects} object(s), {recorded} were recorded")
        return {"objects": objects, "bytes": checked_bytes}


def _key_prefix(parameters: dict[str, Any]) -> str:
    key_prefix = str(parameters.get("key_prefix") or "")
    if key_prefix.startswith("/") or ".." in key_prefix.split("/"):
        raise PluginError("key_prefix must not start with '/' or contain '..'")
    return key_prefix


# --- S3 access -----------------------------------------------------------------------------
def _client(entry: Declared):
    """A client with bounded waits: an unreachable endpoint is an error within seconds, not a hang."""
    timeout = float(entry.get("timeout", 10))
    kwargs: dict[str, Any] = {
        "endpoint_url": entry.get("endpoint_url"),
        "region_name": entry.get("region") or "us-east-1",
        "config": Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 2, "mode": "standard"},
                         signature_version="s3v4"),
    }
    if entry.get("access_key_env"):
        kwargs["aws_access_key_id"] = secret(entry, "access_key_env")
        kwargs["aws_secret_access_key"] = secret(entry, "secret_key_env")
    return boto3.session.Session().client("s3", **kwargs)


def _reason(entry: Declared, exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
            return f"S3 {entry.name}: access denied (check the operator's credentials): {code} {error.get('Message', '')}".strip()
        if code in ("NoSuchBucket", "404"):
            return f"S3 {entry.name}: bucket {entry.get('bucket')} does not exist"
        return f"S3 {entry.name}: {code} {error.get('Message', '')}".strip()
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
        return f"S3 {entry.name}: cannot reach the endpoint: {exc}"
    if isinstance(exc, ReadTimeoutError):
        return f"S3 {entry.name}: the endpoint did not answer in time: {exc}"
    if isinstance(exc, NoCredentialsError):
        return f"S3 {entry.name}: no credentials (declare access_key_env and secret_key_env)"
    return f"S3 {entry.name}: {exc}"


def _unless_vanished(call, **kwargs) -> dict[str, Any] | None:
    """``call(**kwargs)``, or None when the object was deleted since the listing (it is not part of the copy)."""
    try:
        return call(**kwargs)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise


def _list_objects(client, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def _same_version(item: Item, listed: dict[str, Any]) -> bool:
    return item.meta.get("etag") == listed.get("ETag") and item.meta.get("size") == listed.get("Size")


def _tags(client, bucket: str, key: str) -> dict[str, str]:
    try:
        response = client.get_object_tagging(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NotImplemented", "MethodNotAllowed"):
            return {}  # a server without tagging: there is nothing to keep
        raise
    return {tag["Key"]: tag["Value"] for tag in response.get("TagSet", [])}


def _object_meta(key: str, prefix: str, response: dict[str, Any], tags: dict[str, str], sha256: str | None) -> dict:
    meta: dict[str, Any] = {
        "key": key,
        "rel": key[len(prefix):],
        "etag": response.get("ETag"),
        "size": int(response.get("ContentLength", 0)),
        "content_type": response.get("ContentType"),
        "metadata": response.get("Metadata") or {},
        "tags": tags,
    }
    if response.get("LastModified") is not None:
        meta["last_modified"] = response["LastModified"].isoformat()
    headers = {name: response[name] for name in HEADERS if response.get(name)}
    if headers:
        meta["headers"] = headers
    if sha256:
        meta["sha256"] = sha256
    return meta


def _hashed_body(body, meta: dict[str, Any]) -> Iterator[bytes]:
    """The object's bytes in 1 MiB pieces; at the end its SHA-256 is put into ``meta``.

    The writer records an item's meta only after its stream is exhausted, so the digest lands in
    the item record without a second pass over the data.
    """
    digest = hashlib.sha256()
    try:
        for piece in body.iter_chunks(READ_SIZE):
            digest.update(piece)
            yield piece
    finally:
        body.close()
    meta["sha256"] = digest.hexdigest()


# --- reading items back ------------------------------------------------------------------------
def _resource_items(bank, context, lookup) -> list[Item]:
    """The object items of this resource in the checkpoint (metadata only, no data)."""
    start = f"{context.prefix.strip('/')}/{OBJECTS}/"
    manifest = bank.read_manifest(context.checkpoint_id, lookup)
    items = [item for item in manifest.items() if item.path.startswith(start)]
    for item in items:
        if not item.meta or "rel" not in item.meta or "key" not in item.meta:
            raise PluginError(f"the checkpoint's item {item.path} is not an S3 object record")
    return items


@contextmanager
def _checkpoint_objects(context, thread_name: str) -> Iterator[tuple[list[Item], Callable[[Item], Iterator[bytes]]]]:
    """The resource's object items and a reader of their bytes, under one reader lease of the bank."""
    bank = context.bank
    with bank_reading(bank) as lookup:
        items = _resource_items(bank, context, lookup)
        with ThreadPoolExecutor(bank.workers, thread_name_prefix=thread_name) as pool:
            yield items, lambda item: _item_data(bank, lookup, pool, item)


def _item_data(bank, lookup, pool, item: Item) -> Iterator[bytes]:
    events = (("chunk", index, cid) for index, (cid, _size) in enumerate(item.chunks))
    for _kind, index, data in fetch_ordered(bank, events, lookup, pool, window=bank.workers * 2):
        if isinstance(data, Exception):
            raise PluginError(f"object {item.meta['key']!r}: chunk {index}: {data}")
        yield data


def _put_arguments(item: Item) -> dict[str, Any]:
    meta = item.meta
    arguments: dict[str, Any] = {"Metadata": meta.get("metadata") or {}}
    if meta.get("content_type"):
        arguments["ContentType"] = meta["content_type"]
    for name, value in (meta.get("headers") or {}).items():
        if name in HEADERS:
            arguments[name] = value
    if meta.get("tags"):
        arguments["Tagging"] = urlencode(meta["tags"])
    return arguments


def _upload(client, bucket: str, key: str, item: Item, data: Iterator[bytes]) -> None:
    """PUT (small) or multipart upload (big) of one object, checking its SHA-256 before it becomes visible."""
    expected = item.meta.get("sha256")
    digest = hashlib.sha256()
    arguments = _put_arguments(item)
    if item.size <= PART_SIZE:
        body = b"".join(data)
        digest.update(body)
        if expected and digest.hexdigest() != expected:
            raise PluginError(f"object {item.meta['key']!r}: the checkpoint's bytes do not match the recorded SHA-256")
        client.put_object(Bucket=bucket, Key=key, Body=body, **arguments)
        return
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, **arguments)["UploadId"]
    try:
        parts: list[dict[str, Any]] = []
        buffer = bytearray()

        def send(part: bytes) -> None:
            number = len(parts) + 1
            answer = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=part)
            parts.append({"ETag": answer["ETag"], "PartNumber": number})

        for piece in data:
            digest.update(piece)
            buffer += piece
            while len(buffer) >= PART_SIZE:
                send(bytes(buffer[:PART_SIZE]))
                del buffer[:PART_SIZE]
        if buffer or not parts:
            send(bytes(buffer))
        if expected and digest.hexdigest() != expected:
            raise PluginError(f"object {item.meta['key']!r}: the checkpoint's bytes do not match the recorded SHA-256")
        client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    except BaseException:
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except (ClientError, BotoCoreError):
            log.warning("could not abort multipart upload of %s/%s", bucket, key, exc_info=True)
        raise
