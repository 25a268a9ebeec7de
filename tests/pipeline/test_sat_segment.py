"""`segment` with segment.strategy = sat on the real tiny model. The SaT weights come from the hub,
which tests never reach: a stand-in wtpsplit (``stand_in_sat``) cuts sentences after '.', '!' or '?'
and the whitespace that follows, so this runs segtool's SaT code path, not a SaT model."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from segtool.artifacts.manifest import RunDir
from segtool.artifacts.tables import load_segments
from segtool.config.loader import load_config
from segtool.errors import ConfigError
from segtool.pipeline import segment as stage
from segtool.pipeline.ppo_rollout import reward_spec

ROOT = Path(__file__).resolve().parents[2]


def tiny(workdir, *sets):
    cfg, _ = load_config(preset="tiny", overrides=list(sets), workdir=str(workdir))
    return cfg


def test_sat_segments_end_on_the_token_holding_each_sentence_end(tmp_path, stand_in_sat):
    from segtool.inputs.formatting import Encoder
    from segtool.inputs.rows import read_pairs
    from segtool.models.loading import load_tokenizer, resolve_model_source

    cfg = tiny(tmp_path / "run", "data.max_rows=6", "segment.strategy=sat", "segment.sat_model=sat-12l-sm")
    result = stage.run(cfg, quiet=True)
    assert result.outcome == "computed" and stand_in_sat.loaded == ["sat-12l-sm"]
    assert result.record["inputs"]["sat_model"]["id"] == "segment-any-text/sat-12l-sm"
    _, table = load_segments(RunDir(cfg.run.workdir))
    tok = load_tokenizer(resolve_model_source(cfg.model), cfg.model)
    enc = Encoder.create(tok, cfg.tokenize.max_len, cfg.tokenize.max_prompt_len)
    pairs = read_pairs(cfg.data.path, max_rows=6).pairs
    inner = 0
    for i in range(table.num_rows):
        text = getattr(pairs[i // 2], table["side"][i].as_py())
        n = len(table["response_token_ids"][i].as_py())
        offsets = enc.response_offsets(text)
        # by hand: a sentence ends after '.', '!' or '?' followed by whitespace and more text
        chars = [m.end() for m in re.finditer(r"[.!?](?=\s+\S)", text)]
        held = {max(j for j, (a, b) in enumerate(offsets) if a <= c - 1 < b) for c in chars}
        expected = sorted(j for j in held if j < n - 2) + [n - 2]  # default EOS policy closes the last one
        assert table["segment_ends"][i].as_py() == expected, text
        inner += len(expected) - 1
    assert inner > 6  # the responses do have several sentences


def test_the_sat_model_is_part_of_the_identity_and_only_for_sat(tmp_path, stand_in_sat):
    sat = stage.plan(tiny(tmp_path, "segment.strategy=sat")).art_id
    assert stage.plan(tiny(tmp_path, "segment.strategy=sat", "segment.sat_model=sat-3l")).art_id != sat
    folder = tmp_path / "sat-local"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    local = stage.plan(tiny(tmp_path, "segment.strategy=sat", f"segment.sat_model={folder}")).art_id
    (folder / "config.json").write_text('{"changed": 1}')
    assert stage.plan(tiny(tmp_path, "segment.strategy=sat", f"segment.sat_model={folder}")).art_id != local
    punct = stage.plan(tiny(tmp_path, "segment.strategy=punct")).art_id
    assert stage.plan(tiny(tmp_path, "segment.strategy=punct", "segment.sat_model=sat-3l")).art_id == punct


def test_without_wtpsplit_the_stage_names_the_extra_and_writes_nothing(tmp_path, monkeypatch, cli):
    monkeypatch.setitem(sys.modules, "wtpsplit", None)  # import wtpsplit -> ImportError
    workdir = tmp_path / "run"
    code, _, err = cli("segment", "--preset", "tiny", "--workdir", workdir, "--set", "data.max_rows=2",
                       "--set", "segment.strategy=sat")
    assert code == 1
    assert err.splitlines() == ["error: segment.strategy = 'sat' needs the wtpsplit package",
                                "hint: pip install 'segtool[sat]'"]
    assert not (workdir / "manifest.json").exists() or not RunDir(workdir).read()["artifacts"]


def test_an_empty_sat_model_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="segment.sat_model is empty"):
        tiny(tmp_path, "segment.strategy=sat", "segment.sat_model=")


@pytest.mark.parametrize("mode", ["segment", "segment-as-bandit"])
def test_sampled_responses_are_never_segmented_with_sat(mode):
    meta = {"strategy": "sat", "c_ent": 1.75, "n": 5, "eos_in_last_segment": False, "readout": "end",
            "aggregation": "avg", "sat_model": "sat-3l-sm"}
    with pytest.raises(ConfigError, match="segment.strategy = 'sat'.*sampled responses") as exc:
        reward_spec(mode, 0.0, meta)
    assert "segment.strategy=punct" in exc.value.hint


def test_eval_rm_splits_new_text_with_the_rms_sat_model_as_the_segment_stage_did(tmp_path, stand_in_sat):
    """`eval rm` on exactly the held-out pairs of a sat RM gives train-rm's own eval numbers: scoring
    new text re-splits it with the SaT model recorded in the RM folder, to the same segments."""
    import gzip
    import json

    import pyarrow.parquet as pq

    from segtool.pipeline import eval_rm, train_rm

    small = ["data.max_rows=24", "train_rm.global_batch=8", "train_rm.micro_batch=4", "train_rm.eval_fraction=0.25"]
    cfg = tiny(tmp_path / "run", *small, "segment.strategy=sat", "segment.sat_model=sat-12l-sm",
               "train_rm.max_steps=3", "train_rm.lr=1e-3")
    trained = train_rm.run(cfg, quiet=True)
    rundir = RunDir(cfg.run.workdir)
    meta = json.loads((rundir.path_of(trained.record, "model") / "segtool_rm.json").read_text())
    assert (meta["strategy"], meta["sat_model"]) == ("sat", "sat-12l-sm")
    held_out = {s["row_id"] for s in pq.read_table(rundir.path_of(trained.record, "split.parquet")).to_pylist()
                if s["split"] == "eval"}
    data = tmp_path / "held_out.jsonl"
    data.write_text("".join(line for i, line in enumerate(gzip.open(cfg.data.path, "rt")) if i in held_out))
    stand_in_sat.loaded.clear()
    cfg_eval = load_config(preset="tiny", overrides=small[1:], workdir=str(tmp_path / "run"), data=str(data))[0]
    assert cfg_eval.segment.strategy != "sat"  # the RM folder, not this config, says how to segment
    m = eval_rm.run(cfg_eval, quiet=True).record["metrics"]
    assert stand_in_sat.loaded == ["sat-12l-sm"]
    assert m["pairs"] == len(held_out) == trained.summary["eval_pairs"]
    assert m["accuracy"] == trained.summary["eval_accuracy"]
    assert abs(m["mean_margin"] - trained.summary["eval_mean_margin"]) < 1e-4
