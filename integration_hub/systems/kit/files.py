"""What systems that drop files share: the entries of a landing folder, whether a file has
settled, reading one safely, its content hash, and what a load did with each file.

Safety, for every folder system:
- entries come from the folder's own listing (`entries`), so a name is never a path: a name
  asked for by run config is checked against that listing (`plain_names`);
- an entry is judged as itself (`lstat`): a symbolic link is never followed, a directory or
  another special file (a pipe would block a reader) is not read (`Entry.problem`);
- a file is read through a descriptor opened without following links, checked to be the
  regular file that was listed and unchanged while it was read (`read_settled`);
- a file modified less than the settle time ago may still be being written: it waits
  (`Entry.settled`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

# Open flags: never through a link (ELOOP instead), never blocking on a pipe named like a file.
_OPEN = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


class NotLoadable(ValueError):
    """A landing entry that cannot be read as a file; the message is the reason."""


class StillChanging(RuntimeError):
    """A landing file that changed since it was listed or while it was read: it is still being written."""


@dataclass(frozen=True)
class Entry:
    """One name in a landing folder and its `lstat` (of the entry itself, never of a link's target)."""

    path: Path
    stat: os.stat_result

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def problem(self) -> str | None:
        """Why this entry is not a file the hub reads, or None for a regular file."""
        mode = self.stat.st_mode
        if stat.S_ISLNK(mode):
            return "a symbolic link, not a file (links are never followed: put the file itself in the folder)"
        if stat.S_ISDIR(mode):
            return "a directory, not a file"
        if not stat.S_ISREG(mode):
            return "not a regular file (a pipe, socket or device)"
        return None

    @property
    def marker(self) -> str:
        """What stands for the content hash of an entry that is not a file: it changes when the
        entry does (another link target, a directory replaced by a file)."""
        if stat.S_ISLNK(self.stat.st_mode):
            try:
                return f"symlink:{os.readlink(self.path)}"
            except OSError:
                return "symlink"
        return f"{stat.filemode(self.stat.st_mode)[0]}:{self.stat.st_ino}"

    def settled(self, seconds: float, now: float | None = None) -> bool:
        """Whether the file was last modified at least `seconds` ago (a write moves its mtime)."""
        return (now if now is not None else time.time()) - self.stat.st_mtime >= seconds


def entries(folder: Path, pattern: str) -> list[Entry]:
    """Every entry of `folder` whose name matches `pattern` (hidden names aside, as a shell glob),
    by name; links, directories and other non-files included, for the caller to judge."""
    if not folder.is_dir():
        return []
    found = []
    with os.scandir(folder) as listing:
        for item in listing:
            if item.name.startswith(".") or not fnmatch.fnmatchcase(item.name, pattern):
                continue
            try:
                found.append(Entry(Path(item.path), item.stat(follow_symlinks=False)))
            except FileNotFoundError:  # removed while the folder was listed
                continue
    return sorted(found, key=lambda e: e.name)


def plain_names(folder: Path, pattern: str, names: list[str]) -> set[str]:
    """`names`, each checked to be the plain name of an entry listed in `folder` (no path, no
    `..`, nothing the listing does not hold); a ValueError names the first that is not."""
    listed = {e.name for e in entries(folder, pattern)}
    for name in names:
        if name not in listed:
            why = (
                "a path, not a file name"
                if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
                else f"not a {pattern} file in the folder"
            )
            raise ValueError(f"files= must name files in the landing folder {folder}: {name!r:.100} is {why}")
    return set(names)


def read_settled(entry: Entry) -> bytes:
    """The whole content of `entry`, if it is still the regular file that was listed.

    NotLoadable when it is not a regular file (a link swapped in after the listing included);
    StillChanging when it changed since it was listed or while it was read.
    """
    try:
        fd = os.open(entry.path, _OPEN)
    except OSError as exc:
        if os.path.islink(entry.path):
            raise NotLoadable(Entry(entry.path, os.lstat(entry.path)).problem) from exc
        raise
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise NotLoadable(Entry(entry.path, before).problem)
        if _version(before) != _version(entry.stat):
            raise StillChanging(entry.name)
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read()
        if _version(os.fstat(fd)) != _version(before) or len(data) != before.st_size:
            raise StillChanging(entry.name)
        return data
    finally:
        os.close(fd)


def open_file(path: Path) -> BinaryIO:
    """A regular file opened for reading without following a link (OSError if `path` is one,
    NotLoadable if it is no regular file)."""
    f = os.fdopen(os.open(path, _OPEN), "rb")
    if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
        f.close()
        raise NotLoadable(f"{path.name} is not a regular file")
    return f


def _version(st: os.stat_result) -> tuple[int, int, int]:
    """Which file, at which size and modification time: another write or a swap changes it."""
    return st.st_ino, st.st_size, st.st_mtime_ns


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256(path: Path) -> str:
    """The SHA-256 of a regular file, read without following a link."""
    hashed = hashlib.sha256()
    with open_file(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            hashed.update(chunk)
    return hashed.hexdigest()


@dataclass
class FileReport:
    """What one load did with each file it looked at."""

    loaded: dict[str, int] = field(default_factory=dict)  # name -> rows (a new file)
    replaced: dict[str, int] = field(default_factory=dict)  # name -> rows (a new version of a loaded file)
    skipped: list[str] = field(default_factory=list)  # identical re-drops of loaded files
    rejected: dict[str, str] = field(default_factory=dict)  # name -> reason (this run)
    still_rejected: list[str] = field(default_factory=list)  # rejected before, unchanged since
    waiting: list[str] = field(default_factory=list)  # modified within the settle time: next run

    def metadata(self) -> dict[str, list[str]]:
        """The report as materialization metadata and audit details."""
        return {
            "files_loaded": sorted(self.loaded),
            "files_replaced": sorted(self.replaced),
            "files_skipped": self.skipped,
            "files_rejected": [f"{name}: {reason}" for name, reason in sorted(self.rejected.items())],
            "files_still_rejected": self.still_rejected,
            "files_waiting": self.waiting,
        }
