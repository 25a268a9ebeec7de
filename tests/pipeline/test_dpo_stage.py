"""`segtool dpo` on the tiny model: DPO and ADPO change the policy, ADPO's first-step loss equals a
per-pair recomputation with the adaptive mask, the implicit-reward source, exact resume."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from align_helpers import config, upstream_copy
from safetensors.torch import load_file

from segtool.artifacts.manifest import RunDir
from segtool.artifacts.tables import load_segments
from segtool.errors import ConfigError
from segtool.pipeline import dpo as stage
from segtool.pipeline import segment
from segtool.pipeline.policy_eval import split_heldout
from segtool.training import checkpoints

DPO = ["dpo.eval_prompts=4", "dpo.global_batch=4", "dpo.micro_batch=2", "dpo.max_steps=2", "dpo.max_new_tokens=8",
       "dpo.lr=1e-3", "dpo.forward_batch=4"]


@pytest.fixture
def workdir(tmp_path_factory, tmp_path):
    return upstream_copy(tmp_path_factory, tmp_path / "run")


def policy_weights(workdir, art_id):
    rundir = RunDir(workdir)
    return load_file(str(rundir.path_of(rundir.get(art_id), "policy/model.safetensors")))


def test_dpo_changes_the_policy_and_writes_its_outputs(workdir):
    from transformers import AutoModelForCausalLM

    cfg = config("tiny-dpo", workdir, *DPO)
    result = stage.run(cfg, quiet=True)
    rundir = RunDir(workdir)
    folder = rundir.path_of(result.record, "policy")
    trained = AutoModelForCausalLM.from_pretrained(folder)  # plain transformers loads it
    sft = AutoModelForCausalLM.from_pretrained(cfg.model.path)
    moved = [k for k, v in sft.state_dict().items() if not torch.equal(v, trained.state_dict()[k])]
    assert moved, "two DPO steps left every weight unchanged"
    meta = json.loads((folder / "segtool_policy.json").read_text())
    assert meta["beta"] == cfg.dpo.beta and meta["mask"] == "none"
    metrics = pq.read_table(rundir.path_of(result.record, "metrics.parquet")).to_pylist()
    assert [m["step"] for m in metrics] == [1, 2] and all(np.isfinite(m["loss"]) for m in metrics)
    evaluation = json.loads(rundir.path_of(result.record, "eval.json").read_text())
    assert evaluation["before"]["prompts"] == 4 and evaluation["before"]["kl"] == 0.0  # pi_SFT against itself
    assert evaluation["after"]["kl"] != 0.0
    assert result.summary["masked_fraction"] == 0.0 and result.summary["train_pairs"] == 20
    assert stage.run(cfg, quiet=True).outcome == "up-to-date"


def adpo_pairs(cfg, workdir):
    _, table = load_segments(RunDir(workdir), art_id=segment.plan(stage.adaptive_config(cfg)).art_id)
    _, pairs = stage.pairs_from_table(table, adaptive=True)
    train_idx, _ = split_heldout(len(pairs), 4, cfg.run.seed, "dpo.eval_prompts")
    return table, pairs, np.sort(train_idx)


def masked_logp(model, side) -> float:
    """sum_j M_j log pi(y_j | x, y_<j) on the unpadded sequence, full-vocabulary log-softmax in float64."""
    ids = torch.tensor([side.prompt + side.response])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].double(), -1)
    p = len(side.prompt)
    tok = logp[p - 1 : -1].gather(1, ids[0, p:, None]).squeeze(1)
    return float((tok * torch.from_numpy(side.keep).double()).sum())


def test_adpo_mask_is_the_adaptive_tables_states(workdir):
    cfg = config("tiny-adpo", workdir, *DPO, "dpo.max_steps=1", "segment.delta=0.3")
    result = stage.run(cfg, quiet=True)
    assert segment.plan(stage.adaptive_config(cfg)).art_id in result.record["parents"]
    table, pairs, train_idx = adpo_pairs(cfg, workdir)
    state = {(r, s): np.array(v) for r, s, v in zip(table["row_id"].to_pylist(), table["side"].to_pylist(),
                                                     table["state"].to_pylist())}
    rows = sorted({r for r, _ in state})
    for i, (chosen, rejected) in enumerate(pairs):  # chosen tokens in good, rejected tokens in bad segments
        assert chosen.keep.tolist() == (state[rows[i], "chosen"] == 1).tolist()
        assert rejected.keep.tolist() == (state[rows[i], "rejected"] == -1).tolist()
    kept = sum(pairs[i][0].keep.sum() + pairs[i][1].keep.sum() for i in train_idx)
    total = sum(len(pairs[i][0].keep) + len(pairs[i][1].keep) for i in train_idx)
    assert result.summary["masked_fraction"] == pytest.approx(1 - kept / total, abs=1e-4)
    assert 0 < result.summary["masked_fraction"] < 1
    # Step 1 starts at pi = pi_ref, so h = 0 and every pair's loss is log 2, mask or not.
    first = pq.read_table(RunDir(workdir).path_of(result.record, "metrics.parquet")).to_pylist()[0]
    assert first["loss"] == pytest.approx(np.log(2), abs=1e-6)


def test_adpo_second_step_loss_matches_a_per_pair_recomputation(workdir, monkeypatch):
    """Step 2's logged loss equals the masked DPO loss recomputed pair by pair (unpadded, full logits,
    float64) with the step-1 policy: batching, packing and mask alignment are right."""
    from transformers import AutoModelForCausalLM

    from segtool.core.dpo import dpo_loss

    cfg = config("tiny-adpo", workdir, *DPO, "dpo.max_steps=2", "dpo.checkpoint_every=1", "segment.delta=0.3")
    saved = {}
    real_save = checkpoints.save_checkpoint

    def keep_copy(rundir, art_id, step_no, policy, *rest):
        saved[step_no] = {k: v.detach().clone() for k, v in policy.state_dict().items()}
        real_save(rundir, art_id, step_no, policy, *rest)

    monkeypatch.setattr(checkpoints, "save_checkpoint", keep_copy)
    result = stage.run(cfg, quiet=True)
    _, pairs, train_idx = adpo_pairs(cfg, workdir)
    second = train_idx[np.random.default_rng([cfg.run.seed, 0]).permutation(len(train_idx))][4:8]
    ref = AutoModelForCausalLM.from_pretrained(cfg.model.path).eval()
    policy = AutoModelForCausalLM.from_pretrained(cfg.model.path)
    policy.load_state_dict(saved[1])
    policy.eval()
    losses = []
    for i in second:
        (pc, rc), (pr, rr) = ([torch.tensor([masked_logp(m, side)]) for m in (policy, ref)] for side in pairs[i])
        losses.append(dpo_loss(pc, pr, rc, rr, cfg.dpo.beta)["loss"].item())
    logged = pq.read_table(RunDir(workdir).path_of(result.record, "metrics.parquet")).to_pylist()[1]["loss"]
    assert logged == pytest.approx(float(np.mean(losses)), abs=1e-5)
    assert abs(logged - np.log(2)) > 1e-4  # the first update moved the policy


def test_interrupted_and_resumed_equals_straight(tmp_path_factory, tmp_path, monkeypatch):
    sets = [*DPO, "dpo.max_steps=4", "dpo.checkpoint_every=2"]
    straight_dir = upstream_copy(tmp_path_factory, tmp_path / "straight")
    killed_dir = upstream_copy(tmp_path_factory, tmp_path / "killed")
    straight = stage.run(config("tiny-dpo", straight_dir, *sets), quiet=True)

    real_save = checkpoints.save_checkpoint

    def save_then_die(*args, **kw):
        real_save(*args, **kw)
        raise KeyboardInterrupt  # killed right after the step-2 checkpoint landed

    monkeypatch.setattr(checkpoints, "save_checkpoint", save_then_die)
    cfg = config("tiny-dpo", killed_dir, *sets)
    with pytest.raises(KeyboardInterrupt):
        stage.run(cfg, quiet=True)
    rec = RunDir(killed_dir).head("dpo")
    assert rec["status"] == "partial" and sorted(rec["files"]) == ["checkpoint-000002/policy.safetensors",
                                                                   "checkpoint-000002/state.pt"]
    monkeypatch.setattr(checkpoints, "save_checkpoint", real_save)
    resumed = stage.run(cfg, quiet=True, resume=True)
    assert resumed.outcome == "resumed" and resumed.artifact_id == straight.artifact_id
    a, b = policy_weights(straight_dir, straight.artifact_id), policy_weights(killed_dir, resumed.artifact_id)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    drop = ("seconds", "tokens_per_s")

    def rows(d, r):
        return [{k: v for k, v in m.items() if k not in drop}
                for m in pq.read_table(RunDir(d).path_of(r.record, "metrics.parquet")).to_pylist()]

    assert rows(straight_dir, straight) == rows(killed_dir, resumed)
    assert straight.summary == resumed.summary


def test_adpo_from_the_dpo_implicit_reward(workdir):
    cfg = config("tiny-adpo", workdir, *DPO, "dpo.max_steps=1", "segment.adaptive_source=dpo", "segment.delta=0.0")
    result = stage.run(cfg, quiet=True)
    rundir = RunDir(workdir)
    plain_id = stage.plan(stage.plain(cfg)).art_id
    seg = rundir.get(segment.plan(stage.adaptive_config(cfg)).art_id)
    assert seg["parents"] == [plain_id]  # the mask's token rewards came from the plain DPO policy
    assert seg["config"]["segment"]["adaptive_source"] == "dpo"
    assert 0 < result.summary["masked_fraction"] < 1


def test_adaptive_segment_strategy_is_refused_for_the_rm(workdir):
    with pytest.raises(ConfigError, match="cannot be adaptive"):
        stage.run(config("tiny-dpo", workdir, *DPO, "segment.strategy=adaptive"), quiet=True)
