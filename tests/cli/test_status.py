"""`segtool status` checks that every recorded file is there with its recorded size."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from segtool.artifacts.files import atomic_write_text
from segtool.artifacts.manifest import RunDir
from segtool.config.loader import config_to_dict, load_config

SHARDS = ("part-00000.parquet", "part-00001.parquet")


@pytest.fixture
def workdir(tmp_path):
    """A run directory with one complete segment artifact of two small files."""
    cfg, _ = load_config(preset="tiny", workdir=str(tmp_path / "run"))
    rundir = RunDir(cfg.run.workdir)
    rec = rundir.begin("segment", "a" * 64, config=config_to_dict(cfg), identity_config={}, parents=[],
                       schema_version=1, inputs={}, resume=False)
    for name in SHARDS:
        atomic_write_text(rundir.path_of(rec, name), "0123456789")
        rundir.add_file(rec["id"], name)
    rundir.complete(rec["id"], rows={"pairs": 2}, metrics={}, seconds=0.0)
    return tmp_path / "run"


def status(workdir, *extra):
    return subprocess.run([sys.executable, "-m", "segtool", "status", "--workdir", str(workdir), *extra],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})


def test_intact_run_directory(workdir):
    proc = status(workdir, "--json")
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)["artifacts"]
    assert row["file_check"] == {"ok": True, "recorded": 2, "missing": [], "wrong_size": []}


def test_deleted_artifacts_folder_exits_1_naming_the_missing_files(workdir):
    shutil.rmtree(workdir / "artifacts")
    proc = status(workdir, "--json")
    assert proc.returncode == 1
    (row,) = json.loads(proc.stdout)["artifacts"]
    assert row["status"] == "complete"
    assert row["file_check"] == {"ok": False, "recorded": 2, "missing": list(SHARDS), "wrong_size": []}
    error, hint = proc.stderr.splitlines()
    assert error == (f"error: 2 files recorded in {workdir / 'manifest.json'} missing or of the wrong size (1 artifact); "
                     f"first: {workdir / 'artifacts' / ('segment-' + 'a' * 12) / SHARDS[0]} (missing)")
    assert hint.startswith(f"hint: restore them, or rebuild each affected artifact with --force (e.g. `segtool segment --workdir {workdir} --force`)")


def test_wrong_size_is_shown_in_the_table_and_exits_1(workdir):
    (workdir / "artifacts" / ("segment-" + "a" * 12) / SHARDS[1]).write_text("01234")
    proc = status(workdir)
    assert proc.returncode == 1
    assert "1 wrong size" in proc.stdout
    assert f"wrong size: {SHARDS[1]} (5 bytes, recorded 10)" in proc.stdout
    assert proc.stderr.splitlines()[0].endswith(f"first: {workdir / 'artifacts' / ('segment-' + 'a' * 12) / SHARDS[1]} (wrong size)")
