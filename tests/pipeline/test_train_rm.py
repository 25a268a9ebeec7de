"""`train-rm` on the real tiny model: outputs, the step-1 loss from first principles, exact resume."""

import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from segtool.artifacts.manifest import RunDir
from segtool.artifacts.tables import load_segments
from segtool.config.loader import load_config
from segtool.pipeline import train_rm as stage
from segtool.training import checkpoints

SMALL = ["data.max_rows=24", "train_rm.global_batch=8", "train_rm.micro_batch=4", "train_rm.eval_fraction=0.25"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGTOOL_CACHE", str(tmp_path / "cache"))


def tiny(workdir, *sets):
    return load_config(preset="tiny", overrides=[*SMALL, *sets], workdir=str(workdir))[0]


def weights(workdir) -> dict:
    rec = RunDir(workdir).head("train-rm")
    return load_file(str(RunDir(workdir).path_of(rec, "model/model.safetensors")))


def test_outputs(tmp_path):
    from transformers import AutoModelForSequenceClassification

    cfg = tiny(tmp_path / "run", "train_rm.max_steps=2")
    result = stage.run(cfg, quiet=True)
    rundir = RunDir(cfg.run.workdir)
    rec = result.record
    assert rec["status"] == "complete" and rec["parents"] == [rundir.head("segment")["id"]]
    assert not any(n.startswith("checkpoint-") for n in rec["files"])  # superseded by the final model
    folder = rundir.path_of(rec, "model")
    hf = AutoModelForSequenceClassification.from_pretrained(folder)  # plain transformers loads it
    assert hf.config.num_labels == 1 and hf.score.bias is None
    metrics = pq.read_table(rundir.path_of(rec, "metrics.parquet")).to_pylist()
    assert [m["step"] for m in metrics] == [1, 2]
    assert {"loss", "accuracy", "margin", "lr", "tokens_per_s"} <= set(metrics[0])
    split = pq.read_table(rundir.path_of(rec, "split.parquet")).to_pydict()
    assert sorted(split["row_id"]) == list(range(24)) and split["split"].count("eval") == 6  # round(0.25 * 24)
    assert result.summary["eval_pairs"] == 6 and 0.0 <= result.summary["eval_accuracy"] <= 1.0
    assert stage.run(cfg, quiet=True).outcome == "up-to-date"


def test_first_step_loss_matches_a_per_sequence_computation(tmp_path):
    """Step 1's loss, recomputed one unpadded sequence at a time with the paper's formulas."""
    from transformers import AutoModelForCausalLM

    from segtool.models.reward import build_from_causal_lm
    from segtool.models.rm_batches import pairs_from_segments

    cfg = tiny(tmp_path / "run", "train_rm.max_steps=1")
    result = stage.run(cfg, quiet=True)
    _, table = load_segments(RunDir(cfg.run.workdir))
    _, pairs = pairs_from_segments(table)
    train_idx, _ = stage.split_rows(len(pairs), 0.25, cfg.run.seed)
    first = train_idx[np.random.default_rng([cfg.run.seed, 0]).permutation(len(train_idx))][:8]
    torch.manual_seed(cfg.run.seed)
    lm = AutoModelForCausalLM.from_pretrained(cfg.model.path)
    rm = build_from_causal_lm(lm, 0, attention=False, seed=cfg.run.seed).train()

    def e(example):  # e(x, y) = (1/T) sum_t v[prompt_len + end_t]
        ids = torch.tensor([np.concatenate([example.prompt, example.response]).tolist()])
        v, _ = rm(ids, torch.ones_like(ids))
        return v[0, len(example.prompt) + torch.from_numpy(example.ends)].mean()

    with torch.no_grad():
        losses = [-torch.nn.functional.logsigmoid(e(pairs[i][0]) - e(pairs[i][1])) for i in first]
    expected = torch.stack(losses).mean().item()
    logged = pq.read_table(RunDir(cfg.run.workdir).path_of(result.record, "metrics.parquet")).to_pylist()[0]["loss"]
    assert abs(logged - expected) < 1e-5


def test_interrupted_and_resumed_equals_straight(tmp_path, monkeypatch):
    sets = ["train_rm.max_steps=4", "train_rm.checkpoint_every=2", "train_rm.lr=1e-3"]
    straight = stage.run(tiny(tmp_path / "straight", *sets), quiet=True)

    real_save = checkpoints.save_checkpoint

    def save_then_die(*args, **kw):
        real_save(*args, **kw)
        raise KeyboardInterrupt  # killed right after the step-2 checkpoint landed

    monkeypatch.setattr(checkpoints, "save_checkpoint", save_then_die)
    cfg = tiny(tmp_path / "killed", *sets)
    with pytest.raises(KeyboardInterrupt):
        stage.run(cfg, quiet=True)
    rec = RunDir(cfg.run.workdir).head("train-rm")
    assert rec["status"] == "partial"
    assert sorted(rec["files"]) == ["checkpoint-000002/model.safetensors", "checkpoint-000002/state.pt"]

    monkeypatch.setattr(checkpoints, "save_checkpoint", real_save)
    resumed = stage.run(cfg, quiet=True, resume=True)
    assert resumed.outcome == "resumed" and resumed.artifact_id == straight.artifact_id
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "killed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    drop = ("seconds", "tokens_per_s")
    m_a = pq.read_table(RunDir(tmp_path / "straight").path_of(straight.record, "metrics.parquet")).to_pylist()
    m_b = pq.read_table(RunDir(tmp_path / "killed").path_of(resumed.record, "metrics.parquet")).to_pylist()
    assert [{k: v for k, v in m.items() if k not in drop} for m in m_a] == [{k: v for k, v in m.items() if k not in drop} for m in m_b]
    for key in ("eval_accuracy", "eval_mean_margin", "eval_loss"):
        assert straight.summary[key] == resumed.summary[key]


@pytest.mark.parametrize(
    "sets",
    [
        ["segment.strategy=bandit", "train_rm.aggregation=last"],  # classical bandit RM
        ["segment.strategy=token", "train_rm.aggregation=avg"],  # token-level RM
        ["segment.strategy=punct"],  # sentence baseline
        ["segment.strategy=ngram", "segment.n=5"],
        ["train_rm.aggregation=sum"],
        ["train_rm.aggregation=min"],
        ["train_rm.aggregation=attention", "train_rm.readout=differential"],  # sentence-level RM paper
    ],
)
def test_baselines_and_variants_share_one_code_path(tmp_path, sets):
    result = stage.run(tiny(tmp_path / "run", "train_rm.max_steps=1", *sets), quiet=True)
    assert result.record["status"] == "complete"
    assert math.isfinite(result.summary["train_loss_last"])
    meta = (Path(RunDir(tmp_path / "run").path_of(result.record, "model")) / "segtool_rm.json").read_text()
    assert all(s.split("=")[1] in meta for s in sets if s.split(".")[1].split("=")[0] in ("strategy", "aggregation", "readout"))


def test_eval_rm_reproduces_the_held_out_accuracy(tmp_path):
    """`eval rm` on a file holding exactly the held-out pairs gives train-rm's own eval numbers."""
    import gzip
    import json

    from segtool.pipeline import eval_rm

    cfg = tiny(tmp_path / "run", "train_rm.max_steps=3", "train_rm.lr=1e-3")
    trained = stage.run(cfg, quiet=True)
    rundir = RunDir(cfg.run.workdir)
    split = pq.read_table(rundir.path_of(trained.record, "split.parquet")).to_pylist()
    held_out = {s["row_id"] for s in split if s["split"] == "eval"}
    lines = [line for i, line in enumerate(gzip.open(cfg.data.path, "rt")) if i in held_out]
    data = tmp_path / "held_out.jsonl"
    data.write_text("".join(json.dumps({**json.loads(line), "subset": f"s{i % 2}"}) + "\n" for i, line in enumerate(lines)))
    cfg_eval = load_config(preset="tiny", overrides=SMALL[1:], workdir=str(tmp_path / "run"), data=str(data))[0]
    result = eval_rm.run(cfg_eval, quiet=True)
    m = result.record["metrics"]
    assert m["pairs"] == len(held_out) == trained.summary["eval_pairs"]
    assert m["accuracy"] == trained.summary["eval_accuracy"]
    assert abs(m["mean_margin"] - trained.summary["eval_mean_margin"]) < 1e-4
    assert set(m["subsets"]) == {"s0", "s1"} and sum(s["pairs"] for s in m["subsets"].values()) == m["pairs"]
    assert eval_rm.run(cfg_eval, quiet=True).outcome == "up-to-date"


def test_show_rewards_side_by_side_html(tmp_path):
    from segtool.viz.rewards import colour, rewards_report

    cfg = tiny(tmp_path / "run", "train_rm.max_steps=1")
    stage.run(cfg, quiet=True)
    other = tiny(tmp_path / "token", "train_rm.max_steps=1", "segment.strategy=token")
    token_rm = RunDir(other.run.workdir).path_of(stage.run(other, quiet=True).record, "model")
    html = tmp_path / "r.html"
    rewards_report(cfg, 2, "rejected", [None, str(token_rm)], html, json_out=True)
    page = html.read_text()
    assert page.count("<td>") == 2 and "token · end · avg" in page and "entropy c_ent=5.6 · end · avg" in page
    assert colour(0.0, 1.0) == (255, 255, 255) and colour(1.0, 1.0) == (64, 190, 90) and colour(-2.0, 1.0) == (225, 70, 60)


def test_gradient_checkpointing_changes_memory_not_results(tmp_path):
    plain = stage.run(tiny(tmp_path / "a", "train_rm.max_steps=2", "train_rm.lr=1e-3"), quiet=True)
    ckpt = stage.run(tiny(tmp_path / "b", "train_rm.max_steps=2", "train_rm.lr=1e-3",
                          "train_rm.gradient_checkpointing=true"), quiet=True)
    assert plain.artifact_id == ckpt.artifact_id  # an execution knob, not part of identity
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6
    assert abs(plain.summary["train_loss_last"] - ckpt.summary["train_loss_last"]) < 1e-6
