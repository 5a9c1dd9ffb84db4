"""ChaCha20-Poly1305 through the system's OpenSSL (ctypes), running the bulk of each call without the GIL.

`cryptography`'s AEAD keeps the GIL for the whole call: two threads sealing 1 MiB chunks run no
faster than one (measured: speedup 1.0-1.1; through this module 1.75). In the writer that stalls
the thread that reads and chunks while a sealing thread encrypts, and in a restore the threads
that decrypt stall each other. Here the one large ``EVP_*Update`` call goes through a ``CDLL``
handle, which releases the GIL; the short set-up calls go through a ``PyDLL`` handle, which keeps
it (a GIL hand-off per call would cost more than the call).

Output is byte-identical to ``cryptography``'s ``ChaCha20Poly1305`` (nonce || ciphertext || tag):
the bank format does not change. A self-test against ``cryptography`` runs at load; when the
library is missing, lacks the cipher or disagrees, :data:`AVAILABLE` is False and callers use
``cryptography`` alone.
"""
from __future__ import annotations

import ctypes
import os
import threading
from typing import Optional

NONCE_SIZE = 12
TAG_SIZE = 16
# The EVP calls take an ``int`` length; larger inputs go through ``cryptography``.
MAX_LENGTH = 1 << 30
_CTRL_AEAD_GET_TAG = 0x10
_CTRL_AEAD_SET_TAG = 0x11


def _load_libcrypto():
    import _hashlib  # noqa: F401 - loads the libcrypto Python itself links, so the soname below resolves to it

    for name in ("libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.so", "libcrypto.dylib"):
        try:
            return ctypes.PyDLL(name), ctypes.CDLL(name)
        except OSError:
            continue
    return None


class _Lib:
    def __init__(self, keep_gil: ctypes.PyDLL, drop_gil: ctypes.CDLL) -> None:
        vp, ci, pint = ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)

        def bind(lib, name, restype, argtypes):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = restype, argtypes
            return fn

        self.cipher = bind(keep_gil, "EVP_chacha20_poly1305", vp, [])()
        if not self.cipher:
            raise OSError("libcrypto has no ChaCha20-Poly1305")
        self.ctx_new = bind(keep_gil, "EVP_CIPHER_CTX_new", vp, [])
        self.ctx_free = bind(keep_gil, "EVP_CIPHER_CTX_free", None, [vp])
        self.ctrl = bind(keep_gil, "EVP_CIPHER_CTX_ctrl", ci, [vp, ci, ci, vp])
        self.enc_init = bind(keep_gil, "EVP_EncryptInit_ex", ci, [vp, vp, vp, vp, vp])
        self.dec_init = bind(keep_gil, "EVP_DecryptInit_ex", ci, [vp, vp, vp, vp, vp])
        self.enc_update = bind(keep_gil, "EVP_EncryptUpdate", ci, [vp, vp, pint, vp, ci])
        self.dec_update = bind(keep_gil, "EVP_DecryptUpdate", ci, [vp, vp, pint, vp, ci])
        self.enc_update_bulk = bind(drop_gil, "EVP_EncryptUpdate", ci, [vp, vp, pint, vp, ci])
        self.dec_update_bulk = bind(drop_gil, "EVP_DecryptUpdate", ci, [vp, vp, pint, vp, ci])
        self.enc_final = bind(keep_gil, "EVP_EncryptFinal_ex", ci, [vp, vp, pint])
        self.dec_final = bind(keep_gil, "EVP_DecryptFinal_ex", ci, [vp, vp, pint])


class _PyBuffer(ctypes.Structure):
    _fields_ = [
        ("buf", ctypes.c_void_p), ("obj", ctypes.py_object), ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t), ("readonly", ctypes.c_int), ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p), ("shape", ctypes.c_void_p), ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p), ("internal", ctypes.c_void_p),
    ]


_api = ctypes.pythonapi
_api.PyBytes_FromStringAndSize.restype = ctypes.py_object
_api.PyBytes_FromStringAndSize.argtypes = [ctypes.c_void_p, ctypes.c_ssize_t]
_api.PyBytes_AsString.restype = ctypes.c_void_p
_api.PyBytes_AsString.argtypes = [ctypes.py_object]
_api.PyObject_GetBuffer.restype = ctypes.c_int
_api.PyObject_GetBuffer.argtypes = [ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int]
_api.PyBuffer_Release.restype = None
_api.PyBuffer_Release.argtypes = [ctypes.POINTER(_PyBuffer)]


def _address(data) -> int:
    """Address of a contiguous buffer's bytes; the caller keeps ``data`` alive while it is used."""
    if type(data) is bytes:
        return _api.PyBytes_AsString(data)
    view = _PyBuffer()
    _api.PyObject_GetBuffer(data, ctypes.byref(view), 0)  # PyBUF_SIMPLE: raises unless C-contiguous
    try:
        return view.buf
    finally:
        _api.PyBuffer_Release(ctypes.byref(view))


def _new_bytes(size: int):
    """An uninitialised bytes object (filled below before anyone else sees it), returned with its address."""
    out = _api.PyBytes_FromStringAndSize(None, size)
    return out, _api.PyBytes_AsString(out)


class _Context:
    """One EVP context; freed when its thread ends (the thread-local slot holding it goes away)."""

    def __init__(self, lib: _Lib, decrypt: bool) -> None:
        self._free = lib.ctx_free
        self.ptr = lib.ctx_new()
        if not self.ptr:
            raise MemoryError("EVP_CIPHER_CTX_new failed")
        if (lib.dec_init if decrypt else lib.enc_init)(self.ptr, lib.cipher, None, None, None) != 1:
            raise OSError("EVP cipher init failed")

    def __del__(self) -> None:
        if getattr(self, "ptr", None):
            self._free(self.ptr)
            self.ptr = None


_lib: Optional[_Lib] = None
_contexts = threading.local()


def _ctx(decrypt: bool) -> int:
    name = "dec" if decrypt else "enc"
    ctx = getattr(_contexts, name, None)
    if ctx is None:
        ctx = _Context(_lib, decrypt)
        setattr(_contexts, name, ctx)
    return ctx.ptr


def seal(key: bytes, nonce: bytes, flag: bytes, payload, aad: bytes) -> bytes:
    """Return nonce || ChaCha20-Poly1305(key, nonce, flag || payload, aad) || tag (one-byte ``flag``)."""
    size = len(payload)
    ctx = _ctx(False)
    out, base = _new_bytes(NONCE_SIZE + 1 + size + TAG_SIZE)
    ctypes.memmove(base, nonce, NONCE_SIZE)
    outl = ctypes.c_int()
    ok = (_lib.enc_init(ctx, None, None, key, nonce) == 1
          and _lib.enc_update(ctx, None, ctypes.byref(outl), aad, len(aad)) == 1
          and _lib.enc_update(ctx, base + NONCE_SIZE, ctypes.byref(outl), flag, 1) == 1 and outl.value == 1)
    if ok and size:
        ok = (_lib.enc_update_bulk(ctx, base + NONCE_SIZE + 1, ctypes.byref(outl), _address(payload), size) == 1
              and outl.value == size)
    end = base + NONCE_SIZE + 1 + size
    ok = (ok and _lib.enc_final(ctx, end, ctypes.byref(outl)) == 1 and outl.value == 0
          and _lib.ctrl(ctx, _CTRL_AEAD_GET_TAG, TAG_SIZE, end) == 1)
    if not ok:
        raise OSError("OpenSSL ChaCha20-Poly1305 encryption failed")
    return out


def open_(key: bytes, blob, aad: bytes) -> Optional[bytes]:
    """Decrypt nonce || ciphertext || tag; None when authentication fails."""
    size = len(blob) - NONCE_SIZE - TAG_SIZE
    if size < 0:
        return None
    ctx = _ctx(True)
    base = _address(blob)
    out, dest = _new_bytes(size)
    outl = ctypes.c_int()
    ok = (_lib.dec_init(ctx, None, None, key, base) == 1
          and _lib.dec_update(ctx, None, ctypes.byref(outl), aad, len(aad)) == 1)
    if ok and size:
        ok = _lib.dec_update_bulk(ctx, dest, ctypes.byref(outl), base + NONCE_SIZE, size) == 1 and outl.value == size
    if not ok:
        raise OSError("OpenSSL ChaCha20-Poly1305 decryption failed")
    if _lib.ctrl(ctx, _CTRL_AEAD_SET_TAG, TAG_SIZE, base + NONCE_SIZE + size) != 1:
        raise OSError("OpenSSL ChaCha20-Poly1305: cannot set the tag")
    if _lib.dec_final(ctx, dest + size, ctypes.byref(outl)) != 1:
        return None
    return out


def _self_test() -> bool:
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    key, nonce, aad = bytes(range(32)), bytes(range(100, 112)), b"bank self-test"
    pattern = bytes(range(251)) * 300  # 75 KiB, not a multiple of the 64-byte block
    for size in (0, 1, 63, 64, 65, len(pattern)):
        payload = pattern[:size]
        expected = nonce + ChaCha20Poly1305(key).encrypt(nonce, b"\x01" + payload, aad)
        sealed = seal(key, nonce, b"\x01", memoryview(b"--" + payload)[2:], aad)
        if sealed != expected or open_(key, memoryview(sealed), aad) != b"\x01" + payload:
            return False
        if open_(key, sealed[:-1] + bytes([sealed[-1] ^ 1]), aad) is not None:
            return False
    return True


def _init() -> bool:
    global _lib
    if os.environ.get("BANK_OPENSSL_AEAD", "1") == "0":
        return False
    try:
        handles = _load_libcrypto()
        if handles is None:
            return False
        _lib = _Lib(*handles)
        if _self_test():
            return True
    except (OSError, AttributeError, ImportError, ValueError, TypeError):
        pass
    _lib = None
    return False


AVAILABLE = _init()
