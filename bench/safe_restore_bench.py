#!/usr/bin/env python3
"""What writing a restored tree through directory descriptors costs, against plain paths.

    .venv/bin/python bench/safe_restore_bench.py [--dirs 200] [--files 100] [--rounds 5] [--workdir /dev/shm]

Both writers create the same tree (``dirs`` directories each holding a ``sub`` directory
with ``files`` small files, then directory modes deepest first): ``safe_fs.TreeRestorer``
(every component opened ``O_NOFOLLOW|O_DIRECTORY`` relative to its parent, entries created
with ``dir_fd=``) and a path-based writer like the one it replaced (``lstat`` + ``open`` of
the joined path, ``O_NOFOLLOW`` on the last component only). Rounds alternate; the last line
is ``median seconds: fd=X path=Y overhead=Z%``. On tmpfs it shows the system-call and Python
cost alone; on a disk the file system's own cost hides it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import stat
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from protection.bank.manifest import TYPE_DIR, TYPE_FILE, Item  # noqa: E402
from protection.bank.safe_fs import TreeRestorer, safe_parts  # noqa: E402

DIR_ITEM = Item(path="d", type=TYPE_DIR, mode=0o40755)
FILE_ITEM = Item(path="f", type=TYPE_FILE, mode=0o100644, size=10)


class PathRestorer:
    """The path-based writer safe_fs replaced (protection/bank/reader.py before it): parents lstat-checked
    once and remembered, files opened by their joined path with O_NOFOLLOW on the last component only."""

    def __init__(self, dest: str) -> None:
        self.dest = os.path.abspath(dest)
        os.makedirs(self.dest, exist_ok=True)
        self.safe_dirs = {self.dest}
        self.dir_meta: list[tuple[str, Item]] = []

    def _ensure_dir(self, path: str) -> None:
        if path in self.safe_dirs:
            return
        self._ensure_dir(os.path.dirname(path))
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            os.mkdir(path, 0o700)
        else:
            if not stat.S_ISDIR(st.st_mode):
                raise OSError(f"{path} is not a directory")
        self.safe_dirs.add(path)

    def _target(self, stored: str) -> str:
        path = os.path.join(self.dest, *safe_parts(stored))
        self._ensure_dir(os.path.dirname(path))
        return path

    def make_dir(self, stored: str, item: Item) -> None:
        path = self._target(stored)
        self._ensure_dir(path)
        self.dir_meta.append((path, item))

    def open_file(self, stored: str) -> int:
        path = self._target(stored)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            pass
        else:
            if stat.S_ISDIR(st.st_mode):
                raise OSError(f"{path} is a directory")
            os.unlink(path)
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)

    def close_file(self, fd: int, item: Item) -> None:
        try:
            os.ftruncate(fd, item.size)
            os.fchmod(fd, stat.S_IMODE(item.mode))
        finally:
            os.close(fd)

    def finish(self) -> None:
        for path, item in reversed(self.dir_meta):
            os.chmod(path, stat.S_IMODE(item.mode), follow_symlinks=False)


def write_tree(writer_class, dest: str, dirs: int, files: int) -> float:
    started = time.perf_counter()
    writer = writer_class(dest)
    for d in range(dirs):
        writer.make_dir(f"d{d:04}", DIR_ITEM)
        writer.make_dir(f"d{d:04}/sub", DIR_ITEM)
        for f in range(files):
            fd = writer.open_file(f"d{d:04}/sub/f{f}.txt")
            os.write(fd, b"0123456789")
            writer.close_file(fd, FILE_ITEM)
    writer.finish()
    elapsed = time.perf_counter() - started
    shutil.rmtree(dest)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dirs", type=int, default=200)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workdir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="safe-restore-bench-", dir=args.workdir)
    try:
        timings: dict[str, list[float]] = {"fd": [], "path": []}
        for round_number in range(args.rounds):
            order = [("fd", TreeRestorer), ("path", PathRestorer)]
            for name, writer_class in order if round_number % 2 == 0 else reversed(order):
                timings[name].append(write_tree(writer_class, os.path.join(work, name), args.dirs, args.files))
            print(f"round {round_number + 1}: fd={timings['fd'][-1]:.3f}s path={timings['path'][-1]:.3f}s")
        fd_median, path_median = statistics.median(timings["fd"]), statistics.median(timings["path"])
        print(f"{args.dirs * (args.files + 2)} entries per round in {work}")
        print(f"median seconds: fd={fd_median:.3f} path={path_median:.3f} "
              f"overhead={100 * (fd_median / path_median - 1):.1f}%")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
