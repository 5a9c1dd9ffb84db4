"""Tree builders and comparators shared by the bank tests."""
from __future__ import annotations

import os
import stat

import blake3


def pseudo_random(n: int, seed: str) -> bytes:
    """Incompressible, deterministic bytes (BLAKE3 XOF) — fast and never deduplicated by accident."""
    return blake3.blake3(seed.encode()).digest(length=n)


def text(n: int, seed: str) -> bytes:
    line = f"{seed} alpha beta gamma checkpoint {seed}\n".encode()
    return (line * (n // len(line) + 1))[:n]


def make_tree(root: str, big_mib: int = 3) -> None:
    """A tree with every kind of entry the bank must round-trip."""
    os.makedirs(root)
    os.makedirs(os.path.join(root, "docs", "deep", "er"))
    os.makedirs(os.path.join(root, "empty_dir"))
    os.makedirs(os.path.join(root, "ünïcødé 目录"))
    with open(os.path.join(root, "small.txt"), "wb") as f:
        f.write(b"hello bank\n")
    with open(os.path.join(root, "docs", "deep", "er", "note.md"), "wb") as f:
        f.write(text(20_000, "note"))
    with open(os.path.join(root, "ünïcødé 目录", "файл.bin"), "wb") as f:
        f.write(pseudo_random(70_000, "unicode"))
    with open(os.path.join(root, "big.bin"), "wb") as f:
        f.write(pseudo_random(big_mib * 1024 * 1024, "big"))
    with open(os.path.join(root, "records.csv"), "wb") as f:
        f.write(text(2 * 1024 * 1024, "records"))
    open(os.path.join(root, "empty.dat"), "wb").close()
    with open(os.path.join(root, "sparse.img"), "wb") as f:
        f.seek(3 * 1024 * 1024)
        f.write(b"tail of a sparse file")
        f.truncate(6 * 1024 * 1024)
    os.symlink("small.txt", os.path.join(root, "link_to_small"))
    os.symlink("does/not/exist", os.path.join(root, "dangling"))
    os.symlink("../small.txt", os.path.join(root, "docs", "up_link"))
    script = os.path.join(root, "run.sh")
    with open(script, "wb") as f:
        f.write(b"#!/bin/sh\necho hi\n")
    os.chmod(script, 0o750)
    private = os.path.join(root, "docs", "private.key")
    with open(private, "wb") as f:
        f.write(b"secret")
    os.chmod(private, 0o600)
    os.chmod(os.path.join(root, "docs", "deep"), 0o711)
    # Distinct, old mtimes make a lost mtime visible.
    for n, (dirpath, dirnames, filenames) in enumerate(os.walk(root)):
        for name in filenames + dirnames:
            path = os.path.join(dirpath, name)
            os.utime(path, ns=(1_600_000_000_000_000_000 + n * 1_000_000_007,) * 2, follow_symlinks=False)


def snapshot(root: str, with_dir_mtime: bool = True) -> dict:
    """Everything the bank must preserve, keyed by relative path."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            entry = {"mode": st.st_mode}
            if stat.S_ISLNK(st.st_mode):
                entry["target"] = os.readlink(path)
                entry["mtime"] = st.st_mtime_ns
            elif stat.S_ISREG(st.st_mode):
                entry["mtime"] = st.st_mtime_ns
                with open(path, "rb") as f:
                    entry["hash"] = blake3.blake3(f.read()).hexdigest()
                entry["size"] = st.st_size
            elif with_dir_mtime:
                entry["mtime"] = st.st_mtime_ns
            found[rel] = entry
    return found


def many_files_tree(root: str) -> None:
    """make_tree, plus 12 directories of 40 small files and an empty one each, and files repeating one chunk."""
    make_tree(root, big_mib=1)
    for d in range(12):
        os.makedirs(os.path.join(root, "many", f"d{d}"))
        for n in range(40):
            with open(os.path.join(root, "many", f"d{d}", f"f{n}.txt"), "wb") as f:
                f.write(text(50 + 997 * n, f"{d}-{n}"))
        open(os.path.join(root, "many", f"d{d}", "empty"), "wb").close()
    # One file holding the same chunk many times, and another holding it too.
    block = pseudo_random(40 * 1024, "repeated")
    with open(os.path.join(root, "repeats.bin"), "wb") as f:
        f.write(block * 30)
    with open(os.path.join(root, "repeats-too.bin"), "wb") as f:
        f.write(block * 7)
