"""segtool.artifacts.files: failed writes a user can fix become ArtifactErrors naming the file, and
every JSON file segtool writes is strict JSON."""

from __future__ import annotations

import errno
import json
import os

import pytest

from segtool.artifacts import files
from segtool.artifacts.files import WRITE_FIXES, atomic_path, atomic_write_json, strict_json, write_errors
from segtool.artifacts.manifest import RunDir
from segtool.errors import ArtifactError, InputError


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS])
def test_write_failures_a_user_can_fix_name_the_file(tmp_path, code):
    final = tmp_path / "run" / "part-00000.parquet"
    with pytest.raises(ArtifactError) as exc:
        with atomic_path(final) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(code, os.strerror(code), str(tmp))
    assert exc.value.message == f"cannot write {final}: {os.strerror(code)}"
    assert exc.value.hint == WRITE_FIXES[code] and "--workdir" in exc.value.hint
    assert list(final.parent.iterdir()) == []  # the temporary file is gone, the target never appeared


def test_other_errors_pass_through_unchanged(tmp_path):
    with pytest.raises(OSError) as exc:
        with write_errors(tmp_path / "x"):
            raise OSError(errno.EIO, "I/O error")
    assert exc.value.errno == errno.EIO
    with pytest.raises(InputError):  # segtool's own errors are never relabelled
        with write_errors(tmp_path / "x"):
            raise InputError("bad row", "fix it")


def test_a_writer_without_errno_is_a_full_disk_only_when_the_disk_is_full(tmp_path, monkeypatch):
    # safetensors and torch.save report ENOSPC as their own exception types, without an errno
    class Full:
        f_bfree = f_bavail = 0
        f_frsize = 4096

    with pytest.raises(RuntimeError):  # plenty of space: a bug, left alone
        with write_errors(tmp_path / "model.safetensors"):
            raise RuntimeError("Error while serializing")
    monkeypatch.setattr(files.os, "statvfs", lambda path: Full())
    with pytest.raises(ArtifactError) as exc:
        with write_errors(tmp_path / "model.safetensors"):
            raise RuntimeError("Error while serializing")
    assert exc.value.message == f"cannot write {tmp_path / 'model.safetensors'}: {os.strerror(errno.ENOSPC)}"


def test_the_manifest_lock_of_a_read_only_run_directory(tmp_path, monkeypatch):
    real_open = open

    def read_only_open(path, mode="r", *args, **kwargs):
        if "w" in mode:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", read_only_open)
    rundir = RunDir(tmp_path / "run")
    with pytest.raises(ArtifactError) as exc:
        rundir.set_head("segment", "a" * 64, {})
    assert exc.value.message == f"cannot write {tmp_path / 'run' / '.manifest.lock'}: Read-only file system"


def test_json_files_are_strict_json(tmp_path):
    with pytest.raises(ValueError, match="not JSON compliant"):
        atomic_write_json(tmp_path / "m.json", {"c_ent": float("nan")})
    assert list(tmp_path.iterdir()) == []
    assert strict_json({"a": [1.0, float("nan")], "b": {"c": float("inf")}, "d": "x"}) == {"a": [1.0, None], "b": {"c": None}, "d": "x"}


def test_an_undefined_metric_is_recorded_as_null(tmp_path):
    rundir = RunDir(tmp_path)
    rundir.begin("segment", "a" * 64, config={}, identity_config={}, parents=[], schema_version=1, inputs={}, resume=False)
    rundir.complete("a" * 64, rows={}, metrics={"r2_mean": float("nan"), "points": 3}, seconds=0)
    text = (tmp_path / "manifest.json").read_text()
    assert "NaN" not in text
    assert json.loads(text)["artifacts"]["a" * 64]["metrics"] == {"r2_mean": None, "points": 3}
