"""The stages that exist, in pipeline order (imported lazily so the CLI starts fast)."""

from __future__ import annotations

import importlib

STAGE_ORDER = ("segment", "train-rm", "fit-normalizer", "ppo")  # what `segtool run` runs by default
KNOWN_STAGES = (*STAGE_ORDER, "dpo", "rs", "eval")  # a preset may list any of these in run.stages


def stage_module(name: str):
    if name == "eval":  # the proxy-judged benchmark step at the end of `segtool run`
        return importlib.import_module("segtool.pipeline.bench_eval")
    return importlib.import_module(f"segtool.pipeline.{name.replace('-', '_')}")


def run_stage(name: str, cfg, *, resume: bool, force: bool, quiet: bool):
    module = stage_module(name)
    runner = module.run_proxy if name == "eval" else module.run
    return runner(cfg, resume=resume, force=force, quiet=quiet)
