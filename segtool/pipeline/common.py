"""What every stage shares: the result it returns, the up-to-date check and the run-directory lock."""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field

from segtool import distributed
from segtool.artifacts import runlock
from segtool.errors import ConfigError


@dataclass
class StageResult:
    stage: str
    artifact_id: str
    outcome: str  # "computed", "resumed" or "up-to-date"
    workdir: str
    record: dict
    summary: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "stage": self.stage,
            "artifact_id": self.artifact_id,
            "outcome": self.outcome,
            "workdir": self.workdir,
            "status": self.record["status"],
            "rows": self.record["rows"],
            "metrics": self.record["metrics"],
        }


def already_complete(rundir, stage: str, art_id: str, config: dict | None, force: bool, main: bool = True):
    """The StageResult of a complete artifact with this identity (hashes verified), or None.

    Re-running a complete stage is a no-op that says so; it also makes that artifact the stage's
    head again (``config`` None: leave the heads alone, for side artifacts such as evaluations).
    """
    existing = rundir.get(art_id)
    if force or not existing or existing["status"] != "complete":
        return None
    rundir.verify(existing)
    if config is not None and main:
        rundir.set_head(stage, art_id, config)
    return StageResult(stage, art_id, "up-to-date", str(rundir.root), existing, existing["metrics"])


@contextlib.contextmanager
def stage_lock(workdir, stage: str):
    """Hold the run directory's lock for the block, so a second process on the same run directory is
    refused instead of resetting this one's artifact. Under a data-parallel launcher only rank 0
    writes, so only rank 0 locks."""
    if not distributed.is_main():
        yield
        return
    with runlock.exclusive(workdir, stage):
        yield


def exclusive_stage(stage: str):
    """Decorate a stage's ``run(cfg, ...)``: hold ``cfg.run.workdir``'s lock (``stage_lock``) for the
    whole stage."""

    def wrap(run):
        @functools.wraps(run)
        def locked(cfg, *args, **kwargs):
            with stage_lock(cfg.run.workdir, stage):
                return run(cfg, *args, **kwargs)

        return locked

    return wrap


def total_iterations(c, section: str, n_train: int) -> int:
    """Sampling iterations of an on-policy stage (ppo, rs): ``episodes`` passes over the training
    prompts in rollout batches, capped by ``iterations`` when it is set."""
    per_episode = n_train // c.rollout_batch
    if per_episode == 0:
        raise ConfigError(f"{n_train} training prompts do not fill one rollout batch of {c.rollout_batch}",
                          f"lower {section}.rollout_batch (and train_batch) or give more prompts")
    total = per_episode * c.episodes
    return min(total, c.iterations) if c.iterations else total
