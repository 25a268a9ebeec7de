import json

import pytest

from segtool.artifacts.files import atomic_path, atomic_write_text, stable_hash
from segtool.artifacts.manifest import RunDir, artifact_id
from segtool.errors import ArtifactError


def begin(rundir, art_id="a" * 64, resume=False):
    return rundir.begin("segment", art_id, config={"k": 1}, identity_config={"k": 1}, parents=[],
                        schema_version=1, inputs={}, resume=resume)


def test_lifecycle_partial_then_complete(tmp_path):
    rundir = RunDir(tmp_path / "run")
    rec = begin(rundir)
    assert rec["status"] == "partial" and rundir.head("segment")["id"] == rec["id"]
    atomic_write_text(rundir.path_of(rec, "a.txt"), "hello")
    rundir.add_file(rec["id"], "a.txt", {"rows": 1})
    on_disk = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert on_disk["artifacts"][rec["id"]]["status"] == "partial"
    # sha256("hello") = 2cf24dba...
    assert on_disk["artifacts"][rec["id"]]["files"]["a.txt"]["sha256"].startswith("2cf24dba5fb0a30e")
    done = rundir.complete(rec["id"], rows={"n": 1}, metrics={"m": 2}, seconds=1.5)
    assert done["status"] == "complete" and done["timings"]["seconds"] == 1.5
    rundir.require_head("segment")  # verifies hashes without error


def test_tampered_file_fails_verification_with_clear_message(tmp_path):
    rundir = RunDir(tmp_path)
    rec = begin(rundir)
    atomic_write_text(rundir.path_of(rec, "a.txt"), "hello")
    rundir.add_file(rec["id"], "a.txt")
    rundir.complete(rec["id"], rows={}, metrics={}, seconds=0)
    rundir.path_of(rec, "a.txt").write_text("hellp")  # same size, different bytes
    with pytest.raises(ArtifactError) as err:
        rundir.require_head("segment")
    assert "a.txt" in err.value.message and "does not match the hash" in err.value.message
    assert "--force" in err.value.hint
    rundir.path_of(rec, "a.txt").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        rundir.require_head("segment")


def test_partial_head_is_refused_by_readers(tmp_path):
    rundir = RunDir(tmp_path)
    begin(rundir)
    with pytest.raises(ArtifactError, match="partial") as err:
        rundir.require_head("segment")
    assert "--resume" in err.value.hint


def test_resume_keeps_recorded_files_and_fresh_start_drops_them(tmp_path):
    rundir = RunDir(tmp_path)
    rec = begin(rundir)
    atomic_write_text(rundir.path_of(rec, "a.txt"), "x")
    rundir.add_file(rec["id"], "a.txt")
    assert list(begin(rundir, resume=True)["files"]) == ["a.txt"]
    assert begin(rundir, resume=False)["files"] == {}


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "out.bin"
    final.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.write_text("half-writ")
            raise RuntimeError("killed mid-write")
    assert final.read_text() == "old"  # the old complete file, never a half-written one
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # temp file removed


def test_identity_ignores_key_order_and_parent_order_but_not_values():
    a = artifact_id("segment", {"x": 1, "y": {"b": 2, "a": 1}}, ["p2", "p1"], 1)
    b = artifact_id("segment", {"y": {"a": 1, "b": 2}, "x": 1}, ["p1", "p2"], 1)
    assert a == b
    assert a != artifact_id("segment", {"x": 2, "y": {"a": 1, "b": 2}}, ["p1", "p2"], 1)
    assert a != artifact_id("segment", {"x": 1, "y": {"a": 1, "b": 2}}, ["p1", "p2"], 2)
    assert a != artifact_id("train-rm", {"x": 1, "y": {"a": 1, "b": 2}}, ["p1", "p2"], 1)
    assert stable_hash({"a": 1}) == stable_hash({"a": 1})


def test_corrupt_manifest_is_a_clear_error(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        RunDir(tmp_path).read()
