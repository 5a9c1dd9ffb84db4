"""Storage backends: a tiny object-store interface with a local-directory and an S3 implementation.

Keys are '/'-separated relative names such as ``packs/ab/ab12...``. Every ``put`` is atomic:
a reader sees either the whole previous object, the whole new one, or nothing.
"""
from __future__ import annotations

import abc
import datetime as _dt
import errno
import fcntl
import os
import uuid
from dataclasses import dataclass
from typing import Iterable, Iterator, List, Optional, Sequence, Union

from .direct_io import ALIGN, O_DIRECT, STAGE_SIZE, read_direct, thread_stage
from .errors import BackendError, ObjectNotFound

# S3's DeleteObjects takes at most this many keys per request.
S3_DELETE_BATCH = 1000

Data = Union[bytes, bytearray, memoryview, Sequence[Union[bytes, bytearray, memoryview]]]


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object as returned by :meth:`Backend.list`."""

    key: str
    size: int
    mtime: float  # seconds since the epoch (server clock for S3)


def _parts(data: Data) -> Sequence[Union[bytes, bytearray, memoryview]]:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return (data,)
    return data


# Objects from this size on (packs) are written with O_DIRECT, through the thread's aligned stage
# (see direct_io for why). Backup data then does not evict the page cache the protected application uses.
DIRECT_WRITE_MIN = 1024 * 1024
_O_DIRECT = O_DIRECT


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view):]


def _write_direct(fd: int, parts: Sequence[Union[bytes, bytearray, memoryview]]) -> None:
    """Write ``parts`` to ``fd`` (opened with O_DIRECT): whole aligned blocks directly, the tail buffered."""
    stage = thread_stage()
    fill = 0
    for part in parts:
        view = memoryview(part).cast("B")
        while view:
            n = min(len(view), STAGE_SIZE - fill)
            stage[fill:fill + n] = view[:n]
            fill += n
            view = view[n:]
            if fill == STAGE_SIZE:
                _write_all(fd, stage)
                fill = 0
    aligned = fill - fill % ALIGN
    if aligned:
        _write_all(fd, stage[:aligned])
    if fill > aligned:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~_O_DIRECT)
        _write_all(fd, stage[aligned:fill])


def _check_key(key: str) -> None:
    if not key or key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in key.split("/")):
        raise BackendError(f"invalid object key {key!r}")


class Backend(abc.ABC):
    """Interface every backend implements (both implementations live below)."""

    # Whether a forked child may call it while the parent does too (restore worker processes);
    # a client holding pooled connections (S3) may not.
    fork_safe = False

    @abc.abstractmethod
    def put(self, key: str, data: Data) -> None:
        """Store ``data`` (bytes or a sequence of byte chunks) under ``key`` atomically."""

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """Return the whole object; raise ObjectNotFound when missing."""

    @abc.abstractmethod
    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """Return ``length`` bytes at ``offset`` (shorter when the object is shorter)."""

    def get_range_view(self, key: str, offset: int, length: int) -> memoryview:
        """Like :meth:`get_range`, as a view that may live in a buffer this thread reuses.

        The view is valid only until this thread's next ``get_range_view`` call: for a caller
        that is done with the bytes before it reads again (a restore worker).
        """
        return memoryview(self.get_range(key, offset, length))

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with ``prefix``."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Delete ``key``; deleting a missing key is not an error."""

    @abc.abstractmethod
    def delete_many(self, keys: Iterable[str]) -> int:
        """Delete every key (missing ones are not an error) with as few requests as the store allows.

        Returns how many keys were asked for. Raises BackendError naming a key that could not be deleted.
        """

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Return whether ``key`` exists."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Human-readable location, for messages."""


class LocalBackend(Backend):
    """A bank in a local directory: write temp file + fsync + rename, so puts are atomic."""

    TMP_MARK = ".tmp-"
    # A forked process may use it: it keeps no connection or descriptor between calls.
    fork_safe = True

    def __init__(self, root: Union[str, os.PathLike], fsync: bool = True, direct_writes: bool = True) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.fsync = fsync
        self.direct_writes = direct_writes and bool(_O_DIRECT)

    def describe(self) -> str:
        return self.root

    def _path(self, key: str) -> str:
        _check_key(key)
        return os.path.join(self.root, *key.split("/"))

    def put(self, key: str, data: Data) -> None:
        path = self._path(key)
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f"{self.TMP_MARK}{uuid.uuid4().hex}")
        parts = list(_parts(data))
        direct = self.direct_writes and sum(memoryview(p).nbytes for p in parts) >= DIRECT_WRITE_MIN
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
            fd = -1
            if direct:
                try:
                    fd = os.open(tmp, flags | _O_DIRECT, 0o600)
                except OSError as exc:
                    if exc.errno != errno.EINVAL:  # a file system without O_DIRECT (tmpfs): write buffered
                        raise
            if fd < 0:
                direct = False
                fd = os.open(tmp, flags, 0o600)
            try:
                if direct:
                    try:
                        _write_direct(fd, parts)
                    except OSError as exc:
                        if exc.errno != errno.EINVAL:
                            raise
                        # A device with stricter alignment: start over buffered.
                        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~_O_DIRECT)
                        os.ftruncate(fd, 0)
                        os.lseek(fd, 0, os.SEEK_SET)
                        direct = False
                if not direct:
                    for part in parts:
                        _write_all(fd, memoryview(part).cast("B"))
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        if self.fsync:
            # The rename is only durable once the directory entry is on disk.
            dfd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def get(self, key: str) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            with open(self._path(key), "rb", buffering=0) as f:
                return os.pread(f.fileno(), length, offset)
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    def get_range_view(self, key: str, offset: int, length: int) -> memoryview:
        """Large ranges are read with O_DIRECT into the thread's read buffer.

        Packs are written around the page cache, so a restore reads them from the device
        anyway; reading into new page-cache pages first costs what writing into them does
        (see direct_io), and backup data would evict the application's cached pages.
        """
        if not self.direct_writes or length < DIRECT_WRITE_MIN:
            return memoryview(self.get_range(key, offset, length))
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | _O_DIRECT)
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            return memoryview(self.get_range(key, offset, length))
        try:
            return read_direct(fd, offset, length)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            return memoryview(self.get_range(key, offset, length))
        finally:
            os.close(fd)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # Walk only the deepest directory the prefix names, then filter by the rest.
        if "/" in prefix:
            base = prefix.rsplit("/", 1)[0]
            start = os.path.join(self.root, *base.split("/"))
        else:
            start = self.root
        stack = [start]
        while stack:
            directory = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                if entry.name.startswith(self.TMP_MARK):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                    continue
                key = os.path.relpath(entry.path, self.root).replace(os.sep, "/")
                if key.startswith(prefix):
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    yield ObjectInfo(key, st.st_size, st.st_mtime)

    def delete(self, key: str) -> None:
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass

    def delete_many(self, keys: Iterable[str]) -> int:
        # A local unlink is one system call; there is nothing to batch.
        count = 0
        for key in keys:
            self.delete(key)
            count += 1
        return count

    def exists(self, key: str) -> bool:
        return os.path.isfile(self._path(key))


class S3Backend(Backend):
    """A bank under ``prefix`` in an S3 bucket (any S3-compatible endpoint).

    A single PUT is atomic in S3, so no temp objects are needed.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: Optional[str] = None,
        access_key: Optional[str] = None,
        secret_key: Optional[str] = None,
        region: Optional[str] = None,
        max_connections: int = 16,
        create_bucket: bool = False,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        self._client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name=region or "us-east-1",
            config=Config(
                max_pool_connections=max_connections,
                retries={"max_attempts": 5, "mode": "standard"},
                # Checksums over a 16 MiB body cost a full extra pass; AEAD tags already protect data.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
        if create_bucket:
            try:
                self._client.head_bucket(Bucket=bucket)
            except Exception:
                self._client.create_bucket(Bucket=bucket)

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" + (f" at {self.endpoint_url}" if self.endpoint_url else "")

    def _key(self, key: str) -> str:
        _check_key(key)
        return self.prefix + key

    @staticmethod
    def _is_missing(exc: Exception) -> bool:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        return code in ("NoSuchKey", "404", "NotFound")

    def put(self, key: str, data: Data) -> None:
        parts = _parts(data)
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=bytes(body))

    def get(self, key: str) -> bytes:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except Exception as exc:
            if self._is_missing(exc):
                raise ObjectNotFound(key) from None
            raise

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        try:
            resp = self._client.get_object(
                Bucket=self.bucket, Key=self._key(key), Range=f"bytes={offset}-{offset + length - 1}"
            )
            return resp["Body"].read()
        except Exception as exc:
            if self._is_missing(exc):
                raise ObjectNotFound(key) from None
            if "InvalidRange" in str(exc):
                return b""
            raise

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for obj in page.get("Contents", []):
                modified = obj["LastModified"]
                if isinstance(modified, _dt.datetime):
                    mtime = modified.timestamp()
                else:
                    mtime = float(modified)
                yield ObjectInfo(obj["Key"][len(self.prefix):], int(obj["Size"]), mtime)

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def delete_many(self, keys: Iterable[str]) -> int:
        # One DeleteObjects request per 1000 keys (S3's limit) instead of one request per key.
        count = 0
        batch: List[str] = []
        for key in keys:
            batch.append(self._key(key))
            count += 1
            if len(batch) == S3_DELETE_BATCH:
                self._delete_batch(batch)
                batch = []
        if batch:
            self._delete_batch(batch)
        return count

    def _delete_batch(self, keys: List[str]) -> None:
        response = self._client.delete_objects(
            Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True}
        )
        failed = [error for error in response.get("Errors", []) if error.get("Code") != "NoSuchKey"]
        if failed:
            first = failed[0]
            raise BackendError(
                f"could not delete {len(failed)} object(s) from {self.describe()}, first "
                f"{first.get('Key', '')[len(self.prefix):]!r}: {first.get('Code')} {first.get('Message', '')}".rstrip()
            )

    def exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except Exception as exc:
            if self._is_missing(exc):
                return False
            raise

