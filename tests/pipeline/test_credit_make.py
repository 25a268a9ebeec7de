"""`segtool credit make` end to end on a small source: balanced pairs, exact spans in characters and
tokens, a preference file every stage reads, the manifest record, and one-line errors."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from segtool.config.loader import load_config
from segtool.credit import sources
from segtool.credit.defects import inject
from segtool.credit.gold import GoldScorer
from segtool.errors import ConfigError
from segtool.inputs.formatting import Encoder
from segtool.inputs.rows import read_pairs
from segtool.pipeline import credit_make

STORIES = [
    "Once upon a time, there was a girl named Lily. She had a dog named Max. Lily and Max went to the park. "
    "They played with 2 balls and 3 sticks. Lily was very happy.",
    "Tom had a red car. He was proud of it. One day, Tom gave the car to Sam. Sam said thank you 3 times. "
    "They were best friends.",
    "Mia saw a bird in a tree. The bird was singing a song. Mia sang with the bird. Her mom came to listen. "
    "It was a lovely day for Mia and Ben.",
    "Ben baked 12 cookies. He ate 2 of them, so 12 - 2 = 10 were left. He gave 5 to Anna. Anna was very glad. "
    "She said Ben is kind.",
]


def write_source(path: Path) -> Path:
    rows = [{"prompt": f"Tell story {i}.", "response": s, "note": "extra fields are fine"}
            for i, s in enumerate(STORIES)]
    rows.append({"chosen": "\n\nHuman: Say hi.\n\nAssistant: Hi there! I am glad to see you. How can I help you today?",
                 "rejected": "\n\nHuman: Say hi.\n\nAssistant: No."})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def encoder(tiny_tokenizer):
    return Encoder.create(tiny_tokenizer, 512, 384)


def test_pairs_are_balanced_exact_and_reproducible(tmp_path, encoder):
    rows = sources.read_source(str(write_source(tmp_path / "src.jsonl"))).rows
    toxic = sources.read_lines(sources.TOXIC_SENTENCES, "toxic sentences")
    families = ("swap", "duplicate", "offtopic", "toxic", "negation", "truncation")
    opts = credit_make.MakeOptions(source="src", families=families, pairs=24, seed=7)
    made = credit_make.make_pairs(rows, opts, encoder, toxic)
    assert len(made.records) == 24 and made.summary["short"] == {}
    cells = Counter((r["defect_type"], r["defect_position"]) for r in made.records)
    # 4 pairs per family, positions dealt round-robin: beginning, middle, end, beginning
    assert all(cells[f, "beginning"] == 2 and cells[f, "middle"] == cells[f, "end"] == 1 for f in families)
    assert Counter(r["defect_type"] for r in made.records[:6]) == dict.fromkeys(families, 1)  # families interleave
    by_row = {r.source_row: r for r in rows}
    pool = sources.offtopic_pool(rows)
    for rec in made.records:
        clean = by_row[rec["source_row"]]
        assert rec["chosen"] == clean.response  # the chosen side is the clean response, untouched
        assert rec["source"] == "src.jsonl"
        s, e = rec["defect_span"]
        assert 0 <= s < e <= len(rec["rejected"])
        others = [t for i, t in pool if rows[i].source_row != rec["source_row"]]
        again = inject(rec["defect_type"], clean.response, random.Random(rec["seed"]), rec["defect_position"],
                       offtopic=others, toxic=toxic)
        assert (again.text, list(again.span)) == (rec["rejected"], rec["defect_span"])  # the seed reproduces it
        a, b = rec["defect_token_span"]
        ids = encoder.encode_response(rec["rejected"], 0)[:-1]
        offsets = encoder.response_offsets(rec["rejected"])
        assert 0 <= a < b <= len(ids)
        assert all(x < e and y > s for x, y in offsets[a:b])  # every token in it overlaps the span ...
        assert not any(x < e and y > s for x, y in offsets[:a] + offsets[b:])  # ... and no other does
    # the same options give the same pairs
    assert credit_make.make_pairs(rows, opts, encoder, toxic).records == made.records


def test_default_families_are_those_the_source_admits(tmp_path, encoder):
    path = tmp_path / "src.jsonl"
    path.write_text(json.dumps({"prompt": "Hi", "response": "Lily was happy. She ran home. The sun was warm."}) + "\n"
                    + json.dumps({"prompt": "Hi", "response": "Tom had a hat. He liked it a lot. It was blue."}) + "\n")
    rows = sources.read_source(str(path)).rows
    opts = credit_make.MakeOptions(source=str(path), pairs=6)
    made = credit_make.make_pairs(rows, opts, encoder, ["You are an idiot."])
    assert "arithmetic" not in made.summary["families"]  # no arithmetic step anywhere
    assert {"duplicate", "toxic", "negation", "truncation", "offtopic"} <= set(made.summary["families"])


def test_defects_beyond_max_len_are_skipped_and_counted(tmp_path, tiny_tokenizer):
    rows = sources.read_source(str(write_source(tmp_path / "src.jsonl"))).rows
    short = Encoder.create(tiny_tokenizer, 40, 20)  # prompts of 13-20 tokens leave 20-27 for the response
    opts = credit_make.MakeOptions(source="src", families=("truncation",), positions=("end",), pairs=5)
    made = credit_make.make_pairs(rows, opts, short, [])
    assert made.summary["unseen"]["truncation"] >= 4  # the stories end well past 27 tokens
    assert made.summary["short"] == {"truncation/end": 5 - len(made.records)}
    for rec in made.records:
        prompt = short.encode_prompt(({"role": "user", "content": rec["prompt"]},))
        kept = short.encode_response(rec["rejected"], len(prompt))
        assert rec["defect_token_span"][1] <= len(kept) - 1  # the defect is inside what the RM sees


def test_run_writes_every_output_format(tmp_path):
    cfg, _ = load_config(preset="tiny", workdir=str(tmp_path / "run"))
    src = str(write_source(tmp_path / "src.jsonl"))
    for name in ("pairs.parquet", "pairs.jsonl.gz"):
        opts = credit_make.MakeOptions(source=src, families=("duplicate", "negation"), pairs=6, out=tmp_path / name)
        result = credit_make.run(cfg, opts, quiet=True)
        assert result.output == str(tmp_path / name) and result.summary["pairs"] == 6
        report = read_pairs(str(tmp_path / name))  # an ordinary preference file; the defect fields are extras
        assert len(report.pairs) == 6 and not report.invalid
    assert not (tmp_path / "run").exists()  # --out writes no run directory
    (tmp_path / "afile").write_text("")
    blocked = credit_make.MakeOptions(source=src, families=("negation",), pairs=1, out=tmp_path / "afile" / "x.jsonl")
    with pytest.raises(ConfigError, match="cannot write --out"):
        credit_make.run(cfg, blocked, quiet=True)


def segtool(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "segtool", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_cli_end_to_end_into_a_run_directory(tmp_path):
    src = write_source(tmp_path / "src.jsonl")
    workdir = tmp_path / "run"
    args = ["credit", "make", "--preset", "tiny", "--source", str(src), "--pairs", "18", "--workdir", str(workdir),
            "--families", "swap,duplicate,offtopic,toxic,negation,truncation"]
    proc = segtool(*args, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["outcome"] == "computed" and doc["pairs"] == 18 and doc["source_rows"] == 5 and doc["short"] == {}
    manifest = json.loads((workdir / "manifest.json").read_text())
    record = manifest["artifacts"][doc["artifact_id"]]
    assert record["stage"] == "credit-make" and record["status"] == "complete" and "pairs.parquet" in record["files"]
    assert Path(doc["output"]) == workdir / record["dir"] / "pairs.parquet"
    again = segtool(*args, cwd=tmp_path)  # same identity: nothing to do, and the table says so
    assert again.returncode == 0, again.stderr
    assert "already complete" in again.stdout and "family" in again.stdout
    # every stage reads the file: segment it with the tiny model
    seg = segtool("segment", "--preset", "tiny", "--data", doc["output"], "--workdir", str(tmp_path / "seg"), "--json",
                  cwd=tmp_path)
    assert seg.returncode == 0, seg.stderr
    assert json.loads(seg.stdout)["rows"]["pairs"] == 18


@pytest.mark.slow
def test_cli_errors_name_the_problem_and_leave_nothing(tmp_path):
    src = write_source(tmp_path / "src.jsonl")
    with open(src, "a") as fh:
        fh.write(json.dumps({"prompt": "Hi"}) + "\n")  # line 6: no response, no chosen
    workdir = tmp_path / "run"
    base = ["credit", "make", "--preset", "tiny", "--workdir", str(workdir)]
    bad_row = segtool(*base, "--source", str(src), "--pairs", "3", cwd=tmp_path)
    assert bad_row.returncode == 1 and bad_row.stdout == ""
    first, hint = bad_row.stderr.splitlines()[:2]
    assert first.startswith("error: ") and f"{src} line 6" in first and "'chosen'" in first
    assert hint.startswith("hint: ") and "--skip-invalid" in hint
    assert not workdir.exists()
    unknown = segtool(*base, "--source", str(src), "--families", "swap,typo", cwd=tmp_path)
    assert unknown.returncode == 1 and "error: --families: unknown family 'typo'" in unknown.stderr
    assert "Traceback" not in unknown.stderr and not workdir.exists()
    skipped = segtool(*base, "--source", str(src), "--pairs", "3", "--skip-invalid", "--json", cwd=tmp_path)
    assert skipped.returncode == 0, skipped.stderr
    assert json.loads(skipped.stdout)["invalid_skipped"] == 1
    missing = segtool(*base, "--source", str(tmp_path / "nope.jsonl"), cwd=tmp_path)
    assert missing.returncode == 1 and "no such file" in missing.stderr and "hint: " in missing.stderr
    data = segtool(*base, "--data", str(src), cwd=tmp_path)  # --data would be silently ignored: refused
    assert data.returncode == 2 and "reads --source, not --data" in data.stderr


@pytest.mark.slow
def test_sft_source_keeps_finished_clean_samples(tmp_path):
    cfg, _ = load_config(preset="tiny", workdir=str(tmp_path / "run"))
    opts = credit_make.MakeOptions(source="sft", families=("duplicate", "truncation"), pairs=4, samples=12, seed=3,
                                   out=tmp_path / "sft.jsonl")
    result = credit_make.run(cfg, opts, quiet=True)
    stats = result.summary["sft"]
    assert stats["samples"] == 12 and stats["kept"] + stats["no_eos"] + stats["gold_defective"] == 12
    records = [json.loads(line) for line in (tmp_path / "sft.jsonl").read_text().splitlines()]
    assert len(records) == 4
    prompts = set(sources.read_lines(sources.STORY_PROMPTS, "story prompts"))
    for rec in records:
        assert rec["source"] == "sft-samples" and rec["prompt"] in prompts
        assert "<|end_story|>" not in rec["chosen"]  # the model's spelled-out end marker is not part of the story
        assert GoldScorer().counts(rec["chosen"])["truncation"] == 0
