"""Reading the official tools' judgment files: bad rows stop with the file, row and field named;
LC difficulty lookup for partial or reordered annotation files."""

import json

import pytest

from segtool.errors import InputError
from segtool.eval import benchmarks, stored


def _alpaca_row(instruction="hi", pref=1.7):
    return {"instruction": instruction, "output_1": "base", "output_2": "model out", "preference": pref,
            "generator_1": "gpt4_1106_preview", "generator_2": "m"}


def test_alpaca_rows_name_file_row_and_field(tmp_path):
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps([_alpaca_row(), {**_alpaca_row(), "preference": "high"}]))
    with pytest.raises(InputError) as err:
        stored.alpaca_rows(path)
    assert err.value.message.startswith(f"{path}: row 1: field 'preference' must be a number in [1, 2] or null")
    assert "annotations.json" in err.value.hint
    path.write_text(json.dumps([{k: v for k, v in _alpaca_row().items() if k != "output_2"}]))
    with pytest.raises(InputError, match="row 0: field 'output_2'"):
        stored.alpaca_rows(path)
    path.write_text(json.dumps([_alpaca_row(pref=3.5)]))
    with pytest.raises(InputError, match=r"outside \[1, 2\]"):
        stored.alpaca_rows(path)
    path.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        stored.alpaca_rows(path)


def test_difficulty_positions():
    official = [q.turns[0] for q in benchmarks.questions("alpaca")]
    assert stored.difficulty_positions(official[:3]) == ([0, 1, 2], "positional")
    assert stored.difficulty_positions([official[10], official[2]]) == ([10, 2], "matched by instruction")
    positions, why = stored.difficulty_positions([official[0], "not an alpaca instruction"])
    assert positions is None and why == "1 instructions are not AlpacaEval's"


def test_alpaca_metrics_on_a_small_file_by_hand():
    official = [q.turns[0] for q in benchmarks.questions("alpaca")]
    rows = [_alpaca_row(official[i], p) for i, p in enumerate([2.0, 1.0, 1.5, None, 1.75])]
    m = stored.alpaca_metrics(rows)["m"]
    # valid x = (1, 0, .5, .75): WR 56.25; 1 unparsed; draws 1; wins 2 (x > .5), base wins 1
    assert (m["win_rate"], m["n_total"], m["n_unparsed"], m["n_draws"], m["n_wins"], m["n_wins_base"]) == (56.25, 4, 1, 1, 2, 1)
    assert m["avg_length"] == len("model out")
    assert m["length_controlled_winrate"] is None and "not computed" in m["lc_note"]  # all length deltas equal


def test_arena_and_mtbench_records_are_validated(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "arena.jsonl", [{"question_id": "q", "model": "m", "games": [{"score": "A>B"}, {"verdict": "x"}]}])
    with pytest.raises(InputError, match=r"line 1: games\[1\]: field 'score'"):
        stored.arena_records(path)
    path = write_jsonl(tmp_path / "mt.jsonl", [{"model": "m", "turn": 1, "score": 5}, {"model": "m", "turn": 3, "score": 5}])
    with pytest.raises(InputError, match="line 2: field 'turn' must be 1 or 2"):
        stored.mtbench_records(path)
    path = write_jsonl(tmp_path / "bad.jsonl", ['{"model": "m"', {"model": "m"}])
    with pytest.raises(InputError, match="line 1: not valid JSON"):
        stored.mtbench_records(path)
    with pytest.raises(InputError, match="not found"):
        stored.mtbench_records(tmp_path / "missing.jsonl")


def test_arena_token_lengths_from_answer_files():
    lens = stored.arena_token_lengths(benchmarks.DATA / "arena_hard" / "model_answer" / "gpt-4-0314.jsonl.gz")
    assert len(lens["gpt-4-0314"]) == 500
    assert int(sum(lens["gpt-4-0314"]) / 500) == 423  # the published avg_tokens of the baseline (leaderboard 2024-07-31)
