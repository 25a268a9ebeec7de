"""Fixtures for the benchmark-evaluation tests.

* ``scripted_judge``: a chat judge answering from a function, counting calls (no network).
* ``tiny_eval_run``: a run directory for the tiny preset with a ``train-rm`` artifact (an untrained
  reward model built from TinyStories-656K: a valid proxy judge, fast to make) and a ``ppo``
  artifact whose policy is the tiny model with slightly perturbed weights (so its answers differ
  from the SFT model's). Both are recorded through RunDir like the real stages record them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from segtool.eval.judges.base import Completion


class ScriptedJudge:
    """A chat judge whose reply to a request is ``reply(request) -> str | Completion``."""

    proxy = False

    def __init__(self, reply, name: str = "scripted-judge"):
        self.reply, self.name, self.label = reply, name, name
        self.identity = {"kind": "scripted", "model": name}
        self.requests = []

    def answer(self, requests, on_done):
        for k, req in enumerate(requests):
            self.requests.append(req)
            out = self.reply(req)
            on_done(k, out if isinstance(out, Completion) else Completion(out))


@pytest.fixture
def scripted_judge():
    return ScriptedJudge


def _record_folder(rundir, stage: str, art_id: str, cfg_dict: dict, build, name: str, parents=()) -> dict:
    record = rundir.begin(stage, art_id, config=cfg_dict, identity_config={"test": stage}, parents=list(parents),
                          schema_version=1, inputs={}, resume=False)
    build(rundir.path_of(record, name))
    base = rundir.path_of(record)
    for f in sorted(p for p in (base / name).rglob("*") if p.is_file()):
        rundir.add_file(art_id, f.relative_to(base).as_posix())
    return rundir.complete(art_id, rows={}, metrics={}, seconds=0.0)


@pytest.fixture(scope="session")
def tiny_eval_run(tmp_path_factory, tiny_model_dir):
    """(config, run directory path) with train-rm and ppo artifacts."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from segtool.artifacts.manifest import RunDir
    from segtool.config.loader import config_to_dict, load_config
    from segtool.models.loading import resolve_model_source
    from segtool.models.reward import build_from_causal_lm, save_reward_model

    workdir = tmp_path_factory.mktemp("eval-run") / "run"
    cfg, _ = load_config(preset="tiny", workdir=str(workdir))
    cfg_dict = config_to_dict(cfg)
    rundir = RunDir(workdir)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))

    def build_rm(folder: Path):
        lm = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
        rm = build_from_causal_lm(lm, tokenizer.pad_token_id or 0, attention=False, seed=0)
        meta = {"segment_artifact": "test", "sft_model": resolve_model_source(cfg.model).fingerprint(),
                "strategy": "entropy", "c_ent": cfg.segment.c_ent, "n": 5, "eos_in_last_segment": False,
                "readout": "end", "aggregation": "avg", "template": "plain",
                "max_len": cfg.tokenize.max_len, "max_prompt_len": cfg.tokenize.max_prompt_len}
        save_reward_model(rm, tokenizer, folder, meta)

    def build_policy(folder: Path):
        shutil.copytree(tiny_model_dir, folder)
        lm = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in lm.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.02)
        lm.save_pretrained(folder)

    rm = _record_folder(rundir, "train-rm", "a" * 64, cfg_dict, build_rm, "model")
    _record_folder(rundir, "ppo", "b" * 64, cfg_dict, build_policy, "policy", parents=[rm["id"]])
    return cfg, workdir


@pytest.fixture
def segtool_cli(capfd, monkeypatch):
    """Run ``segtool ARGS`` in this process (the CLI's own entry point, error handling included):
    returns (exit code, stdout, stderr). Much faster than a subprocess: torch and transformers are
    imported once per test session."""
    import sys

    from segtool.cli.app import main

    def run(*args: str) -> tuple[int, str, str]:
        capfd.readouterr()
        monkeypatch.setattr(sys, "argv", ["segtool", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capfd.readouterr()
        return code, out, err

    return run
