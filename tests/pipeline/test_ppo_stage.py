"""`segtool ppo` on the embedded tiny model: rewards as METHOD §5 defines them, learning, resume.

The upstream stages (segment, train-rm, fit-normalizer) run once per session per preset and are
copied into each test's run directory.
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from segtool.artifacts.manifest import RunDir
from segtool.config.loader import load_config
from segtool.errors import ConfigError

PPO_SETS = ["data.max_rows=64", "ppo.rollout_batch=8", "ppo.train_batch=4", "ppo.micro_batch=4", "ppo.forward_batch=4",
            "ppo.max_new_tokens=24", "ppo.eval_prompts=8", "ppo.actor_lr=1e-4", "ppo.critic_lr=1e-4", "ppo.ppo_epochs=1"]


def config(preset, workdir, *sets):
    cfg, _ = load_config(preset=preset, overrides=[*PPO_SETS, *sets], workdir=str(workdir))
    return cfg


@pytest.fixture(scope="session")
def upstream(tmp_path_factory):
    """Run directories with a complete RM and normaliser, one per preset (built on first use)."""
    from segtool.pipeline import fit_normalizer

    built = {}

    def get(preset: str):
        if preset not in built:
            workdir = tmp_path_factory.mktemp(f"upstream-{preset}")
            fit_normalizer.run(config(preset, workdir), quiet=True)
            built[preset] = workdir
        return built[preset]

    return get


@pytest.fixture
def rundir(upstream, tmp_path):
    def make(preset="tiny", name=""):
        target = tmp_path / (name or preset)
        shutil.copytree(upstream(preset), target)
        return target

    return make


def scoring_setup(workdir, preset="tiny", *sets):
    from segtool.pipeline.ppo import load_setup

    cfg = config(preset, workdir, *sets)
    rd = RunDir(workdir)
    return cfg, load_setup(cfg, rd, rd.require_head("train-rm"))


def artifact_responses(workdir, n=6):
    """(prompts, responses, segment ends) of the first chosen responses in the segment artifact."""
    from segtool.artifacts.tables import load_segments

    _, table = load_segments(RunDir(workdir))
    rows = [i for i, s in enumerate(table["side"].to_pylist()) if s == "chosen"][:n]
    pick = lambda col: [table[col][i].as_py() for i in rows]  # noqa: E731
    return pick("prompt_token_ids"), pick("response_token_ids"), pick("segment_ends")


def test_reference_pass_segments_samples_exactly_as_the_segment_stage(rundir):
    """PPO segments with the entropies of its one pi_SFT pass: same ends as `segment` on that text,
    padded or packed (the default on Llama: ppo.packing = "auto" passes the probe)."""
    from segtool.models.policy import pack
    from segtool.pipeline.ppo_rollout import score_batch

    workdir = rundir()
    _, setup = scoring_setup(workdir)
    assert setup.scorer.pack_width == 1024 and setup.note == ""
    prompts, responses, ends = artifact_responses(workdir)
    padded = score_batch(setup.scorer, pack(prompts, responses, setup.scorer.pad_id), "cpu")
    batch = pack(prompts, responses, setup.scorer.pad_id, 256)
    assert batch.plan.input_ids.shape[0] < len(prompts)  # rows really are shared
    packed = score_batch(setup.scorer, batch, "cpu")
    for scored in (padded, packed):
        assert [e.tolist() for e in scored["ends"]] == ends
    assert sum(len(e) for e in ends) > len(ends)  # several segments per response, not a trivial case
    for key in ("ref_logp", "score", "seq_reward", "token_reward"):
        assert torch.allclose(padded[key], packed[key], atol=1e-4), key


def test_rewards_use_the_normalisers_p_in_segment_units_and_even_interpolation(rundir):
    from segtool.models.policy import pack
    from segtool.pipeline.ppo_rollout import score_batch

    workdir = rundir()
    _, setup = scoring_setup(workdir)
    norm = setup.scorer.normaliser
    assert norm.kind == "location"
    prompts, responses, _ = artifact_responses(workdir)
    scored = score_batch(setup.scorer, pack(prompts, responses, setup.scorer.pad_id), "cpu")
    for i, (ends, raw, normed) in enumerate(zip(scored["ends"], scored["raw"], scored["norm"])):
        K = len(ends)
        for k in range(K):
            log_p = math.log((k + 1) / K)  # segment index over segment count, not token position
            mean = norm.w_mu * log_p + norm.b_mu
            std = max(norm.w_sigma * log_p + norm.b_sigma, norm.floor)
            assert normed[k] == pytest.approx((raw[k] - mean) / std, rel=1e-5, abs=1e-6)
        # even: each token of segment k carries normed[k] / |a_k|; the EOS (after the last segment) 0
        tokens = scored["score"][i]
        start = 0
        for k, end in enumerate(ends):
            seg = tokens[start : end + 1]
            assert torch.allclose(seg, torch.full_like(seg, float(normed[k]) / (end + 1 - start)))
            start = end + 1
        assert float(tokens[len(responses[i]) - 1]) == 0.0
        assert torch.all(tokens[len(responses[i]) :] == 0)


def test_bandit_reward_lands_on_each_rows_own_eos(rundir):
    from segtool.core.normalizer import normalize
    from segtool.models.policy import pack
    from segtool.pipeline.ppo_rollout import score_batch

    workdir = rundir("tiny-bandit")
    _, setup = scoring_setup(workdir, "tiny-bandit", 'ppo.reward_mode="bandit"')
    prompts, responses, _ = artifact_responses(workdir)
    lengths = [len(r) for r in responses]
    assert len(set(lengths)) > 1  # rows of different lengths in one batch
    scored = score_batch(setup.scorer, pack(prompts, responses, setup.scorer.pad_id), "cpu")
    e_hat = normalize(scored["seq_reward"], torch.zeros(len(lengths)), torch.ones(len(lengths)), setup.scorer.normaliser)
    for i, n in enumerate(lengths):
        expected = torch.zeros(scored["score"].shape[1])
        expected[n - 1] = e_hat[i]
        assert torch.equal(scored["score"][i], expected)


def test_hybrid_modes(rundir):
    from segtool.models.policy import pack
    from segtool.pipeline.ppo_rollout import score_batch

    workdir = rundir("tiny-bandit")
    with pytest.raises(ConfigError, match="c_ent"):
        scoring_setup(workdir, "tiny-bandit", 'ppo.reward_mode="bandit-as-segment"')
    with pytest.raises(ConfigError, match="segment-level RM"):
        scoring_setup(workdir, "tiny-bandit", 'ppo.reward_mode="segment"')
    _, setup = scoring_setup(workdir, "tiny-bandit", 'ppo.reward_mode="bandit-as-segment"', "ppo.c_ent=5.6")
    prompts, responses, _ = artifact_responses(workdir)
    scored = score_batch(setup.scorer, pack(prompts, responses, setup.scorer.pad_id), "cpu")
    # The bandit RM read at entropy segment ends: several dense rewards per response.
    assert sum(len(e) for e in scored["ends"]) > len(responses)
    seg_workdir = rundir("tiny")
    _, setup = scoring_setup(seg_workdir, "tiny", 'ppo.reward_mode="segment-as-bandit"')
    prompts, responses, _ = artifact_responses(seg_workdir)
    scored = score_batch(setup.scorer, pack(prompts, responses, setup.scorer.pad_id), "cpu")
    nonzero = [torch.nonzero(row).flatten().tolist() for row in scored["score"]]
    assert nonzero == [[len(r) - 1] for r in responses]


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_a_few_iterations_change_the_policy_and_write_auditable_artifacts(rundir, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from segtool.pipeline import ppo

    workdir = rundir()
    result = ppo.run(config("tiny", workdir, "ppo.iterations=2"), quiet=True)
    rd = RunDir(workdir)
    record = rd.get(result.artifact_id)
    assert record["status"] == "complete"
    policy_dir = rd.path_of(record, "policy")
    trained, sft = _weights(policy_dir), _weights(tiny_model_dir)
    changed = [k for k in sft if k in trained and not torch.equal(trained[k], sft[k])]
    assert len(changed) > len(sft) // 2
    AutoModelForCausalLM.from_pretrained(policy_dir)  # plain transformers loads the policy
    names = sorted(f for f in record["files"] if f.startswith("rollouts/"))
    assert names == ["rollouts/iter-000001.parquet", "rollouts/iter-000002.parquet"]
    table = pq.read_table(rd.path_of(record, names[0]))
    assert table.num_rows == 8
    for col in ("prompt", "response", "segment_ends", "segment_reward_raw", "segment_reward_norm", "kl", "advantage"):
        assert col in table.column_names
    row = table.slice(0, 1).to_pylist()[0]
    assert len(row["kl"]) == len(row["response_token_ids"]) == len(row["advantage"])
    assert len(row["segment_ends"]) == len(row["segment_reward_raw"])
    metrics = pq.read_table(rd.path_of(record, "metrics.parquet")).to_pylist()
    assert [m["iteration"] for m in metrics] == [1, 2]
    assert metrics[0]["kl"] == pytest.approx(0.0, abs=1e-4)  # first rollout: policy == pi_SFT
    assert not any(f.startswith("checkpoint-") for f in record["files"])  # superseded by the final policy
    m = record["metrics"]
    assert m["eval_prompts"] == 8 and {"reward_before", "reward_after", "length_before", "length_after"} <= set(m)
    # ppo.gold = "defects" (the tiny preset): each iteration's gold reward is that of its rollouts' responses
    from transformers import AutoTokenizer

    from segtool.credit.sources import gold_scorer
    from segtool.pipeline.policy_eval import gold_rewards

    responses = table.column("response_token_ids").to_pylist()
    expected = gold_rewards(gold_scorer(), AutoTokenizer.from_pretrained(tiny_model_dir), responses)
    assert metrics[0]["gold"] == pytest.approx(sum(expected) / len(expected))
    assert -2.0 <= m["gold_before"] <= 0.0 and -2.0 <= m["gold_after"] <= 0.0


def test_resume_equals_uninterrupted(rundir, monkeypatch):
    from segtool.pipeline import ppo, ppo_train

    straight = rundir()
    ppo.run(config("tiny", straight, "ppo.iterations=2"), quiet=True)

    broken = rundir("tiny", name="broken")
    calls = {"n": 0}
    real = ppo_train.train_on

    def crash_on_second(*args, **kwargs):  # after iteration 1's checkpoint and iteration 2's rollout
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(ppo_train, "train_on", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        ppo.run(config("tiny", broken, "ppo.iterations=2"), quiet=True)
    monkeypatch.setattr(ppo_train, "train_on", real)
    result = ppo.run(config("tiny", broken, "ppo.iterations=2"), resume=True, quiet=True)
    assert result.outcome == "resumed"
    a, b = RunDir(straight), RunDir(broken)
    ra, rb = a.head("ppo"), b.head("ppo")
    assert ra["id"] == rb["id"]
    wa, wb = _weights(a.path_of(ra, "policy")), _weights(b.path_of(rb, "policy"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    for name in ("rollouts/iter-000002.parquet", "metrics.parquet"):
        ta, tb = pq.read_table(a.path_of(ra, name)), pq.read_table(b.path_of(rb, name))
        drop = [c for c in ta.column_names if c.startswith(("t_", "seconds", "tokens_per_s", "episodes_per_s"))]
        assert ta.drop(drop).equals(tb.drop(drop))


def test_no_held_out_prompts_skips_the_before_after_report(rundir):
    from segtool.pipeline import ppo

    result = ppo.run(config("tiny", rundir(), "ppo.eval_prompts=0", "ppo.iterations=1"), quiet=True)
    assert result.record["status"] == "complete" and "reward_before" not in result.record["metrics"]


def test_mode_and_model_mismatches_are_clear_errors(rundir):
    workdir = rundir()
    with pytest.raises(ConfigError, match="bandit RM"):
        scoring_setup(workdir, "tiny", 'ppo.reward_mode="bandit"')
    with pytest.raises(ConfigError, match="max_len"):
        scoring_setup(workdir, "tiny", "ppo.max_new_tokens=400")


def test_prompt_split_and_iteration_slices_are_seeded_and_disjoint():
    from segtool.core.schedule import iteration_prompts
    from segtool.core.splits import heldout_split

    train, held = heldout_split(40, 8, seed=3)
    assert len(set(train) | set(held)) == 40 and not set(train) & set(held)
    assert np.array_equal(heldout_split(40, 8, seed=3)[1], held)
    first = [iteration_prompts(train, it, 8, seed=3) for it in range(4)]
    assert len(set(np.concatenate(first))) == 32  # one episode: every training prompt once
    assert np.array_equal(iteration_prompts(train, 1, 8, seed=3), first[1])


def test_two_processes_under_a_launcher_share_each_rollout_batch(rundir, tiny_model_dir, tmp_path):
    """torchrun, 2 CPU processes (DeepSpeed ZeRO-2, gloo): each rank samples half of every rollout
    batch; rank 0 writes one rollout file per iteration and the final policy."""
    import os
    import subprocess
    import sys

    workdir = rundir(name="parallel")
    sets = [*PPO_SETS, "ppo.iterations=2", "ppo.micro_batch=2"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "segtool", "ppo",
           "--preset", "tiny", "--workdir", str(workdir), "--json", *[a for s in sets for a in ("--set", s)]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rd = RunDir(workdir)
    record = rd.head("ppo")
    assert record["status"] == "complete" and record["layout"]["world_size"] == 2
    for it in (1, 2):
        table = pq.read_table(rd.path_of(record, f"rollouts/iter-{it:06d}.parquet"))
        assert table.num_rows == 8 and len(set(table["prompt_row_id"].to_pylist())) == 8
    trained, sft = _weights(rd.path_of(record, "policy")), _weights(tiny_model_dir)
    assert any(not torch.equal(trained[k], sft[k]) for k in sft if k in trained)
    metrics = pq.read_table(rd.path_of(record, "metrics.parquet")).to_pylist()
    assert [m["optimizer_steps"] for m in metrics] == [2, 2]  # rollout 8 / train batch 4, over both ranks


@pytest.mark.parametrize("kind,module", [("tensorboard", "torch.utils.tensorboard"), ("wandb", "wandb")])
def test_asking_for_a_missing_metrics_logger_is_a_clear_error(kind, module, monkeypatch, tmp_path):
    import sys

    from segtool.pipeline.ppo_view import MetricLogger

    monkeypatch.setitem(sys.modules, module, None)  # import fails as if the package were absent
    with pytest.raises(ConfigError, match=f"{kind} package is not installed"):
        MetricLogger(kind, tmp_path, "run", {})
    MetricLogger("none", tmp_path, "run", {}).log({"iteration": 1, "reward": 0.5})  # no logger: no-op


def test_live_table_fits_80_columns():
    from rich.console import Console

    from segtool.pipeline.ppo_view import COLUMNS, table

    row = {key: -9.876 for key, _, _ in COLUMNS} | {"iteration": 999, "length": 1024.0, "tokens_per_s": 12345.0,
                                                   "t_generate": 123.4, "t_train": 123.4}
    console = Console(width=80, record=True)
    console.print(table([row], 10, "ppo (segment) 0123456789ab"))
    assert "…" not in console.export_text()


def test_appo_mask_follows_the_schmitt_trigger_and_gates_the_policy_loss(rundir):
    """ppo.mask = adaptive: the policy loss sees good tokens of positive-advantage samples and bad
    tokens of negative ones; with nothing kept, the policy does not move while the critic does."""
    import dataclasses

    from segtool.core.adaptive import baselines, loss_mask, schmitt_states
    from segtool.models.precision import make_autocast
    from segtool.pipeline.ppo_rollout import collect
    from segtool.pipeline.ppo_train import make_optimisers, train_on

    workdir = rundir()
    cfg, setup = scoring_setup(workdir, "tiny", 'ppo.mask="adaptive"', "ppo.adaptive_delta=0.01")
    prompts, _, _ = artifact_responses(workdir, n=8)
    autocast = make_autocast(cfg.ppo.bf16, "cpu", "ppo.bf16")
    r = collect(setup.policy, setup.critic, setup.scorer, prompts, cfg, 0, 0, "cpu", autocast, 0.01)
    states = schmitt_states(r_tok := _token_rewards(r, setup, prompts), baselines(r_tok, r.mask, "sequence"), 0.01)
    expected = loss_mask(states, (r.advantages * r.mask).sum(1) > 0, r.mask).float()
    assert torch.equal(r.policy_mask, expected)
    assert 0 < float(r.policy_mask.sum()) < float(r.mask.sum())

    before = {k: v.clone() for k, v in setup.policy.state_dict().items()}
    critic_before = {k: v.clone() for k, v in setup.critic.state_dict().items()}
    optimisers = make_optimisers(setup, cfg.ppo, 10, parallel=False)
    train_on(dataclasses.replace(r, policy_mask=torch.zeros_like(r.mask)), setup, optimisers, cfg.ppo, (0, 0), autocast)
    assert all(torch.equal(v, before[k]) for k, v in setup.policy.state_dict().items())
    assert any(not torch.equal(v, critic_before[k]) for k, v in setup.critic.state_dict().items())


def _token_rewards(r, setup, prompts):
    """v_i - v_(i-1) of the reward model, recomputed one sample at a time."""
    out = torch.zeros_like(r.mask)
    for i, (p, y) in enumerate(zip(prompts, r.responses)):
        ids = torch.tensor([p + y])
        with torch.no_grad():
            v, _ = setup.scorer.rm(ids, torch.ones_like(ids))
        v = v[0, len(p) - 1 : len(p) + len(y)]
        out[i, : len(y)] = v[1:] - v[:-1]
    return out


# -- RTO token rewards (ppo.reward_source = dpo) and forking tokens (ppo.forking_ratio) -----------

DPO_SETS = ["dpo.eval_prompts=4", "dpo.global_batch=4", "dpo.micro_batch=2", "dpo.max_steps=2", "dpo.lr=1e-3",
            "dpo.forward_batch=4", "dpo.sampling.max_new_tokens=8"]


def _log_ratio(policy, ref, prompts, responses):
    """log pi(y_j) - log pi_ref(y_j) of every response token, one unpacked sample at a time, [B, R]."""
    out = torch.zeros(len(responses), max(len(y) for y in responses))
    for i, (p, y) in enumerate(zip(prompts, responses)):
        ids = torch.tensor([p + y])
        with torch.no_grad():
            lp, lr = (torch.log_softmax(m(ids).logits[0, len(p) - 1 : -1].float(), -1) for m in (policy, ref))
        target = torch.tensor(y)[:, None]
        out[i, : len(y)] = (lp.gather(1, target) - lr.gather(1, target))[:, 0]
    return out


def test_rto_rewards_are_beta_times_the_dpo_log_ratio(rundir):
    """Every token's score is beta (log pi_DPO - log pi_SFT) with the DPO stage's beta, on packed
    batches (PPO's reference pass gives log pi_SFT); scale and clip override; dpo_rm_weight adds the RM's."""
    import dataclasses

    from segtool.errors import ArtifactError
    from segtool.models.policy import pack
    from segtool.pipeline import dpo
    from segtool.pipeline.ppo_rollout import score_batch

    workdir = rundir()
    rto = ["ppo.reward_source=dpo", *DPO_SETS]
    with pytest.raises(ArtifactError, match="needs the DPO policy of this config") as exc:
        scoring_setup(workdir, "tiny-dpo", *rto)
    assert "run `segtool dpo`" in exc.value.hint
    dpo.run(config("tiny-dpo", workdir, *DPO_SETS), quiet=True)
    cfg, setup = scoring_setup(workdir, "tiny-dpo", *rto)
    assert setup.scorer.dpo.scorer.ref is setup.scorer.ref  # one pi_SFT in memory
    prompts, responses, _ = artifact_responses(workdir)
    batch = pack(prompts, responses, setup.scorer.pad_id, 256)
    assert batch.plan is not None  # packed rows, as PPO runs them
    ratio = _log_ratio(setup.scorer.dpo.scorer.policy, setup.scorer.ref, prompts, responses)
    assert float(ratio.abs().max()) > 1e-3  # DPO moved the policy: not a trivial zero
    scored = score_batch(setup.scorer, batch, "cpu")
    assert cfg.dpo.beta == 0.1
    assert torch.allclose(scored["score"], 0.1 * ratio, atol=1e-5)

    clipped = dataclasses.replace(setup.scorer.dpo, scale=0.05, clip=0.002)
    scored = score_batch(dataclasses.replace(setup.scorer, dpo=clipped), batch, "cpu")
    assert torch.allclose(scored["score"], (0.05 * ratio).clamp(-0.002, 0.002), atol=1e-6)
    assert float((scored["score"].abs() == 0.002).float().sum()) > 0

    rm_only = score_batch(dataclasses.replace(setup.scorer, dpo=None), batch, "cpu")["score"]
    both = dataclasses.replace(setup.scorer.dpo, rm_weight=1.0)
    scored = score_batch(dataclasses.replace(setup.scorer, dpo=both), batch, "cpu")
    assert torch.allclose(scored["score"], 0.1 * ratio + rm_only, atol=1e-5)


def test_rto_ppo_trains_the_dpo_policy_first_and_records_it(rundir):
    from segtool.pipeline import dpo, ppo

    workdir = rundir()
    with pytest.raises(ConfigError, match="normalizer.kind = 'global' normalises the reward model's rewards"):
        ppo.run(config("tiny-dpo", workdir, "ppo.reward_source=dpo", "normalizer.kind=global", *DPO_SETS), quiet=True)
    assert RunDir(workdir).head("dpo") is None  # refused before anything was trained
    cfg = config("tiny-dpo", workdir, "ppo.reward_source=dpo", "ppo.iterations=1", *DPO_SETS)
    result = ppo.run(cfg, quiet=True)
    rd = RunDir(workdir)
    dpo_id = dpo.plan(cfg).art_id
    assert rd.get(dpo_id)["status"] == "complete"
    record = rd.get(result.artifact_id)
    assert record["status"] == "complete" and dpo_id in record["parents"]
    assert record["inputs"]["dpo_policy"] == dpo_id and record["metrics"]["reward_source"] == "dpo"
    table = pq.read_table(rd.path_of(record, "rollouts/iter-000001.parquet"))
    scores = np.concatenate([np.asarray(s) for s in table["token_score"].to_pylist()])
    assert np.isfinite(scores).all() and np.abs(scores).max() > 0
    # the same settings with the reward model's rewards are another artifact
    assert ppo.plan(config("tiny-dpo", workdir, "ppo.iterations=1", *DPO_SETS)).art_id != result.artifact_id


def test_forking_mask_keeps_the_top_entropy_share_of_each_rollout_batch(rundir):
    """ppo.forking_ratio: the policy loss sees exactly ceil(0.2 n) of the n rollout tokens, none of lower
    policy entropy than a token left out."""
    from segtool.pipeline import ppo

    result = ppo.run(config("tiny", rundir(), "ppo.forking_ratio=0.2", "ppo.iterations=1"), quiet=True)
    rd = RunDir(result.workdir)
    table = pq.read_table(rd.path_of(result.record, "rollouts/iter-000001.parquet"))
    kept = np.concatenate([np.asarray(k, dtype=bool) for k in table["in_policy_loss"].to_pylist()])
    entropy = np.concatenate([np.asarray(h) for h in table["entropy"].to_pylist()])
    n = len(kept)
    assert kept.sum() == math.ceil(0.2 * n) and n > 50
    assert entropy[kept].min() >= entropy[~kept].max()
    m = result.summary
    assert m["forking_ratio"] == 0.2 and m["masked_fraction"] == pytest.approx(1 - kept.sum() / n, abs=1e-4)


def test_forking_tokens_are_chosen_among_the_tokens_appo_keeps(rundir):
    """One mask path: with ppo.mask = adaptive, the forking share is taken of APPO's tokens."""
    from segtool.core.adaptive import baselines, loss_mask, schmitt_states
    from segtool.models.precision import make_autocast
    from segtool.pipeline.ppo_rollout import collect

    workdir = rundir()
    cfg, setup = scoring_setup(workdir, "tiny", 'ppo.mask="adaptive"', "ppo.adaptive_delta=0.01", "ppo.forking_ratio=0.5")
    prompts, _, _ = artifact_responses(workdir, n=8)
    r = collect(setup.policy, setup.critic, setup.scorer, prompts, cfg, 0, 0, "cpu", make_autocast("false", "cpu", "b"), 0.01)
    r_tok = _token_rewards(r, setup, prompts)
    appo = loss_mask(schmitt_states(r_tok, baselines(r_tok, r.mask, "sequence"), 0.01),
                     (r.advantages * r.mask).sum(1) > 0, r.mask)
    kept = r.policy_mask.bool()
    assert int(kept.sum()) == math.ceil(0.5 * int(appo.sum())) and bool((kept <= appo).all())
    assert float(r.entropy[kept].min()) >= float(r.entropy[appo & ~kept].max())


def test_first_forward_stands_in_for_the_rollout_pass_of_its_rows(rundir):
    """ppo.first_forward: the first micro-batch's training forward gives its rows' old log-probs,
    entropies and values (the same as the separate no-grad passes, up to rounding), and the update
    that backpropagates through it moves the models as the plain path does."""
    from functools import partial

    from segtool.models.precision import make_autocast
    from segtool.pipeline.ppo_rollout import collect
    from segtool.pipeline.ppo_train import first_forward, make_optimisers, train_on

    workdir = rundir()
    cfg, setup = scoring_setup(workdir, "tiny", "ppo.rollout_batch=8", "ppo.train_batch=4", "ppo.micro_batch=2")
    prompts, _, _ = artifact_responses(workdir, n=8)
    autocast = make_autocast("false", "cpu", "ppo.bf16")
    start = [{k: v.clone() for k, v in m.state_dict().items()} for m in (setup.policy, setup.critic)]
    results = []
    for reuse in (False, True):
        for m, state in zip((setup.policy, setup.critic), start):
            m.load_state_dict(state)
        first = partial(first_forward, setup, cfg.ppo, (0, 0), autocast) if reuse else None
        r = collect(setup.policy, setup.critic, setup.scorer, prompts, cfg, 0, 0, "cpu", autocast, 0.01, first_forward=first)
        assert (r.first_forward is not None) == reuse
        if reuse:
            assert len(r.first_forward.rows) == 2 and r.first_forward.logp.requires_grad
        trained = train_on(r, setup, make_optimisers(setup, cfg.ppo, 10, parallel=False), cfg.ppo, (0, 0), autocast,
                           r.first_forward)
        results.append((r, trained, [{k: v.clone() for k, v in m.state_dict().items()} for m in (setup.policy, setup.critic)]))
    (plain, plain_m, plain_w), (reused, reused_m, reused_w) = results
    assert plain.responses == reused.responses
    for name in ("logp", "entropy", "values", "advantages", "returns"):
        torch.testing.assert_close(getattr(reused, name), getattr(plain, name), atol=1e-5, rtol=1e-4, msg=name)
    assert reused_m["optimizer_steps"] == plain_m["optimizer_steps"] == 2
    for before, a, b in zip(start, plain_w, reused_w):
        moved = [k for k in a if not torch.equal(a[k], before[k])]
        assert moved
        for k in moved:
            torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=1e-4, msg=k)


def test_first_forward_on_refuses_a_model_with_dropout():
    from segtool.pipeline.ppo_train import first_forward_mode

    plain, dropped = torch.nn.Linear(2, 2), torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.1))
    assert first_forward_mode("auto", plain, plain) and not first_forward_mode("off", plain, plain)
    assert not first_forward_mode("auto", plain, dropped)
    with pytest.raises(ConfigError, match="critic has active dropout"):
        first_forward_mode("on", plain, dropped)
