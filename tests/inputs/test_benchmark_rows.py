"""RewardBench 2 and RM-Bench rows from local JSONL and Parquet files in the hub datasets' schemas:
what is read, and one-line errors naming the row and field (a missing RM-Bench style variant among them)."""

import sys
import types

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from segtool.errors import InputError
from segtool.inputs.benchmark_rows import read_candidate_rows


def rb2(key="0", subset="Math", chosen=("right",), rejected=("wrong a", "wrong b", "wrong c"), **extra):
    """A row as allenai/reward-bench-2 ships it (its count columns included)."""
    return {"id": key, "prompt": "What is 2+2?", "chosen": list(chosen), "rejected": list(rejected),
            "num_correct": len(chosen), "num_incorrect": len(rejected), "total_completions": len(chosen) + len(rejected),
            "models": ["m"] * (len(chosen) + len(rejected)), "subset": subset, **extra}


def rmb(key="chat/0", domain="chat", chosen=("c1", "c2", "c3"), rejected=("r1", "r2", "r3")):
    """A row as THU-KEG/RM-Bench ships it."""
    return {"id": key, "prompt": "Say hi.", "chosen": list(chosen), "rejected": list(rejected), "domain": domain}


def test_rewardbench2_jsonl_and_parquet_read_the_same(tmp_path, write_jsonl):
    rows = [rb2(), rb2("ref:3", "Ties"), rb2("tied:3", "Ties", chosen=("4", "four", "2+2=4"))]
    jsonl = write_jsonl(tmp_path / "rb2.jsonl", rows)
    parquet = tmp_path / "rb2.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    from_jsonl = read_candidate_rows("rewardbench2", str(jsonl)).pairs
    assert from_jsonl == read_candidate_rows("rewardbench2", str(parquet)).pairs
    first, _, tied = from_jsonl
    assert first.prompt == ({"role": "user", "content": "What is 2+2?"},) and first.group == "Math"
    assert first.chosen == ("right",) and first.rejected == ("wrong a", "wrong b", "wrong c")
    assert tied.id == "tied:3" and len(tied.chosen) == 3 and tied.row_id == 2


@pytest.mark.parametrize("bad, field, problem", [
    (rb2(chosen=("a", "b")), "chosen", "2 responses outside the Ties subset"),
    (rb2(rejected=()), "rejected", "non-empty list"),
    (rb2(rejected=("x", " ")), "rejected[1]", "not a non-empty string"),
    ({**rb2(), "num_correct": 2}, "num_correct", "is 2 but the row has 1"),
    (rb2("7", "Ties"), "id", "not ref:N or tied:N"),
    (rb2("tied:1", "Ties"), "chosen", "one answer in a tied: row"),
    ({k: v for k, v in rb2().items() if k != "subset"}, "subset", "is missing"),
])
def test_rewardbench2_bad_rows(tmp_path, write_jsonl, bad, field, problem):
    path = write_jsonl(tmp_path / "rb2.jsonl", [rb2(), bad])
    with pytest.raises(InputError) as err:
        read_candidate_rows("rewardbench2", str(path))
    assert err.value.message.startswith(f"{path} line 2: field '{field}'") and problem in err.value.message
    assert err.value.hint


def test_rmbench_rows_and_domains(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "rmb.jsonl", [rmb(), rmb("s/1", "safety-refuse"), rmb("s/2", "safety-response")])
    rows = read_candidate_rows("rmbench", str(path)).pairs
    assert [r.group for r in rows] == ["chat", "safety", "safety"]  # safety-* grouped as upstream does
    assert rows[0].chosen == ("c1", "c2", "c3") and rows[0].rejected == ("r1", "r2", "r3")


def test_rmbench_missing_variant_is_an_error_or_skipped(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "rmb.jsonl", [rmb(), rmb("chat/1", rejected=("r1", "r2")), rmb("chat/2")])
    with pytest.raises(InputError) as err:
        read_candidate_rows("rmbench", str(path))
    assert err.value.message == f"{path} line 2: field 'rejected' has 2 style variants, not 3"
    assert "concise, detailed plain and detailed markdown" in err.value.hint
    report = read_candidate_rows("rmbench", str(path), skip_invalid=True)
    assert [r.id for r in report.pairs] == ["chat/0", "chat/2"] and len(report.invalid) == 1


def test_rmbench_unknown_domain(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "rmb.jsonl", [rmb(domain="poetry")])
    with pytest.raises(InputError, match="field 'domain' is 'poetry'"):
        read_candidate_rows("rmbench", str(path))


def test_hub_names_load_through_the_datasets_library(tmp_path, monkeypatch):
    """A hub name goes to datasets.load_dataset(name, config, split=...), the rows to the benchmark's parser
    (a stand-in module: no network)."""
    calls = []

    def load_dataset(name, config=None, split=None):
        calls.append((name, config, split))
        return [rb2(), rb2("1", "Focus")]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.chdir(tmp_path)
    report = read_candidate_rows("rewardbench2", "allenai/reward-bench-2", split="test")
    assert calls == [("allenai/reward-bench-2", None, "test")]
    assert [r.group for r in report.pairs] == ["Math", "Focus"]
