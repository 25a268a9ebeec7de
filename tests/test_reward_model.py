"""The exported reward-model folder and the one-call Python API (segtool.reward_model), on an RM
trained here on the tiny preset: the folder warns plain transformers users where they look, and the
API's e(x, y) equals what `segtool eval rm` computes on the same pairs."""

import gzip
import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

import segtool.reward_model
from segtool.artifacts.manifest import RunDir
from segtool.config.loader import load_config
from segtool.errors import ArtifactError, ConfigError, InputError
from segtool.models import rm_card
from segtool.pipeline import eval_rm, train_rm

SMALL = ["data.max_rows=24", "train_rm.global_batch=8", "train_rm.micro_batch=4", "train_rm.eval_fraction=0.25"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run directory, model folder) of a tiny entropy-segment RM after 3 steps."""
    workdir = tmp_path_factory.mktemp("rm") / "run"
    cfg = load_config(preset="tiny", overrides=[*SMALL, "train_rm.max_steps=3", "train_rm.lr=1e-3"],
                      workdir=str(workdir))[0]
    record = train_rm.run(cfg, quiet=True).record
    return workdir, RunDir(workdir).path_of(record, "model")


def test_the_folder_says_its_logits_are_not_the_reward(trained):
    from transformers import AutoModelForSequenceClassification, pipeline

    _, folder = trained
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"] == {"0": rm_card.LABEL} and "not_segtool_reward" in rm_card.LABEL
    meta = config[rm_card.CONFIG_KEY]
    assert "NOT segtool's reward" in meta["warning"] and "segtool.reward_model.load" in meta["warning"]
    assert meta["strategy"] == "entropy" and meta["aggregation"] == "avg" and meta["c_ent"] == 5.6
    assert meta["sft_model_source"]["path"].endswith("tinystories-656k")
    card = (folder / "README.md").read_text()
    assert "the logits are not the reward" in card and "segtool.reward_model.load(" in card and "c_ent = 5.6" in card
    hf = AutoModelForSequenceClassification.from_pretrained(folder)
    assert hf.config.num_labels == 1 and getattr(hf.config, rm_card.CONFIG_KEY)["warning"] == meta["warning"]
    classify = pipeline("text-classification", model=str(folder))
    assert classify("Hello there")[0]["label"] == rm_card.LABEL  # what a pipeline user sees with every result


def test_one_call_scores_equal_eval_rm(trained, tmp_path):
    workdir, folder = trained
    rows = [json.loads(line) for line in gzip.open(load_config(preset="tiny")[0].data.path, "rt")][30:36]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(preset="tiny", overrides=SMALL[1:], workdir=str(workdir), data=str(data))[0]
    result = eval_rm.run(cfg, quiet=True)
    table = pq.read_table(RunDir(workdir).path_of(result.record, "scores.parquet")).to_pydict()

    from segtool.inputs.rows import read_pairs

    pairs = read_pairs(str(data)).pairs
    for source in (folder, workdir):  # the model folder, or the run directory's current train-rm model
        rm = segtool.reward_model.load(source)
        chosen = rm.scores([(list(p.prompt), p.chosen) for p in pairs])
        rejected = rm.scores([(list(p.prompt), p.rejected) for p in pairs])
        assert np.allclose(chosen, table["score_chosen"], atol=1e-5, rtol=0)  # padding differs: float32 noise only
        assert np.allclose(rejected, table["score_rejected"], atol=1e-5, rtol=0)
    assert result.record["metrics"]["accuracy"] == round(float(np.mean(np.array(chosen) > np.array(rejected))), 4)

    k = next(i for i, p in enumerate(pairs) if len(p.prompt) == 1)  # a single user turn: give it as a string
    prompt, response = pairs[k].prompt[0]["content"], pairs[k].chosen
    assert rm.score(prompt, response) == pytest.approx(chosen[k], abs=1e-5)
    segments = rm.segments(prompt, response)
    assert len(segments) > 1 and segments[0].start == 0
    assert all(a.end == b.start for a, b in zip(segments, segments[1:]))  # contiguous token spans
    assert "".join(s.text for s in segments).strip() == response.strip()  # every response token but the EOS
    assert np.mean([s.reward for s in segments]) == pytest.approx(chosen[k], abs=1e-5)  # e = avg of r_t


def test_load_errors_name_the_fix(trained, tmp_path):
    _, folder = trained
    with pytest.raises(ArtifactError, match="not a segtool reward model folder"):
        segtool.reward_model.load(tmp_path)
    unrecorded = tmp_path / "old-rm"
    shutil.copytree(folder, unrecorded)
    meta = json.loads((unrecorded / "segtool_rm.json").read_text())
    sft = meta.pop("sft_model_source")["path"]
    (unrecorded / "segtool_rm.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="does not record the SFT model") as err:
        segtool.reward_model.load(unrecorded)
    assert "sft_model=" in err.value.hint
    other = tmp_path / "other-sft"
    shutil.copytree(sft, other)
    (other / "README-extra.txt").write_text("another model's folder hashes differently")
    rm = segtool.reward_model.load(unrecorded, sft_model=str(other))
    with pytest.raises(ConfigError, match="not the pi_SFT"):
        rm.score("Hi", "Hello")
    rm = segtool.reward_model.load(unrecorded, sft_model=sft)
    assert rm.score("Hi", "Hello") == pytest.approx(segtool.reward_model.load(folder).score("Hi", "Hello"), abs=1e-6)
    with pytest.raises(InputError, match="response is empty"):
        rm.score("Hi", " ")
    with pytest.raises(InputError, match="neither a string nor a list of chat messages"):
        rm.score({"content": "Hi"}, "Hello")
