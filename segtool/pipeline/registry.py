"""Stage modules by stage name (imported lazily so the CLI starts fast), and `segtool run`'s loop over them."""

from __future__ import annotations

import importlib

from segtool.config.stages import STAGE_ORDER
from segtool.pipeline.common import exclusive_stage


def stage_module(name: str):
    if name == "eval":  # the proxy-judged benchmark step at the end of `segtool run`
        return importlib.import_module("segtool.pipeline.bench_eval")
    return importlib.import_module(f"segtool.pipeline.{name.replace('-', '_')}")


def definition(name: str):
    """The stage protocol (``pipeline.stage.Stage``) of a stage run before others."""
    return stage_module(name).DEFINITION


def run_stage(name: str, cfg, *, resume: bool, force: bool, quiet: bool):
    module = stage_module(name)
    runner = module.run_proxy if name == "eval" else module.run
    return runner(cfg, resume=resume, force=force, quiet=quiet)


def run_pipeline(cfg, *, force: bool, quiet: bool, on_done=None) -> list:
    """Every stage of ``cfg.run.stages`` (default STAGE_ORDER) in order, continuing partial work.

    The run directory stays locked from the first stage to the last, so no other process can
    slip in between two stages of one `segtool run`. ``on_done(result)`` is called after each stage."""
    @exclusive_stage("run")
    def stages(cfg):
        results = []
        for name in cfg.run.stages or STAGE_ORDER:
            # `run` always continues partial artifacts: that is what makes the whole pipeline resumable.
            results.append(run_stage(name, cfg, resume=True, force=force, quiet=quiet))
            if on_done is not None:
                on_done(results[-1])
        return results

    return stages(cfg)
