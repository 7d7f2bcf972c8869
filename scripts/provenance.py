"""Provenance for the course's tooling: file hashes and paths as written into reports and manifests.

No lesson needs these; the scripts (train, evaluate, benchmark, ship_weights) record where their
numbers come from with them.
"""

from __future__ import annotations

import hashlib
import json
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


def training_record(weights) -> dict | None:
    """How ``weights`` was trained, from the files the project writes: ``{"context": bool, "source": str}``.

    Looks for run.json beside the file (scripts/train.py writes one per run), then for the
    file's sha256 in weights/MANIFEST.json: a file the manifest marks ``"run": "unconditional"``
    was made by the run recorded under its ``unconditional`` key, any other by the run at its top
    level. None when neither says.
    """
    weights = Path(weights)
    run = weights.parent / "run.json"
    manifest = REPO_ROOT / "weights" / "MANIFEST.json"
    try:
        if run.exists():
            return {"context": bool(json.loads(run.read_text())["config"]["context"]), "source": str(run)}
        if manifest.exists() and weights.exists():
            info = json.loads(manifest.read_text())
            digest = file_sha256(weights)
            for f in info["files"].values():
                if f.get("sha256") == digest:
                    made_by = info["unconditional"] if f.get("run") == "unconditional" else info
                    return {"context": bool(made_by["config"]["context"]), "source": str(manifest)}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None
