"""`segtool eval rm --format rewardbench2|rmbench` end to end with the tiny preset's reward model: every
candidate is scored on its own, as `segtool.reward_model` scores it, and the report is the official
arithmetic over those scores."""

import json

import pyarrow.parquet as pq
import pytest

import segtool.reward_model
from segtool.artifacts.manifest import RunDir
from segtool.config.loader import load_config
from segtool.eval import rm_benchmarks
from segtool.inputs.benchmark_rows import read_candidate_rows
from segtool.pipeline import train_rm

SMALL = ["data.max_rows=16", "train_rm.global_batch=8", "train_rm.micro_batch=4", "train_rm.max_steps=1"]
RB2_ROWS = [
    {"id": "0", "subset": "Focus", "prompt": "Tell me about the sea.",
     "chosen": ["The sea is big and blue."], "rejected": ["Cats.", "The sky is green.", "No."]},
    {"id": "1", "subset": "Math", "prompt": "What is 2+2?", "chosen": ["It is 4."], "rejected": ["5", "It is 3.", "22"]},
    {"id": "ref:0", "subset": "Ties", "prompt": "Name a colour.", "chosen": ["Red."], "rejected": ["A dog."]},
    {"id": "tied:0", "subset": "Ties", "prompt": "Name a colour.", "chosen": ["Red.", "Blue."], "rejected": ["A dog.", "Tuesday."]},
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("rm") / "run"
    train_rm.run(load_config(preset="tiny", overrides=SMALL, workdir=str(workdir))[0], quiet=True)
    return workdir


def test_rewardbench2_on_a_tiny_file(workdir, tmp_path, write_jsonl, cli):
    data = write_jsonl(tmp_path / "rb2.jsonl", RB2_ROWS)
    code, out, err = cli("eval", "rm", "--preset", "tiny", "--workdir", workdir,
                             "--data", data, "--format", "rewardbench2", "--json")
    assert code == 0, err
    record = json.loads(out)
    metrics = record["metrics"]
    assert metrics["format"] == "rewardbench2" and metrics["rows"] == 4
    assert set(metrics["subsets"]) == {"Focus", "Math", "Ties"} and metrics["subsets"]["Ties"]["prompts"] == 1

    rundir = RunDir(workdir)
    head = rundir.head("eval-rm")
    table = pq.read_table(rundir.path_of(head, "scores.parquet")).to_pylist()
    assert [len(t["scores_chosen"]) for t in table] == [1, 1, 1, 2]
    assert [len(t["scores_rejected"]) for t in table] == [3, 3, 1, 2]
    # the stored scores are e(x, y) of each response alone, as the Python API computes it
    rm = segtool.reward_model.load(workdir)
    for t, source in zip(table, RB2_ROWS):
        expected = rm.scores([(source["prompt"], text) for text in source["chosen"] + source["rejected"]])
        assert t["scores_chosen"] + t["scores_rejected"] == pytest.approx(expected, abs=1e-5)
    # and the report is the official arithmetic over them
    rows = read_candidate_rows("rewardbench2", str(data)).pairs
    recomputed, _ = rm_benchmarks.rewardbench2_report(rows, [(t["scores_chosen"], t["scores_rejected"]) for t in table])
    assert metrics["score"] == pytest.approx(recomputed["score"])
    assert metrics["score"] == pytest.approx(sum(s["score"] for s in metrics["subsets"].values()) / 3)

    code, out, _ = cli("eval", "rm", "--preset", "tiny", "--workdir", workdir,
                           "--data", data, "--format", "rewardbench2")
    assert code == 0 and "RewardBench 2" in out and "Ties" in out and "overall" in out


def test_rmbench_table_and_a_bad_format(workdir, tmp_path, write_jsonl, cli):
    rows = [{"id": f"{d}/0", "domain": d, "prompt": "Say hello.", "chosen": ["Hello.", "Hello there, friend.", "**Hello** there."],
             "rejected": ["Bye.", "Goodbye, friend.", "**Goodbye** now."]} for d in ("chat", "safety-refuse")]
    data = write_jsonl(tmp_path / "rmb.jsonl", rows)
    code, out, err = cli("eval", "rm", "--preset", "tiny", "--workdir", workdir,
                             "--data", data, "--format", "rmbench")
    assert code == 0, err
    assert "RM-Bench" in out and all(word in out for word in ("chat", "safety", "hard", "normal", "easy"))
    code, out, err = cli("eval", "rm", "--preset", "tiny", "--workdir", workdir,
                             "--data", data, "--format", "rewardbench")
    assert code == 1 and err.startswith("error: unknown eval rm format 'rewardbench'") and "hint: use one of" in err
