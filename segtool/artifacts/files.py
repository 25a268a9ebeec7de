"""Atomic writes and content hashes: the only primitives that put bytes on disk."""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from segtool.errors import ArtifactError, SegtoolError

HASH_NAME = "sha256"
_BLOCK = 1 << 20
# Write failures a user fixes (space, quota, permissions), not bugs: errno -> what to do about it.
_THEN = "then re-run (--resume continues a partial stage)"
WRITE_FIXES = {
    errno.ENOSPC: f"free space on that disk, or pass --workdir DIR on another one; {_THEN}",
    errno.EDQUOT: f"free space in your disk quota, or pass --workdir DIR elsewhere; {_THEN}",
    errno.EACCES: f"make that folder writable, or pass --workdir DIR pointing at a writable one; {_THEN}",
    errno.EPERM: f"make that folder writable, or pass --workdir DIR pointing at a writable one; {_THEN}",
    errno.EROFS: f"that file system is read-only: pass --workdir DIR on a writable one; {_THEN}",
}


def file_hash(path: str | Path) -> str:
    """Streamed sha256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _out_of_space(path: Path) -> bool:
    """True when the file system holding ``path`` has (almost) no space left for this user."""
    folder = next((p for p in (path, *path.parents) if p.exists()), None)
    try:
        st = os.statvfs(folder)
    except (OSError, TypeError):
        return False
    free_blocks = st.f_bfree if os.geteuid() == 0 else st.f_bavail  # root may use the reserved blocks
    return free_blocks * st.f_frsize < _BLOCK


@contextmanager
def write_errors(path: str | Path):
    """Turn a failed write of ``path`` for lack of space or permission into an ArtifactError naming it.

    Writers that report a full disk without an errno (safetensors, torch.save) are recognised by
    the file system having no space left when they fail (checked before partial output is removed).
    """
    path = Path(path)
    try:
        yield
    except SegtoolError:
        raise
    except OSError as err:
        if err.errno not in WRITE_FIXES:
            raise
        raise ArtifactError(f"cannot write {path}: {os.strerror(err.errno)}", WRITE_FIXES[err.errno]) from err
    except Exception as err:
        if not _out_of_space(path):
            raise
        raise ArtifactError(f"cannot write {path}: {os.strerror(errno.ENOSPC)}", WRITE_FIXES[errno.ENOSPC]) from err


@contextmanager
def atomic_path(final: str | Path):
    """Yield a temporary path next to ``final``; on success fsync it and rename it over ``final``.

    On any exception the temporary file is removed and ``final`` is untouched, so readers only ever
    see a complete old file or a complete new one. A full disk or a read-only folder is an
    ArtifactError naming ``final``.
    """
    final = Path(final)
    with write_errors(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
        os.close(fd)
    try:
        with write_errors(final):  # inside: a full disk is seen before the temporary file frees it
            yield Path(tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, final)
            fsync_dir(final.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(final: str | Path, text: str) -> None:
    with atomic_path(final) as tmp:
        tmp.write_text(text)


def atomic_write_json(final: str | Path, obj) -> None:
    # Insertion order kept: metrics read back in the order a stage reports them. Strict JSON: a NaN
    # or infinity is a bug to fix (or a value to pass through strict_json), never a bare NaN on disk.
    atomic_write_text(final, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def strict_json(obj):
    """NaN and infinities -> None (an undefined metric), so the object is strict JSON."""
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def stable_hash(obj) -> str:
    """Hash of a JSON-able object, independent of key order."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()
