"""On-disk cache of judge calls, keyed by (judge identity, request hash): a rerun, a resumed run or
another run directory never repeats a call that was answered once (paid endpoints).

One small JSON file per call, written atomically (temp file + rename) the moment the answer
arrives, so a killed or interrupted run keeps everything it paid for. Entries are not fsynced: that
would cost two disk flushes per call (seconds per thousand proxy scores) and only protects against
an operating-system crash, after which at worst the last moments' replies are asked again. The
stored record holds the request and the reply, never a key.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from segtool.artifacts.files import stable_hash
from segtool.console import progress
from segtool.eval.judges.base import Completion


def default_cache_dir(configured: str = "") -> Path:
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("SEGTOOL_CACHE", Path.home() / ".cache" / "segtool")) / "judge"


class JudgeCache:
    def __init__(self, root: str | Path, identity: dict):
        self.identity = identity
        self.folder = Path(root) / stable_hash(identity)[:16]
        self.hits = 0  # answers read back from disk
        self.calls = 0  # fresh answers stored (calls actually made)

    def key(self, request: dict) -> str:
        return stable_hash({"judge": self.identity, "request": request})

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, request: dict) -> dict | None:
        path = self._path(self.key(request))
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):  # absent, or damaged: a miss (the fresh answer overwrites it)
            return None
        self.hits += 1
        return stored["reply"]

    def put(self, request: dict, reply: dict) -> None:
        path = self._path(self.key(request))
        path.parent.mkdir(parents=True, exist_ok=True)
        if not (self.folder / "judge.json").exists():
            _write(self.folder / "judge.json", self.identity)
        _write(path, {"judge": self.identity, "request": request, "reply": reply})
        self.calls += 1

    def stats(self) -> dict:
        return {"cache_hits": self.hits, "judge_calls": self.calls}


def _write(path: Path, obj) -> None:
    """Complete or absent, never half-written: a temp file renamed over the target."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, ensure_ascii=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def answer_all(judge, cache: JudgeCache, requests: list, *, progress_label: str = "judging", quiet: bool = False) -> list:
    """Completions for ``requests`` (ChatRequest), from the cache where answered before, else from
    the judge; every fresh answer is cached as soon as it arrives."""
    out: list = [None] * len(requests)
    pending: dict[str, list[int]] = {}  # identical requests are asked once
    for i, req in enumerate(requests):
        hit = cache.get(req.body())
        if hit is not None:
            out[i] = Completion.from_json(hit)
        else:
            pending.setdefault(cache.key(req.body()), []).append(i)
    if not pending:
        return out
    groups = list(pending.values())
    with progress(quiet, len(groups), f"{progress_label} ({judge.label})", unit="calls") as advance:

        def done(k: int, completion) -> None:
            cache.put(requests[groups[k][0]].body(), completion.to_json())
            for i in groups[k]:
                out[i] = completion
            advance(1)

        judge.answer([requests[g[0]] for g in groups], done)
    return out
