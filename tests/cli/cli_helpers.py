"""Running the real command line in a subprocess, and what every user error must look like.

* ``segtool(*args, cwd=...)``: ``python -m segtool ARGS`` with the test's SEGTOOL_CACHE.
* ``segtool(..., fault="read-only" | "full-disk", fault_root=DIR)``: the same, with writes under DIR
  failing as on a read-only file system (EROFS on open/mkdir) or a full disk (ENOSPC when data must
  reach the disk), injected in the subprocess without touching segtool's code.
* ``assert_user_error(proc)``: exit 1, ``error: ...`` then ``hint: ...``, no traceback.
* ``assert_no_artifact(workdir)``: no artifact folder, no ``complete`` record.
* ``tree_state(path)``: every file under ``path`` with its bytes (None when absent), to assert that
  a failed command wrote nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from segtool.artifacts.runlock import LOCK_NAME

TIMEOUT = 120

# Runs in the subprocess before segtool: argv = [-c, kind, root, segtool args...].
_FAULT_PRELUDE = r"""
import builtins, errno, io, os, sys

kind, root = sys.argv[1], os.path.abspath(sys.argv[2])
del sys.argv[1:3]


def _inside(path):
    try:
        return os.path.abspath(os.fsdecode(path)).startswith(root)
    except TypeError:  # a file descriptor
        return False


def _refuse(path):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))


if kind == "read-only":
    _open, _os_open, _mkdir = builtins.open, os.open, os.mkdir

    def _guarded_open(file, mode="r", *args, **kwargs):
        if _inside(file) and any(c in mode for c in "wax+"):
            _refuse(file)
        return _open(file, mode, *args, **kwargs)

    def _guarded_os_open(path, flags, *args, **kwargs):
        if _inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            _refuse(path)
        return _os_open(path, flags, *args, **kwargs)

    def _guarded_mkdir(path, *args, **kwargs):
        if _inside(path):
            _refuse(path)
        return _mkdir(path, *args, **kwargs)

    builtins.open = io.open = _guarded_open
    os.open, os.mkdir = _guarded_os_open, _guarded_mkdir
elif kind == "full-disk":
    _fsync = os.fsync

    def _full_fsync(fd):  # small writes sit in the page cache; a full disk shows when they must reach it
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    os.fsync = _full_fsync
else:
    raise SystemExit(f"unknown fault {kind}")

from segtool.cli.app import main

main()
"""


def segtool(*args, cwd: Path, env_extra: dict | None = None, fault: str | None = None,
            fault_root: Path | None = None) -> subprocess.CompletedProcess:
    # os.environ carries the per-test SEGTOOL_CACHE (and no SEGTOOL_DEBUG) set by the conftest fixture
    env = {**os.environ, **(env_extra or {})}
    assert env["SEGTOOL_CACHE"] != str(Path.home() / ".cache" / "segtool")
    env["COLUMNS"] = "200"  # keep rich/click from wrapping messages
    command = [sys.executable, "-m", "segtool"] if fault is None else [sys.executable, "-c", _FAULT_PRELUDE, fault, str(fault_root)]
    return subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)


def assert_user_error(proc: subprocess.CompletedProcess) -> list[str]:
    """Exit 1, 'error: ...' then 'hint: ...' on stderr, no traceback, nothing on stdout."""
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert any(line.startswith("hint: ") for line in lines), proc.stderr
    assert proc.stdout == ""
    return lines


def assert_no_artifact(workdir: Path) -> None:
    if not workdir.exists():
        return
    assert not (workdir / "artifacts").exists()
    manifest = workdir / "manifest.json"
    if manifest.exists():
        records = json.loads(manifest.read_text()).get("artifacts", {})
        assert all(r.get("status") != "complete" for r in records.values())


def tree_state(path: Path) -> dict[str, bytes] | None:
    """Relative path -> bytes of every file under ``path``; None when ``path`` does not exist.

    The run-directory lock file is left out: a writing command creates it in an existing directory and
    leaves it there by design (removing a flock file races with the next holder); it is no artifact."""
    if not path.exists():
        return None
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.name != LOCK_NAME}


def run_segment(tmp_path: Path, data: Path | str, *extra, env_extra=None):
    workdir = tmp_path / "run"
    proc = segtool("segment", "--preset", "tiny", "--data", str(data), "--workdir", str(workdir), *extra,
                   cwd=tmp_path, env_extra=env_extra)
    return proc, workdir
