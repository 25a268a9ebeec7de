"""One runner for every stage (``pipeline.stage.Stage``): it holds the run directory's lock, runs the
parent stages first (continuing their partial work), returns a complete artifact of the same
identity as it is (making it the stage's head again), and otherwise hands the stage a Context to
compute in and completes the record afterwards.

Under a data-parallel launcher (torchrun, deepspeed) every rank runs a data-parallel stage and rank
0 alone writes the run directory. A parent of such a stage that is not data-parallel itself is run
by rank 0 alone while the other ranks wait at one barrier, then read its finished record; so nothing
rank 0 runs alone may wait for the other ranks.
"""

from __future__ import annotations

import time

from segtool import distributed
from segtool.artifacts.manifest import RunDir
from segtool.config.loader import config_to_dict
from segtool.pipeline.common import StageResult, already_complete, stage_lock
from segtool.pipeline.registry import definition
from segtool.pipeline.stage import Context, Stage, device_for

_alone = False  # rank 0 is running a stage by itself while the other ranks wait for it


def run_stage(stage: Stage, cfg, *, resume: bool = False, force: bool = False, quiet: bool = False) -> StageResult:
    return _run(stage, cfg, resume, force, quiet, {})


def _run(stage: Stage, cfg, resume: bool, force: bool, quiet: bool, known: dict) -> StageResult:
    """``known``: results of stages the caller has already run for this same config."""
    with stage_lock(cfg.run.workdir, stage.name):
        started = time.perf_counter()
        quiet = quiet or not distributed.is_main()
        if stage.data_parallel and distributed.launched():
            distributed.init(device_for(cfg))
        parents = {}
        for name, parent_cfg in stage.parent_runs(cfg):
            # A parent already run for this same config is handed on, not run again.
            handed = {**known, **parents} if parent_cfg is cfg else {}
            parents[name] = handed[name] if name in handed else _run_parent(stage, name, parent_cfg, quiet, handed)
        rundir = RunDir(cfg.run.workdir)
        plan = stage.plan(cfg)
        config = config_to_dict(cfg)
        done = already_complete(rundir, stage.name, plan.art_id, None if stage.side_artifact else config, force,
                                distributed.is_main())
        if done:
            return done
        ctx = Context(stage, cfg, rundir, plan, config, parents, resume, force, quiet)
        outcome = stage.compute(ctx)
        if ctx.main or not stage.data_parallel:
            rundir.complete(plan.art_id, rows=outcome.rows, metrics=outcome.metrics,
                            seconds=time.perf_counter() - started)
        ctx.sync()
        record = rundir.get(plan.art_id)
        metrics = record["metrics"] if outcome.metrics is None else outcome.metrics
        return StageResult(stage.name, plan.art_id, "resumed" if ctx.resuming else "computed", str(rundir.root), record,
                           metrics)


def _run_parent(stage: Stage, name: str, cfg, quiet: bool, known: dict) -> StageResult:
    global _alone
    parent = definition(name)
    if not (stage.data_parallel and not parent.data_parallel and distributed.launched()) or _alone:
        return _run(parent, cfg, True, False, quiet, known)
    result = None
    if distributed.is_main():
        _alone = True
        try:
            result = _run(parent, cfg, True, False, quiet, known)
        finally:
            _alone = False
    distributed.barrier()
    if result is None:  # the other ranks: rank 0 has just finished it
        result = already_complete(RunDir(cfg.run.workdir), parent.name, parent.plan(cfg).art_id, None, False, False)
    return result
