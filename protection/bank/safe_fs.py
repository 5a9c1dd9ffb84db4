"""Writing a restored tree without ever following a symbolic link (``openat``-style).

Every directory is opened relative to its parent's descriptor with ``O_NOFOLLOW |
O_DIRECTORY``, from ``/`` down to the destination and on below it, and every file, link and
directory is created relative to such a descriptor (``dir_fd=``). A directory swapped for a
symbolic link while a restore runs therefore cannot redirect a write: a descriptor already
open keeps pointing at the directory it was opened on, and opening a symlink fails (``ELOOP``
/ ``ENOTDIR``), which stops the restore with the path named. Path-based calls with
``O_NOFOLLOW`` only protect the last component; this protects every one.

:class:`TreeRestorer` is thread-safe: restore workers may create and finish files at once.
"""
from __future__ import annotations

import errno
import os
import stat as stat_mod
import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

from . import direct_io
from .errors import BankError
from .manifest import TYPE_FILE, Item

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Directory descriptors kept open between uses; beyond this, unused ones are closed, oldest
# opened first (a restore walks depth-first, so those are the ones it is done with).
MAX_CACHED_DIRS = 256


def safe_parts(path: str) -> List[str]:
    """The components of a stored item name; BankError for absolute, empty, ``.``/``..`` or NUL names."""
    parts = path.split("/")
    if not path or "\x00" in path or "" in parts or "." in parts or ".." in parts:  # "" also: a leading "/"
        raise BankError(f"refusing unsafe path {path!r} in checkpoint")
    return parts


def _not_a_directory(shown: str) -> BankError:
    return BankError(f"refusing to write through {shown!r}: it is not a directory (symlink?)")


def open_child_directory(parent_fd: int, name: str, *, shown: str, create: bool, mode: int = 0o700) -> int:
    """Open (creating it when asked) directory ``name`` below ``parent_fd``, never through a symlink."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except FileNotFoundError:
        if not create:
            raise
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _not_a_directory(shown) from None
        raise
    try:
        os.mkdir(name, mode, dir_fd=parent_fd)
    except FileExistsError:
        pass  # created meanwhile (another worker, or anyone): opened below, refused if not a directory
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _not_a_directory(shown) from None
        raise


def open_directory(path: str, *, create: bool = False, mode: int = 0o777) -> int:
    """A descriptor of absolute ``path``, opened component by component without following any symlink.

    Missing components are created with ``mode`` (less the umask) when ``create`` is true.
    The caller closes the descriptor.
    """
    if not os.path.isabs(path) or "\x00" in path:
        raise BankError(f"refusing to restore into {path!r}: not an absolute path")
    parts = [part for part in path.split("/") if part]
    if any(part in (".", "..") for part in parts):
        raise BankError(f"refusing to restore into {path!r}: it contains '.' or '..'")
    fd = os.open("/", _DIR_FLAGS)
    walked = ""
    try:
        for part in parts:
            walked = f"{walked}/{part}"
            child = open_child_directory(fd, part, shown=walked, create=create, mode=mode)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


@dataclass
class RestoreReport:
    """What a restore did."""

    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes: int = 0
    warnings: List[str] = field(default_factory=list)


def _close_all(fds: Dict[str, int]) -> None:
    for fd in fds.values():
        try:
            os.close(fd)
        except OSError:
            pass
    fds.clear()


class TreeRestorer:
    """Create files, dirs and links under ``dest`` through directory descriptors (see the module doc).

    ``dest`` is created when missing; none of its components may be a symbolic link (resolve
    an operator-given path with ``os.path.realpath`` first). Interior directories are created
    0700 and get their recorded mode in :meth:`finish`, deepest first.
    """

    def __init__(self, dest: str, direct: Optional[bool] = None, *, root_fd: Optional[int] = None) -> None:
        self.dest = os.path.abspath(dest)
        # Large files are written with O_DIRECT where the file system takes it (see direct_io);
        # None: as BANK_RESTORE_DIRECT says (default on), decided by a probe at the first large file.
        self._direct = direct if direct is not None else os.environ.get("BANK_RESTORE_DIRECT", "1") != "0"
        self._direct_probed = direct is not None
        self._umask = _current_umask()
        self.as_root = hasattr(os, "geteuid") and os.geteuid() == 0
        self._euid, self._egid = (os.geteuid(), os.getegid()) if self.as_root else (-1, -1)
        self.report = RestoreReport()
        self.dir_meta: List[Tuple[str, Item]] = []
        self._lock = threading.RLock()
        # Relative directory ("" is dest) → open descriptor; _refs counts the users of each, and
        # only unused ones are closed, so a descriptor number is never reused under a user.
        self._fds: Dict[str, int] = {}
        self._refs: Dict[str, int] = {}
        # root_fd: the destination, already opened safely (by the restorer this one works for).
        self._fds[""] = root_fd if root_fd is not None else open_directory(self.dest, create=True)
        # Directories whose new files take the directory's group (set-group-ID): there a file's
        # recorded group must be set even when it is ours.
        self._group_from_dir: Dict[str, bool] = {"": _sets_group(self._fds[""])}
        self._closer = weakref.finalize(self, _close_all, self._fds)

    def for_worker_process(self) -> "TreeRestorer":
        """A restorer for a forked worker process: the same destination descriptor (a duplicate), settings and probe."""
        with self._lock:
            twin = TreeRestorer(self.dest, root_fd=os.dup(self._fds[""]))
        twin._direct, twin._direct_probed = self._direct, self._direct_probed
        return twin

    # --- directory descriptors ------------------------------------------------------------
    def _acquire(self, rel: str) -> int:
        with self._lock:
            fd = self._fds.get(rel)
            if fd is not None:
                self._refs[rel] = self._refs.get(rel, 0) + 1
                return fd
            parent_rel, _, name = rel.rpartition("/")
            parent = self._acquire(parent_rel)
            try:
                fd = open_child_directory(parent, name, shown=os.path.join(self.dest, rel), create=True)
            finally:
                self._release(parent_rel)
            self._fds[rel] = fd
            if rel not in self._group_from_dir:
                self._group_from_dir[rel] = _sets_group(fd)
            self._refs[rel] = self._refs.get(rel, 0) + 1
            return fd

    def _release(self, rel: str) -> None:
        with self._lock:
            left = self._refs[rel] - 1
            if left:
                self._refs[rel] = left
            else:
                del self._refs[rel]
            if len(self._fds) > MAX_CACHED_DIRS:
                for victim in [key for key in self._fds if key and key not in self._refs]:
                    os.close(self._fds.pop(victim))
                    if len(self._fds) <= MAX_CACHED_DIRS // 2:
                        break

    @contextmanager
    def _parent_of(self, stored: str) -> Iterator[Tuple[int, str]]:
        parts = safe_parts(stored)
        rel = "/".join(parts[:-1])
        fd = self._acquire(rel)
        try:
            yield fd, parts[-1]
        finally:
            self._release(rel)

    def _clear(self, dir_fd: int, name: str, stored: str) -> None:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat_mod.S_ISDIR(st.st_mode):
            raise BankError(f"cannot restore over existing directory {os.path.join(self.dest, stored)!r}")
        os.unlink(name, dir_fd=dir_fd)

    # --- what the restore writes --------------------------------------------------------------
    def make_dir(self, stored: str, item: Item) -> None:
        rel = "/".join(safe_parts(stored))
        self._acquire(rel)  # creates it, or opens the existing directory (never a symlink)
        self._release(rel)
        with self._lock:
            self.dir_meta.append((rel, item))
            self.report.dirs += 1

    def make_symlink(self, stored: str, item: Item) -> None:
        with self._parent_of(stored) as (dir_fd, name):
            self._clear(dir_fd, name, stored)
            os.symlink(item.target or "", name, dir_fd=dir_fd)
            if self.as_root:
                os.chown(name, item.uid, item.gid, dir_fd=dir_fd, follow_symlinks=False)
            if item.mtime_ns:
                os.utime(name, ns=(item.mtime_ns, item.mtime_ns), dir_fd=dir_fd, follow_symlinks=False)
        with self._lock:
            self.report.symlinks += 1

    def creation_mode(self, item: Item) -> Tuple[int, bool]:
        """The mode to create ``item``'s file with, and whether that is already its final mode.

        It is when the umask keeps the mode whole and it has no set-id or sticky bit (those are
        set after the owner), which saves a chmod per file.
        """
        mode = stat_mod.S_IMODE(item.mode) if item.type == TYPE_FILE else 0o600
        if self._umask is not None and mode & ~0o777 == 0 and mode & self._umask == 0:
            return mode, True
        return 0o600, False

    def open_file(self, stored: str, mode: int = 0o600) -> int:
        """A new, empty file for ``stored`` (what was there is replaced), open for writing."""
        return self._create(stored, 0, mode)

    def open_direct_file(self, stored: str, mode: int = 0o600) -> Optional[int]:
        """Like :meth:`open_file`, with ``O_DIRECT``; None when this destination does not take it."""
        with self._lock:
            if not self._direct_probed:
                self._direct = self._direct and direct_io.probe(self._fds[""])
                self._direct_probed = True
        if not self._direct:
            return None
        try:
            return self._create(stored, direct_io.O_DIRECT, mode)
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # this file system refuses O_DIRECT after all
                return None
            raise

    def _create(self, stored: str, flags: int, mode: int) -> int:
        # The hot path of a restore (once per file): no context manager, one lock round trip each
        # way, and the name is cleared only when creating it finds something there.
        rel, _, name = stored.rpartition("/")
        safe_parts(stored)
        dir_fd = self._acquire(rel)
        try:
            try:
                return os.open(name, _FILE_FLAGS | flags, mode, dir_fd=dir_fd)
            except FileExistsError:
                self._clear(dir_fd, name, stored)
                return os.open(name, _FILE_FLAGS | flags, mode, dir_fd=dir_fd)
        finally:
            self._release(rel)

    def created_with_owner(self, stored: str, item: Item) -> bool:
        """Whether a file just created for ``item`` already has its recorded owner and group (no chown needed)."""
        return (self.as_root and item.uid == self._euid and item.gid == self._egid
                and not self._group_from_dir.get(stored.rpartition("/")[0], True))

    def close_file(self, fd: int, item: Item, *, truncate: bool = True, created_with_mode: bool = False,
                   created_with_owner: bool = False) -> None:
        """Give the written file its size (``truncate``: it may end in a hole), owner, mode and times; close it."""
        try:
            if truncate:
                os.ftruncate(fd, item.size)
            if self.as_root and not created_with_owner:
                os.fchown(fd, item.uid, item.gid)
            if not created_with_mode:
                os.fchmod(fd, stat_mod.S_IMODE(item.mode) if item.type == TYPE_FILE else 0o600)
            if item.mtime_ns:
                os.utime(fd, ns=(item.mtime_ns, item.mtime_ns))
        finally:
            os.close(fd)
        with self._lock:
            self.report.files += 1

    def finish(self) -> None:
        """Set directories' recorded owner, mode and times (deepest first), then close every descriptor."""
        try:
            # Deepest first, so restoring a read-only parent's mode cannot block its children.
            for rel, item in reversed(self.dir_meta):
                fd = self._acquire(rel)
                try:
                    _set_metadata(fd, item, as_root=self.as_root)
                finally:
                    self._release(rel)
        finally:
            self.close()

    def close(self) -> None:
        """Close every directory descriptor (also done when the restorer is garbage-collected)."""
        with self._lock:
            self._closer()


def _sets_group(dir_fd: int) -> bool:
    return bool(os.fstat(dir_fd).st_mode & stat_mod.S_ISGID)


def _current_umask() -> Optional[int]:
    """The process umask, read without changing it (os.umask would, for every thread); None if unknown."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return None


def set_directory_metadata(path: str, item: Item) -> None:
    """Give directory ``path`` the owner (as root), mode and times of ``item``, refusing any symlink on the way."""
    fd = open_directory(path)
    try:
        _set_metadata(fd, item, as_root=hasattr(os, "geteuid") and os.geteuid() == 0)
    finally:
        os.close(fd)


def _set_metadata(fd: int, item: Item, *, as_root: bool) -> None:
    if as_root:
        os.fchown(fd, item.uid, item.gid)
    os.fchmod(fd, stat_mod.S_IMODE(item.mode))
    if item.mtime_ns:
        os.utime(fd, ns=(item.mtime_ns, item.mtime_ns))
