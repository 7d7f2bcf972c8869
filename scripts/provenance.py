"""Provenance for the course's tooling: file hashes and paths as written into reports and manifests.

No lesson needs these; the scripts (train, evaluate, benchmark, ship_weights) record where their
numbers come from with them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def file_sha256(path) -> str:
    """The sha256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def repo_path(path) -> str:
    """``path`` as written into reports: relative to the repository when inside it (no local paths)."""
    full = Path(path).resolve()
    return str(full.relative_to(REPO_ROOT)) if full.is_relative_to(REPO_ROOT) else str(path)
