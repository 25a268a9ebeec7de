"""`segtool rs` on the tiny model: RS and ARS change the policy, keep each prompt's best sample,
mask ARS's bad-segment tokens, and resume to the same result as an uninterrupted run."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from align_helpers import config, upstream_copy
from safetensors.torch import load_file

from segtool.artifacts.manifest import RunDir
from segtool.errors import ConfigError
from segtool.pipeline import rs as stage
from segtool.pipeline.policy_eval import eval_scorer, rm_folder_of
from segtool.training import checkpoints
from segtool.training.loading import load_policy_and_reference

RS = ["rs.eval_prompts=4", "rs.rollout_batch=4", "rs.train_batch=2", "rs.micro_batch=2", "rs.k=2", "rs.iterations=2",
      "rs.max_new_tokens=8", "rs.lr=1e-3", "rs.forward_batch=4"]


@pytest.fixture
def workdir(tmp_path_factory, tmp_path):
    return upstream_copy(tmp_path_factory, tmp_path / "run")


def policy_weights(workdir, record):
    return load_file(str(RunDir(workdir).path_of(record, "policy/model.safetensors")))


def test_rs_changes_the_policy_and_keeps_the_best_samples(workdir):
    from transformers import AutoModelForCausalLM

    cfg = config("tiny-rs", workdir, *RS)
    result = stage.run(cfg, quiet=True)
    rundir = RunDir(workdir)
    trained = AutoModelForCausalLM.from_pretrained(rundir.path_of(result.record, "policy"))
    sft = AutoModelForCausalLM.from_pretrained(cfg.model.path)
    assert any(not torch.equal(v, trained.state_dict()[k]) for k, v in sft.state_dict().items())
    metrics = pq.read_table(rundir.path_of(result.record, "metrics.parquet")).to_pylist()
    assert [m["iteration"] for m in metrics] == [1, 2]
    assert all(m["reward_best"] >= m["reward_mean"] and m["masked_fraction"] == 0.0 for m in metrics)
    assert all(m["kl"] >= 0 for m in metrics) and metrics[-1]["kl"] > 0  # exact KL: never negative, > 0 once moved
    evaluation = json.loads(rundir.path_of(result.record, "eval.json").read_text())
    assert evaluation["before"]["prompts"] == 4 and evaluation["after"]["kl"] != 0.0


def test_selection_keeps_each_prompts_best_sample(workdir):
    """sample_and_select on 3 prompts x 3 samples: the kept sample has the highest score of its prompt."""
    import contextlib

    from segtool.models.loading import pick_device

    cfg = config("tiny-rs", workdir, *RS, "rs.k=3")
    rundir = RunDir(workdir)
    policy, ref, tok, _ = load_policy_and_reference(cfg, pick_device("cpu"))
    scorer, _ = eval_scorer(cfg, rm_folder_of(rundir, stage.plan(cfg).parents[0]), ref, tok,
                            "cpu", 8, "rs.max_new_tokens")
    prompts = [[1, 2, 3, 4], [1, 5, 6], [1, 7, 8, 9, 10]]
    sel = stage.sample_and_select(policy, scorer, prompts, cfg.rs, 0, 0, "cpu", contextlib.nullcontext)
    grouped = sel["rewards"].reshape(3, 3)
    assert sel["best_rewards"].tolist() == grouped.max(1).tolist()
    assert all(len(m) == len(r) and m.sum() == len(r) for m, r in zip(sel["masks"], sel["responses"]))


def test_ars_masks_tokens_outside_good_segments(workdir):
    cfg = config("tiny-ars", workdir, *RS, "segment.delta=0.3")
    result = stage.run(cfg, quiet=True)
    assert 0 < result.summary["masked_fraction"] < 1
    assert result.record["identity_config"]["adaptive"]["delta"] == 0.3
    with pytest.raises(ConfigError, match="adaptive_source must be rm"):
        stage.plan(config("tiny-ars", workdir, *RS, "segment.adaptive_source=dpo"))


def test_interrupted_and_resumed_equals_straight(tmp_path_factory, tmp_path, monkeypatch):
    sets = [*RS, "rs.iterations=3", "rs.checkpoint_every=1"]
    straight_dir = upstream_copy(tmp_path_factory, tmp_path / "straight")
    killed_dir = upstream_copy(tmp_path_factory, tmp_path / "killed")
    straight = stage.run(config("tiny-ars", straight_dir, *sets), quiet=True)
    real_save = checkpoints.save_checkpoint
    calls = []

    def die_on_second(*args, **kw):
        real_save(*args, **kw)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed right after the iteration-2 checkpoint landed

    monkeypatch.setattr(checkpoints, "save_checkpoint", die_on_second)
    cfg = config("tiny-ars", killed_dir, *sets)
    with pytest.raises(KeyboardInterrupt):
        stage.run(cfg, quiet=True)
    rec = RunDir(killed_dir).head("rs")
    assert rec["status"] == "partial" and sorted({f.split("/")[0] for f in rec["files"]}) == ["checkpoint-000002"]
    monkeypatch.setattr(checkpoints, "save_checkpoint", real_save)
    resumed = stage.run(cfg, quiet=True, resume=True)
    assert resumed.outcome == "resumed" and resumed.artifact_id == straight.artifact_id
    a, b = policy_weights(straight_dir, straight.record), policy_weights(killed_dir, resumed.record)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    drop = ("seconds", "seconds_sample")

    def rows(d, r):
        return [{k: v for k, v in m.items() if k not in drop}
                for m in pq.read_table(RunDir(d).path_of(r.record, "metrics.parquet")).to_pylist()]

    assert rows(straight_dir, straight) == rows(killed_dir, resumed)
    assert straight.summary == resumed.summary
    assert np.isfinite(straight.summary["after_reward"])
