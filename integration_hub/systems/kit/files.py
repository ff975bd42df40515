"""What systems that drop files share: which files wait in a landing folder, and their content hash."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def files_in(folder: Path, pattern: str) -> list[Path]:
    """The files in the landing folder matching `pattern`, oldest name first."""
    return sorted(folder.glob(pattern)) if folder.exists() else []


@dataclass
class FileReport:
    """What one load did with each file it looked at."""

    loaded: dict[str, int] = field(default_factory=dict)  # name -> rows
    skipped: list[str] = field(default_factory=list)  # identical re-drops
    changed: list[str] = field(default_factory=list)  # same name, other content: not loaded
