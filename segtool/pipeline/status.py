"""`segtool status`: every artifact in a run directory, its status, whether it is stale, and whether
its recorded files are all there with their recorded sizes."""

from __future__ import annotations

from segtool.artifacts.manifest import RunDir
from segtool.config.stages import STAGE_ORDER
from segtool.errors import ArtifactError, SegtoolError
from segtool.pipeline.registry import stage_module


def expected_ids(cfg) -> dict[str, str]:
    """stage -> id the current config would produce (or an explanation when it cannot be planned)."""
    out = {}
    for stage in STAGE_ORDER:
        try:
            out[stage] = stage_module(stage).plan(cfg).art_id
        except SegtoolError as err:
            out[stage] = f"cannot plan: {err.message}"
    return out


def status_rows(rundir: RunDir, cfg) -> list[dict]:
    manifest = rundir.read()
    expected = expected_ids(cfg) if cfg is not None else {}
    rows = []
    for art_id, rec in sorted(manifest["artifacts"].items(), key=lambda kv: kv[1]["created_at"]):
        want = expected.get(rec["stage"])
        if want is None:
            stale = "unknown"
        elif want.startswith("cannot plan"):
            stale = want
        else:
            stale = "no" if want == art_id else "yes"
        rows.append(
            {
                "stage": rec["stage"],
                "id": art_id,
                "status": rec["status"],
                "head": manifest["heads"].get(rec["stage"]) == art_id,
                "stale": stale,
                "rows": rec["rows"],
                "dir": rec["dir"],
                "files": len(rec["files"]),
                "file_check": file_check(rundir, rec),
                "created_at": rec["created_at"],
                "seconds": rec["timings"].get("seconds"),
            }
        )
    return rows


def file_check(rundir: RunDir, record: dict) -> dict:
    """Presence and size of every recorded file (sha256 is checked by the stages that read them)."""
    missing, wrong_size = [], []
    for name, problem in rundir.damaged_files(record, hashes=False):
        if problem == "missing":
            missing.append(name)
        else:
            size = rundir.path_of(record, name).stat().st_size
            wrong_size.append({"file": name, "size": size, "recorded_size": record["files"][name]["size"]})
    return {"ok": not missing and not wrong_size, "recorded": len(record["files"]), "missing": missing,
            "wrong_size": wrong_size}


def damage_error(rundir: RunDir, rows: list[dict]) -> ArtifactError | None:
    """One error for every missing or wrong-size file of the rows (None when all are intact)."""
    bad = [r for r in rows if not r["file_check"]["ok"]]
    if not bad:
        return None
    first = bad[0]
    check = first["file_check"]
    name = check["missing"][0] if check["missing"] else check["wrong_size"][0]["file"]
    path = rundir.path_of(first, name)
    count = sum(len(r["file_check"]["missing"]) + len(r["file_check"]["wrong_size"]) for r in bad)
    return ArtifactError(
        f"{_count(count, 'file')} recorded in {rundir.manifest_path} missing or of the wrong size "
        f"({_count(len(bad), 'artifact')}); first: {path} ({'missing' if check['missing'] else 'wrong size'})",
        f"restore them, or rebuild each affected artifact with --force (e.g. `segtool {first['stage']} "
        f"--workdir {rundir.root} --force`); `segtool status --json` lists every file",
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
