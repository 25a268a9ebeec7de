"""The run directory: ``DIR/manifest.json`` plus one folder per artifact under ``DIR/artifacts/``.

Life of an artifact: ``begin`` records it as ``partial``; each file is written atomically and then
recorded with its size and sha256 (``add_file``); ``complete`` flips the status only after every
file is on disk. A process killed at any point leaves a ``partial`` record (or none), never a
``complete`` record over half-written files. Readers call ``verify`` and get a clear error if a file
changed since it was recorded.

Identity = hash(stage, identity config, parent ids, schema version); paths, mtimes, hosts and
versions are metadata only, so the same work in another directory or machine has the same id.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from segtool import __version__
from segtool.artifacts.files import atomic_write_json, file_hash, stable_hash, strict_json, write_errors
from segtool.errors import ArtifactError

MANIFEST_VERSION = 1
RECORD_FIELDS = {"id": str, "stage": str, "status": str, "dir": str, "files": dict}
JSON_KINDS = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number", bool: "true/false"}
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def artifact_id(stage: str, identity_config: dict, parents: list[str], schema_version: int) -> str:
    return stable_hash(
        {"stage": stage, "config": identity_config, "parents": sorted(parents), "schema_version": schema_version}
    )


def git_sha() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class RunDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.manifest_path = self.root / "manifest.json"

    # -- manifest I/O ---------------------------------------------------------------------------
    @contextmanager
    def _locked(self):
        with write_errors(self.root / ".manifest.lock"):
            self.root.mkdir(parents=True, exist_ok=True)
            lock = open(self.root / ".manifest.lock", "w")
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self) -> dict:
        if not self.manifest_path.exists():
            return {"manifest_version": MANIFEST_VERSION, "artifacts": {}, "heads": {}}

        try:
            manifest = json.loads(self.manifest_path.read_text())
        except ValueError as err:
            raise ArtifactError(
                f"{self.manifest_path} is not valid JSON ({err})",
                "restore it from a copy, or start a new --workdir",
            ) from None
        if not isinstance(manifest, dict):
            raise ArtifactError(
                f"{self.manifest_path} holds {JSON_KINDS.get(type(manifest), 'null')}, not a manifest object",
                "restore it from a copy, or start a new --workdir",
            )
        if manifest.get("manifest_version") != MANIFEST_VERSION:
            raise ArtifactError(
                f"{self.manifest_path} has manifest version {manifest.get('manifest_version')!r}, "
                f"this segtool reads version {MANIFEST_VERSION}",
                "use the segtool version that wrote it, or start a new --workdir",
            )
        self._check_shape(manifest)
        return manifest

    def _check_shape(self, manifest: dict) -> None:
        """The fields every reader relies on, so a damaged manifest is named here, not a crash later."""
        problems = [(f"field '{key}'", manifest.get(key), dict) for key in ("artifacts", "heads")
                    if not isinstance(manifest.get(key), dict)]
        for art_id, record in (manifest["artifacts"] if not problems else {}).items():
            if not isinstance(record, dict):
                problems.append((f"artifacts.{art_id}", record, dict))
                continue
            problems += [(f"artifacts.{art_id} field '{key}'", record.get(key), typ)
                         for key, typ in RECORD_FIELDS.items() if not isinstance(record.get(key), typ)]
        if problems:
            where, value, expected = problems[0]
            got = "missing" if value is None else JSON_KINDS.get(type(value), "null")
            raise ArtifactError(
                f"{self.manifest_path}: {where} is {got} (expected {JSON_KINDS[expected]})",
                "restore manifest.json from a copy, or start a new --workdir",
            )

    def _update(self, change) -> dict:
        with self._locked():
            manifest = self.read()
            result = change(manifest)
            atomic_write_json(self.manifest_path, manifest)
            return result

    # -- queries --------------------------------------------------------------------------------
    def get(self, art_id: str) -> dict | None:
        return self.read()["artifacts"].get(art_id)

    def head(self, stage: str) -> dict | None:
        manifest = self.read()
        art_id = manifest["heads"].get(stage)
        return manifest["artifacts"].get(art_id) if art_id else None

    def path_of(self, record: dict, name: str = "") -> Path:
        return self.root / record["dir"] / name

    def require_head(self, stage: str) -> dict:
        record = self.head(stage)
        if record is None:
            raise ArtifactError(
                f"no {stage} artifact in {self.root}",
                f"run `segtool {stage} --workdir {self.root}` first (or `segtool run`)",
            )
        if record["status"] != "complete":
            raise ArtifactError(
                f"the {stage} artifact {record['id'][:12]} in {self.root} is partial",
                f"finish it with `segtool {stage} --workdir {self.root} --resume`",
            )
        self.verify(record)
        return record

    def damaged_files(self, record: dict, names: list[str] | None = None, *, hashes: bool = True):
        """Yield (name, "missing" | "size" | "sha256") for each recorded file that is not as recorded
        (``hashes`` False: presence and size only, which is quick)."""
        for name, meta in record["files"].items():
            if names is not None and name not in names:
                continue
            path = self.path_of(record, name)
            if not path.is_file():
                yield name, "missing"
            elif path.stat().st_size != meta["size"]:
                yield name, "size"
            elif hashes and file_hash(path) != meta["sha256"]:
                yield name, "sha256"

    def verify(self, record: dict, names: list[str] | None = None) -> None:
        """Check sizes and sha256 of the recorded files; raise ArtifactError naming the first bad one."""
        for name, problem in self.damaged_files(record, names):
            path = self.path_of(record, name)
            fix = f"re-run `segtool {record['stage']} --workdir {self.root} --force` to rebuild it"
            if problem == "missing":
                raise ArtifactError(f"{path} is missing (artifact {record['id'][:12]})", fix)
            raise ArtifactError(
                f"{path} does not match the hash recorded in {self.manifest_path}: "
                "the file was changed or damaged after it was written",
                fix,
            )

    # -- writes ---------------------------------------------------------------------------------
    def begin(
        self,
        stage: str,
        art_id: str,
        *,
        config: dict,
        identity_config: dict,
        parents: list[str],
        schema_version: int,
        inputs: dict,
        resume: bool,
        layout: dict | None = None,
    ) -> dict:
        """Open (or, with ``resume``, reopen) a partial record and make it the stage's head.

        ``layout`` describes how work is split into files (e.g. rows per shard); a resumed record
        keeps the layout it was started with, so files already written keep their meaning.
        """

        def change(manifest):
            old = manifest["artifacts"].get(art_id)
            keep_files = resume and old is not None and old["status"] == "partial"
            record = {
                "id": art_id,
                "stage": stage,
                "status": "partial",
                "dir": f"artifacts/{stage}-{art_id[:12]}",
                "files": dict(old["files"]) if keep_files else {},
                "layout": old.get("layout", layout) if keep_files else layout,
                "parents": sorted(parents),
                "config": config,
                "identity_config": identity_config,
                "inputs": inputs,
                "schema_version": schema_version,
                "segtool_version": __version__,
                "git_sha": git_sha(),
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "rows": None,
                "metrics": {},
                "timings": {"started_at": _now()},
                "created_at": old["created_at"] if keep_files else _now(),
            }
            manifest["artifacts"][art_id] = record
            manifest["heads"][stage] = art_id
            manifest["config"] = config
            return record

        record = self._update(change)
        self._remove_strays(record)
        return record

    def _remove_strays(self, record: dict) -> None:
        """Delete files of an interrupted write (temp files, unrecorded shards) in the artifact folder."""
        folder = self.path_of(record)
        if folder.is_dir():
            for path in folder.iterdir():
                if path.is_file() and path.name not in record["files"]:
                    path.unlink()

    def add_file(self, art_id: str, name: str, extra: dict | None = None) -> None:
        """Record a file already written (atomically) into the artifact's folder."""
        record = self.get(art_id)
        path = self.path_of(record, name)
        meta = {"size": path.stat().st_size, "sha256": file_hash(path), **(extra or {})}

        def change(manifest):
            manifest["artifacts"][art_id]["files"][name] = meta

        self._update(change)

    def add_files(self, art_id: str, names: list[str]) -> None:
        """Record several written files in one manifest update: a kill records all of them or none
        (a checkpoint folder must never be listed with some of its files missing)."""
        record = self.get(art_id)
        metas = {}
        for name in names:
            path = self.path_of(record, name)
            metas[name] = {"size": path.stat().st_size, "sha256": file_hash(path)}

        def change(manifest):
            manifest["artifacts"][art_id]["files"].update(metas)

        self._update(change)

    def remove_files(self, art_id: str, names: list[str]) -> None:
        """Forget recorded files (the caller deletes them after this returns)."""

        def change(manifest):
            files = manifest["artifacts"][art_id]["files"]
            for name in names:
                files.pop(name, None)

        self._update(change)

    def complete(self, art_id: str, *, rows: dict, metrics: dict, seconds: float) -> dict:
        def change(manifest):
            record = manifest["artifacts"][art_id]
            record.update(status="complete", rows=rows, metrics=strict_json(metrics))  # undefined -> null
            record["timings"].update(finished_at=_now(), seconds=round(seconds, 3))
            return record

        return self._update(change)

    def set_head(self, stage: str, art_id: str, config: dict) -> None:
        def change(manifest):
            manifest["heads"][stage] = art_id
            manifest["config"] = config

        self._update(change)
