"""Content fingerprints of inputs (model folders, data files), so identity never depends on paths.

Hashing a multi-GB model on every run would be slow, so results are cached per (path, size,
mtime) in ~/.cache/segtool/fingerprints.json; the mtime only decides whether to re-hash, it is
never part of the fingerprint itself.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from segtool.artifacts.files import atomic_write_json, file_hash
from segtool.errors import ArtifactError


def cache_file() -> Path:
    return Path(os.environ.get("SEGTOOL_CACHE", Path.home() / ".cache" / "segtool")) / "fingerprints.json"


def _load_cache() -> dict:
    try:
        return json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return {}


def _cached_file_hash(path: Path, cache: dict) -> str:
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    if key not in cache:
        cache[key] = file_hash(path)
    return cache[key]


def fingerprint_path(path: str | Path) -> str:
    """sha256 over a file's bytes, or over (relative name, file hash) of every file in a folder."""
    path = Path(path)
    cache = _load_cache()
    before = len(cache)
    if path.is_dir():
        digest = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
            digest.update(f"{f.relative_to(path).as_posix()}\0{_cached_file_hash(f, cache)}\n".encode())
        result = digest.hexdigest()
    else:
        result = _cached_file_hash(path, cache)
    if len(cache) != before:
        try:
            atomic_write_json(cache_file(), cache)
        except (OSError, ArtifactError):
            pass  # a read-only or full home only costs re-hashing next time
    return result
