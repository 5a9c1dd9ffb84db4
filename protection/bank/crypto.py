"""Keys, chunk ids, compression and authenticated encryption.

Every stored blob (chunk, pack trailer, index, manifest) is *sealed*:

    envelope  = flag(1 byte: 0 raw, 1 zstd) || payload
    encrypted = nonce(12) || ChaCha20-Poly1305(enc_key, nonce, envelope, aad)
    plain bank: chunks are the bare envelope (their id re-hashes them);
                metadata objects get a 16-byte BLAKE3 checksum prefix.

``aad`` binds a chunk blob to its id so a blob moved to another id fails authentication.
Blobs of 64 KiB and more are sealed and opened through :mod:`.openssl_aead` (the same
cipher from the system's OpenSSL, without holding the GIL: ``cryptography`` holds it for the
whole call, so sealing threads stalled each other and the reading thread); smaller ones, where
the ctypes calls would cost more than the cipher, through ``cryptography``.
"""
from __future__ import annotations

import base64
import json
import os
import threading
from dataclasses import dataclass
from typing import Optional

import blake3
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from . import openssl_aead
from .errors import BankError, CorruptionError, WrongPassphraseError

NONCE_SIZE = 12
TAG_SIZE = 16
FLAG_RAW = 0
FLAG_ZSTD = 1
META_CHECKSUM_SIZE = 16
DEFAULT_SCRYPT_N = 2**15
_KEY_AAD = b"protection-bank-key-v1:"
# Unkeyed banks still derive ids through a fixed key so the id function has one shape.
_PLAIN_ID_CONTEXT = "protection bank 2024 plain chunk id"
# From this size on the AEAD runs through OpenSSL without the GIL (below it the ctypes calls cost more).
_GIL_FREE_AEAD_MIN = 64 * 1024


@dataclass(frozen=True)
class MasterKey:
    """The bank's secret material: AEAD key, chunk-id MAC key and chunker seed."""

    enc_key: bytes
    id_key: bytes

    @classmethod
    def generate(cls) -> "MasterKey":
        return cls(os.urandom(32), os.urandom(32))

    @property
    def chunker_seed(self) -> int:
        # A secret gear-table seed hides chunk boundaries, so sizes do not fingerprint known files.
        # pyfastcdc shifts the seed left by one inside a uint64: keep it below 2**63.
        digest = blake3.blake3(self.id_key, derive_key_context="bank chunker seed").digest()[:8]
        return (int.from_bytes(digest, "little") & (2**62 - 1)) | 1


def _kdf(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def seal_key_file(master: MasterKey, passphrase: str, bank_id: str, scrypt_n: int = DEFAULT_SCRYPT_N) -> bytes:
    """Return the key-file bytes: the master key encrypted under an scrypt-derived key."""
    salt = os.urandom(16)
    r, p = 8, 1
    kek = _kdf(passphrase, salt, scrypt_n, r, p)
    nonce = os.urandom(NONCE_SIZE)
    payload = ChaCha20Poly1305(kek).encrypt(nonce, master.enc_key + master.id_key, _KEY_AAD + bank_id.encode())
    doc = {
        "version": 1,
        "kdf": {"name": "scrypt", "n": scrypt_n, "r": r, "p": p, "salt": base64.b64encode(salt).decode()},
        "aead": "chacha20-poly1305",
        "nonce": base64.b64encode(nonce).decode(),
        "data": base64.b64encode(payload).decode(),
    }
    return json.dumps(doc, indent=1).encode()


def open_key_file(data: bytes, passphrase: str, bank_id: str) -> MasterKey:
    """Decrypt a key file; raise WrongPassphraseError when the passphrase (or bank) does not match."""
    try:
        doc = json.loads(data)
        kdf = doc["kdf"]
        salt = base64.b64decode(kdf["salt"])
        nonce = base64.b64decode(doc["nonce"])
        payload = base64.b64decode(doc["data"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BankError(f"key file is unreadable: {exc}") from None
    kek = _kdf(passphrase, salt, int(kdf["n"]), int(kdf["r"]), int(kdf["p"]))
    try:
        raw = ChaCha20Poly1305(kek).decrypt(nonce, payload, _KEY_AAD + bank_id.encode())
    except InvalidTag:
        raise WrongPassphraseError(
            "wrong passphrase: it does not unlock the bank's key file (or the key file belongs to another bank)"
        ) from None
    return MasterKey(raw[:32], raw[32:64])


class Crypto:
    """Chunk ids, sealing and opening of blobs for one bank. Thread-safe."""

    def __init__(self, master: Optional[MasterKey], compression_level: int = 3) -> None:
        self.master = master
        self.encrypted = master is not None
        self.compression_level = compression_level
        self._aead = ChaCha20Poly1305(master.enc_key) if master else None
        self._enc_key = master.enc_key if master else None
        self._gil_free_aead = bool(master) and openssl_aead.AVAILABLE
        self._id_key = master.id_key if master else blake3.blake3(
            b"", derive_key_context=_PLAIN_ID_CONTEXT
        ).digest()
        self._local = threading.local()

    @property
    def chunker_seed(self) -> int:
        return self.master.chunker_seed if self.master else 0

    def chunk_id(self, data) -> bytes:
        """Keyed BLAKE3 of the plaintext (fixed key for a plain bank)."""
        return blake3.blake3(data, key=self._id_key).digest()

    def _compressor(self) -> zstandard.ZstdCompressor:
        # zstd contexts are not safe for concurrent use; one per thread.
        c = getattr(self._local, "c", None)
        if c is None:
            c = self._local.c = zstandard.ZstdCompressor(level=self.compression_level)
        return c

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        d = getattr(self._local, "d", None)
        if d is None:
            d = self._local.d = zstandard.ZstdDecompressor()
        return d

    def _envelope_parts(self, data, compress: bool):
        """(flag byte, payload): the envelope without joining them, which would copy the payload."""
        if compress and len(data) >= 64:
            packed = self._compressor().compress(data)
            # Keep raw when zstd saves less than ~3 %: decompression is the restore bottleneck.
            if len(packed) < len(data) - (len(data) >> 5):
                return b"\x01", packed
        return b"\x00", data

    def _envelope(self, data, compress: bool) -> bytes:
        flag, payload = self._envelope_parts(data, compress)
        return flag + bytes(payload)

    def _unenvelope(self, env: bytes, what: str, as_view: bool = False):
        if not env:
            raise CorruptionError(f"{what}: empty blob")
        if env[0] == FLAG_RAW:
            # A view spares a copy of every incompressible chunk on the restore path.
            return memoryview(env)[1:] if as_view else env[1:]
        if env[0] == FLAG_ZSTD:
            try:
                return self._decompressor().decompress(memoryview(env)[1:])
            except zstandard.ZstdError as exc:
                raise CorruptionError(f"{what}: decompression failed ({exc})") from None
        raise CorruptionError(f"{what}: unknown blob format {env[0]}")

    def _encrypt(self, env: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        return nonce + self._aead.encrypt(nonce, env, aad)

    def _decrypt(self, blob, aad: bytes, what: str) -> bytes:
        if len(blob) < NONCE_SIZE + TAG_SIZE:
            raise CorruptionError(f"{what}: blob too short ({len(blob)} bytes)")
        if self._gil_free_aead and _GIL_FREE_AEAD_MIN <= len(blob) < openssl_aead.MAX_LENGTH:
            env = openssl_aead.open_(self._enc_key, blob, aad)
            if env is None:
                raise CorruptionError(f"{what}: authentication failed (data corrupted or wrong key)")
            return env
        view = memoryview(blob)
        try:
            return self._aead.decrypt(view[:NONCE_SIZE], view[NONCE_SIZE:], aad)
        except InvalidTag:
            raise CorruptionError(f"{what}: authentication failed (data corrupted or wrong key)") from None

    def seal_chunk(self, chunk_id: bytes, data, compress: bool = True) -> bytes:
        """Compress (when it helps) and encrypt one chunk."""
        flag, payload = self._envelope_parts(data, compress)
        if self._gil_free_aead and _GIL_FREE_AEAD_MIN <= len(payload) < openssl_aead.MAX_LENGTH:
            return openssl_aead.seal(self._enc_key, os.urandom(NONCE_SIZE), flag, payload, chunk_id)
        env = flag + bytes(payload)
        return self._encrypt(env, chunk_id) if self._aead else env

    def open_chunk(self, chunk_id: bytes, blob, verify: bool = True, as_view: bool = False):
        """Decrypt, decompress and (by default) re-hash one chunk; raise CorruptionError on any mismatch.

        Returns bytes, or with ``as_view`` a bytes-like object that may be a memoryview.
        """
        what = f"chunk {chunk_id.hex()[:16]}"
        env = self._decrypt(blob, chunk_id, what) if self._aead else (blob if as_view else bytes(blob))
        data = self._unenvelope(env, what, as_view)
        if verify and self.chunk_id(data) != chunk_id:
            raise CorruptionError(f"{what}: content hash mismatch")
        return data

    def seal_meta(self, data: bytes, kind: str) -> bytes:
        """Seal a metadata object (index, manifest, pack trailer) bound to its kind."""
        env = self._envelope(data, True)
        if self._aead:
            return self._encrypt(env, kind.encode())
        return blake3.blake3(env).digest(META_CHECKSUM_SIZE) + env

    def open_meta(self, blob: bytes, kind: str, what: str) -> bytes:
        """Inverse of :meth:`seal_meta`."""
        if self._aead:
            env = self._decrypt(blob, kind.encode(), what)
        else:
            env = bytes(blob[META_CHECKSUM_SIZE:])
            if blake3.blake3(env).digest(META_CHECKSUM_SIZE) != bytes(blob[:META_CHECKSUM_SIZE]):
                raise CorruptionError(f"{what}: checksum mismatch")
        return self._unenvelope(env, what)
