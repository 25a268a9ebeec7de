"""`segtool status`: every artifact in a run directory, its status, and whether it is stale."""

from __future__ import annotations

from segtool.artifacts.manifest import RunDir
from segtool.errors import SegtoolError
from segtool.pipeline.registry import STAGE_ORDER, stage_module


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
                "files": len(rec["files"]),
                "created_at": rec["created_at"],
                "seconds": rec["timings"].get("seconds"),
            }
        )
    return rows
