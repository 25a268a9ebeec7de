"""`segment` end to end on the real tiny model: outputs, no-op re-runs, identity, crashes, resume."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from segtool.artifacts.manifest import RunDir
from segtool.artifacts.tables import load_segments
from segtool.config.loader import load_config
from segtool.pipeline import segment as stage

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "prefs" / "hh-helpful-tiny.jsonl.gz"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGTOOL_CACHE", str(tmp_path / "cache"))


def tiny(workdir, *sets, data=None):
    cfg, _ = load_config(preset="tiny", overrides=list(sets), workdir=str(workdir), data=str(data) if data else None)
    return cfg


def shard_hashes(workdir):
    rec = RunDir(workdir).head("segment")
    return {name: meta["sha256"] for name, meta in rec["files"].items()}


def test_outputs_follow_the_rules(tmp_path):
    from transformers import AutoModelForCausalLM

    from segtool.inputs.formatting import Encoder
    from segtool.inputs.rows import read_pairs
    from segtool.models.loading import load_tokenizer, resolve_model_source

    cfg = tiny(tmp_path / "run", "data.max_rows=12", "segment.shard_rows=5")
    result = stage.run(cfg, quiet=True)
    assert result.outcome == "computed" and result.record["status"] == "complete"
    assert sorted(result.record["files"]) == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    _, table = load_segments(RunDir(cfg.run.workdir))
    assert table.column_names == ["row_id", "side", "prompt_token_ids", "response_token_ids", "entropy", "segment_ends"]
    assert table["row_id"].to_pylist() == [i for i in range(12) for _ in range(2)]
    assert table["side"].to_pylist() == ["chosen", "rejected"] * 12
    assert table.schema.field("entropy").type.value_type == pa.float32()
    assert table.schema.field("segment_ends").type.value_type == pa.int32()

    tok = load_tokenizer(resolve_model_source(cfg.model), cfg.model)
    enc = Encoder.create(tok, cfg.tokenize.max_len, cfg.tokenize.max_prompt_len)
    pairs = read_pairs(cfg.data.path, max_rows=12).pairs
    model = AutoModelForCausalLM.from_pretrained(cfg.model.path).eval()
    for i in range(table.num_rows):
        pair = pairs[i // 2]
        side = table["side"][i].as_py()
        prompt, response = enc.encode(pair.prompt, getattr(pair, side))
        # The stage used the one formatting function: same prompt and response tokens.
        assert table["prompt_token_ids"][i].as_py() == prompt
        assert table["response_token_ids"][i].as_py() == response
        entropy = np.array(table["entropy"][i].as_py())
        ends = table["segment_ends"][i].as_py()
        n = len(response)
        assert response[-1] == tok.eos_token_id and len(entropy) == n
        # Entropy rule + default EOS policy, recomputed by hand from the stored entropies.
        expected = [j for j in range(n - 2) if entropy[j] > cfg.segment.c_ent] + [n - 2]
        assert ends == expected
        if i < 4:  # stored entropies equal a float64 brute force over full logits
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([prompt + response])).logits[0].double(), -1)
            ref = -(logp.exp() * logp).sum(-1)[len(prompt):].numpy()
            assert np.max(np.abs(entropy - ref)) < 1e-4
    m = result.record["metrics"]
    assert m["sequences"] == 24 and m["segments"] == sum(len(e) for e in table["segment_ends"].to_pylist())


def test_rerun_is_a_noop_and_force_recomputes(tmp_path):
    cfg = tiny(tmp_path / "run", "data.max_rows=4")
    first = stage.run(cfg, quiet=True)
    again = stage.run(cfg, quiet=True)
    assert again.outcome == "up-to-date" and again.artifact_id == first.artifact_id
    assert stage.run(cfg, quiet=True, force=True).outcome == "computed"
    # A changed identity key makes a new artifact; an execution knob does not.
    assert stage.run(tiny(tmp_path / "run", "data.max_rows=4", "segment.batch_tokens=999"), quiet=True).outcome == "up-to-date"
    other = stage.run(tiny(tmp_path / "run", "data.max_rows=4", "segment.c_ent=3.0"), quiet=True)
    assert other.artifact_id != first.artifact_id
    assert len(RunDir(cfg.run.workdir).read()["artifacts"]) == 2


def test_identity_is_stable_across_paths(tmp_path):
    """Same data and model bytes at other paths, another run directory: same id, same bytes."""
    data_copy = tmp_path / "elsewhere" / "prefs.jsonl.gz"
    data_copy.parent.mkdir()
    shutil.copy(DATA, data_copy)
    model_copy = tmp_path / "models" / "tiny"
    shutil.copytree(ROOT / "data" / "models" / "tinystories-656k", model_copy)
    a = stage.run(tiny(tmp_path / "a", "data.max_rows=3", data=DATA), quiet=True)
    b = stage.run(tiny(tmp_path / "deep" / "b", "data.max_rows=3", f"model.path={model_copy}", data=data_copy), quiet=True)
    assert a.artifact_id == b.artifact_id
    assert shard_hashes(tmp_path / "a") == shard_hashes(tmp_path / "deep" / "b")


def test_crash_mid_write_leaves_partial_record_and_resume_finishes(tmp_path, monkeypatch):
    cfg = tiny(tmp_path / "run", "data.max_rows=9", "segment.shard_rows=3")
    real_write = pq.write_table
    calls = {"n": 0}

    def dying_write(table, where, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # second shard: write half a file, then die
            Path(where).write_bytes(b"PAR1 half")
            raise KeyboardInterrupt
        return real_write(table, where, **kw)

    monkeypatch.setattr(pq, "write_table", dying_write)
    with pytest.raises(KeyboardInterrupt):
        stage.run(cfg, quiet=True)
    rec = RunDir(cfg.run.workdir).head("segment")
    assert rec["status"] == "partial" and list(rec["files"]) == ["part-00000.parquet"]
    art_dir = RunDir(cfg.run.workdir).path_of(rec)
    assert sorted(p.name for p in art_dir.iterdir()) == ["part-00000.parquet"]  # no half file, no temp

    monkeypatch.setattr(pq, "write_table", real_write)
    (art_dir / ".part-00001.parquet.x.tmp").write_bytes(b"left by a kill -9")
    (art_dir / "part-00002.parquet").write_bytes(b"written, never recorded")
    # Resuming with another shard size must keep the original one (shard k = rows 3k..3k+2).
    cfg = tiny(tmp_path / "run", "data.max_rows=9", "segment.shard_rows=4")
    resumed = stage.run(cfg, quiet=True, resume=True)
    assert resumed.outcome == "resumed" and resumed.record["status"] == "complete"
    assert sorted(p.name for p in art_dir.iterdir()) == [f"part-0000{k}.parquet" for k in range(3)]
    straight = stage.run(tiny(tmp_path / "straight", "data.max_rows=9", "segment.shard_rows=3"), quiet=True)
    assert shard_hashes(tmp_path / "run") == shard_hashes(tmp_path / "straight")
    assert resumed.record["metrics"]["segments"] == straight.record["metrics"]["segments"]


def test_sigkill_leaves_no_complete_record_and_resume_matches_straight_run(tmp_path):
    """A real `kill -9` of the CLI in the middle of the stage."""
    workdir = tmp_path / "killed"
    sets = ["--set", "data.max_rows=96", "--set", "segment.shard_rows=6", "--set", "segment.batch_tokens=1024"]
    env = {**os.environ, "SEGTOOL_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "segtool", "segment", "--preset", "tiny", "--workdir", str(workdir), "--json", *sets]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = workdir / "manifest.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        if manifest.exists():
            arts = json.loads(manifest.read_text())["artifacts"]
            if any(len(a["files"]) >= 2 for a in arts.values()):
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    arts = json.loads(manifest.read_text())["artifacts"]
    assert [a["status"] for a in arts.values()] == ["partial"], "killed mid-run: the record must stay partial"
    (rec,) = arts.values()
    assert 2 <= len(rec["files"]) < 16

    done = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outcome"] == "resumed"
    straight = tmp_path / "straight"
    cmd[cmd.index("--workdir") + 1] = str(straight)
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=300)
    assert shard_hashes(workdir) == shard_hashes(straight)
    assert len(shard_hashes(workdir)) == 16


@pytest.mark.parametrize(
    "strategy,sets,check",
    [
        ("token", [], lambda ends, n: ends == list(range(n - 1))),
        ("bandit", [], lambda ends, n: ends == [n - 1]),
        ("ngram", ["segment.n=4"], lambda ends, n: ends == [j for j in range(3, n - 2, 4)] + [n - 2]),
        ("punct", [], lambda ends, n: ends[-1] == n - 2),
        ("entropy", ["segment.eos_in_last_segment=true"], lambda ends, n: ends[-1] == n - 1),
    ],
)
def test_other_strategies(tmp_path, strategy, sets, check):
    cfg = tiny(tmp_path / "run", "data.max_rows=3", f"segment.strategy={strategy}", *sets)
    stage.run(cfg, quiet=True)
    _, table = load_segments(RunDir(cfg.run.workdir))
    for ids, ends in zip(table["response_token_ids"].to_pylist(), table["segment_ends"].to_pylist()):
        assert check(ends, len(ids)), (strategy, ends, len(ids))


def test_punct_table_marks_sentence_ends():
    from transformers import AutoTokenizer

    from segtool.core.boundaries import punct_table

    tok = AutoTokenizer.from_pretrained(ROOT / "data" / "models" / "tinystories-656k")
    table = punct_table(tok)
    # Ids 3, 4, 8, 10 decode to "\n", "!", ",", "." (the tokenizer's vocabulary); 5 is '"', 11 is "0".
    assert table[[3, 4, 8, 10]].all() and not table[[5, 11, 0]].any()


def test_a_response_without_tokens_is_found_before_the_run_directory_is_touched():

    from segtool.errors import InputError
    from segtool.inputs.rows import Pair, ReadReport
    from segtool.pipeline.segment import drop_untokenizable

    class DropsEquals:  # a tokenizer that keeps no character of "===": only the EOS is left
        def encode_response(self, text, prompt_len):
            return [5] * len(text.replace("=", "")) + [2]

    def report():
        return ReadReport([Pair(0, ({"role": "user", "content": "q"},), "ok", "no"),
                           Pair(1, ({"role": "user", "content": "q"},), "fine", "===")], [])

    with pytest.raises(InputError) as exc:
        drop_untokenizable(report(), DropsEquals(), "d.jsonl", skip_invalid=False)
    assert exc.value.message == "d.jsonl: row 1: field 'rejected' has no tokens for this model's tokenizer"
    skipped = report()
    drop_untokenizable(skipped, DropsEquals(), "d.jsonl", skip_invalid=True)
    assert [p.row_id for p in skipped.pairs] == [0] and len(skipped.invalid) == 1
