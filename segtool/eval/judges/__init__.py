"""Judges for the benchmark evaluations (METHOD §8): ``build`` picks one from ``[eval]``."""

from __future__ import annotations

import dataclasses
import os

from segtool.errors import ConfigError
from segtool.eval.benchmarks import spec
from segtool.eval.judges.cache import JudgeCache, default_cache_dir
from segtool.eval.judges.http import HttpJudge, resolve_api_key, resolve_base_url
from segtool.eval.judges.local import LocalJudge
from segtool.eval.judges.proxy import ProxyJudge
from segtool.models.rm_scoring import resolve_rm_folder

MODEL_VARIABLE = "SEGTOOL_JUDGE_MODEL"


def build(cfg, bench: str, *, api_key: str | None = None, rm: str | None = None):
    """The configured judge for ``bench``: an HttpJudge, a LocalJudge or a ProxyJudge."""
    kind = cfg.eval.judge
    if kind == "proxy":
        folder, parents = resolve_rm_folder(cfg, rm)
        return ProxyJudge(cfg, folder, parents)
    if kind == "hf":
        if not cfg.eval.judge_model:
            raise ConfigError("eval.judge = hf needs a model", "pass --judge-model DIR_OR_HUB_ID (or --set eval.judge_model=...)")
        model_cfg = dataclasses.replace(cfg.model, path=cfg.eval.judge_model, gguf_file="", revision="main")
        return LocalJudge(model_cfg, max_len=cfg.tokenize.max_len, batch_size=cfg.eval.batch_size, seed=cfg.run.seed)

    model = cfg.eval.judge_model or os.environ.get(MODEL_VARIABLE, "") or spec(bench).official_judge
    return HttpJudge(resolve_base_url(cfg.eval.base_url), model, resolve_api_key(api_key), timeout=cfg.eval.timeout,
                     retries=cfg.eval.retries, backoff=cfg.eval.backoff, concurrency=cfg.eval.concurrency)


def cache_for(cfg, judge):
    return JudgeCache(default_cache_dir(cfg.eval.cache_dir), judge.identity)
