"""One writer per run directory: an exclusive ``flock`` on ``DIR/.run.lock`` held for a whole stage.

The kernel drops a flock when the process holding it exits, however it exits (``kill -9``
included), so a crashed run never blocks the next one or its ``--resume``. The lock file names
its holder (pid, host, stage, start time) so that a refused process can say who is using the
directory. Within one process the lock is re-entrant: a stage that runs the earlier stages first
(ppo -> train-rm -> segment) keeps the lock it already holds.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from segtool.artifacts.manifest import _now
from segtool.errors import ArtifactError

LOCK_NAME = ".run.lock"
_OPEN_ATTEMPTS = 50  # a holder that wrote nothing may remove the folder between our mkdir and open
_READ_ATTEMPTS = 20  # a new holder writes its name just after taking the lock


@dataclass
class _Held:
    fd: int
    depth: int
    created_dir: bool


_HELD: dict[Path, _Held] = {}  # resolved run directory -> the lock this process holds on it


@contextmanager
def exclusive(root: str | Path, stage: str):
    """Hold the run directory's lock for the block; raise ArtifactError naming the holder if another
    process has it."""
    key = Path(root).resolve()
    held = _HELD.get(key)
    if held is None:
        held = _HELD[key] = _acquire(key, stage)
    else:
        held.depth += 1
    try:
        yield
    finally:
        held.depth -= 1
        if held.depth == 0:
            del _HELD[key]
            _release(key, held)


def _acquire(root: Path, stage: str) -> _Held:
    created_dir = not root.exists()
    path = root / LOCK_NAME
    for _ in range(_OPEN_ATTEMPTS):
        try:
            root.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            continue
        except OSError as err:
            raise ArtifactError(f"cannot create the lock file {path} ({err.strerror})",
                                "choose a --workdir you can write to") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise _in_use(root, holder) from None
        except OSError as err:
            os.close(fd)
            raise ArtifactError(f"cannot lock {path} ({err.strerror})",
                                "use a --workdir on a local filesystem (some network filesystems do not support flock)") from None
        if _is_current(fd, path):
            _write_holder(fd, stage)
            return _Held(fd, 1, created_dir)
        os.close(fd)  # we locked a file its last holder had just removed: take the new one
    raise ArtifactError(f"could not take the lock {path}: it kept disappearing",
                        "check that nothing else deletes files in the run directory, then try again")


def _release(root: Path, held: _Held) -> None:
    try:
        # Nothing was written (e.g. bad input refused before any artifact): leave no empty run directory.
        if held.created_dir and [p.name for p in root.iterdir()] == [LOCK_NAME]:
            (root / LOCK_NAME).unlink()
            root.rmdir()
    except OSError:
        pass
    finally:
        os.close(held.fd)


def _is_current(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _write_holder(fd: int, stage: str) -> None:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "stage": stage, "since": _now()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)


def _read_holder(fd: int) -> dict | None:
    for _ in range(_READ_ATTEMPTS):
        try:
            info = json.loads(os.pread(fd, 4096, 0))
            if isinstance(info, dict) and {"pid", "host", "stage", "since"} <= set(info):
                return info
        except ValueError:
            pass
        time.sleep(0.05)
    return None


def _in_use(root: Path, holder: dict | None) -> ArtifactError:
    hint = "wait for it to finish or stop it; a stopped run frees the directory (continue its work with --resume)"
    if holder is None:
        return ArtifactError(f"run directory {root} is in use by another segtool process", hint)
    return ArtifactError(
        f"run directory {root} is in use by `segtool {holder['stage']}` "
        f"(pid {holder['pid']} on host {holder['host']}, since {holder['since']})",
        hint,
    )
