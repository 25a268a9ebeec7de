"""`segtool eval alpaca|arena|mtbench|gsm8k` at the command line: re-scoring stored judgment files
(the published AlpacaEval rows reproduced), --json, and one-line errors with exit code 1."""

import csv
import json
from pathlib import Path

import pytest

ANNOTATIONS = Path(__file__).resolve().parents[2] / "data" / "alpaca_eval" / "annotations"
EXPECTED = {r["name"]: r for r in csv.DictReader(open(ANNOTATIONS / "expected_metrics.csv"))}




@pytest.mark.parametrize("model", ["alpaca-7b", "gpt-3.5-turbo-1106", "Qwen-14B-Chat"])
def test_from_annotations_reproduces_the_published_rows(cli, model):
    path = ANNOTATIONS / f"{model}.weighted_alpaca_eval_gpt4_turbo.annotations.json.gz"
    code, out, err = cli("eval", "alpaca", "--from-annotations", path, "--json")
    assert code == 0, err
    doc = json.loads(out)
    got, want = doc["models"][model], EXPECTED[model]
    for key in ("win_rate", "length_controlled_winrate", "standard_error", "discrete_win_rate"):
        assert round(got[key], 3) == round(float(want[key]), 3), key
    for key in ("n_wins", "n_wins_base", "n_draws", "n_total", "avg_length"):
        assert got[key] == int(want[key]), key
    assert doc["benchmark"] == "alpaca" and doc["file"] == str(path)


def test_from_annotations_table(cli):
    code, out, _ = cli("eval", "alpaca", "--from-annotations", ANNOTATIONS / "alpaca-7b.weighted_alpaca_eval_gpt4_turbo.annotations.json.gz")
    assert code == 0
    assert "LC win rate" in out and "5.88" in out and "2.59" in out  # LC 5.875, WR 2.591 (published)


def test_from_judgments_arena_and_mtbench(cli, tmp_path, write_jsonl):
    arena = write_jsonl(tmp_path / "gpt-x.jsonl", [
        {"question_id": f"q{i}", "model": "gpt-x", "judge": "gpt-4-1106-preview",
         "games": [{"user_prompt": "", "judgment": "", "score": s1}, {"user_prompt": "", "judgment": "", "score": s2}]}
        for i, (s1, s2) in enumerate([("B>A", "A>B"), ("B>A", "A>B"), ("A>B", "B>A")])])  # 4 model wins, 2 baseline
    answers = write_jsonl(tmp_path / "answers" / "gpt-x.jsonl", [
        {"question_id": f"q{i}", "model_id": "gpt-x", "choices": [{"index": 0, "turns": [{"content": "a", "token_len": n}]}]}
        for i, n in enumerate([10, 20, 31])])
    code, out, err = cli("eval", "arena", "--from-judgments", arena, "--answers", answers.parent, "--json")
    assert code == 0, err
    m = json.loads(out)["models"]["gpt-x"]
    assert m["score"] == pytest.approx(100 * 2 / 3, abs=1e-3) and m["avg_tokens"] == 20 and m["battles"] == 6
    assert m["lower"] <= m["score"] <= m["upper"]
    mt = write_jsonl(tmp_path / "gpt-4_single.jsonl", [
        {"question_id": 81, "model": "a", "judge": ["gpt-4", "single-v1"], "score": 8, "turn": 1},
        {"question_id": 82, "model": "a", "judge": ["gpt-4", "single-v1"], "score": -1, "turn": 1},
        {"question_id": 81, "model": "a", "judge": ["gpt-4", "single-v1-multi-turn"], "score": 5, "turn": 2},
        {"question_id": 81, "model": "b", "judge": ["gpt-4", "single-v1"], "score": 3, "turn": 1}])
    code, out, err = cli("eval", "mtbench", "--from-judgments", mt, "--json")
    assert code == 0, err
    models = json.loads(out)["models"]
    assert models["a"] == {"turn_1": 8.0, "turn_2": 5.0, "overall": 6.5, "rated": 2, "unrated": 1}
    assert models["b"]["turn_2"] is None  # no rated turn-2 row: null in strict JSON, not NaN


def _arena_judgments(model, scores):
    return [{"question_id": f"q{i}", "model": model, "judge": "gpt-4-1106-preview",
             "games": [{"user_prompt": "", "judgment": "", "score": s1}, {"user_prompt": "", "judgment": "", "score": s2}]}
            for i, (s1, s2) in enumerate(scores)]


def test_from_judgments_arena_reads_arena_hard_autos_folder_layout(cli, tmp_path, write_jsonl):
    """model_judgment/<judge>/<model>.jsonl, one file per model (a gzipped one too), scores every model
    exactly as the same rows in one file do."""
    folder = tmp_path / "model_judgment" / "gpt-4-1106-preview"
    write_jsonl(folder / "gpt-x.jsonl", _arena_judgments("gpt-x", [("B>A", "A>B"), ("B>A", "A>B"), ("A>B", "B>A")]))
    write_jsonl(folder / "gpt-y.jsonl.gz", _arena_judgments("gpt-y", [("A>B", "B>A"), ("A>>B", "B>>A"), ("B>A", "A>B")]))
    (folder / "notes.txt").write_text("not a judgment file")
    code, out, err = cli("eval", "arena", "--from-judgments", folder, "--json")
    assert code == 0, err
    from_folder = json.loads(out)["models"]
    assert set(from_folder) == {"gpt-x", "gpt-y"}
    one_file = write_jsonl(tmp_path / "all.jsonl", _arena_judgments("gpt-x", [("B>A", "A>B"), ("B>A", "A>B"), ("A>B", "B>A")])
                           + _arena_judgments("gpt-y", [("A>B", "B>A"), ("A>>B", "B>>A"), ("B>A", "A>B")]))
    code, out, err = cli("eval", "arena", "--from-judgments", one_file, "--json")
    assert code == 0, err
    assert from_folder == json.loads(out)["models"]
    assert from_folder["gpt-x"]["score"] == pytest.approx(100 * 2 / 3, abs=1e-3) and from_folder["gpt-y"]["battles"] == 10

    empty = tmp_path / "model_judgment" / "other-judge"
    empty.mkdir()
    code, out, err = cli("eval", "arena", "--from-judgments", empty)
    assert code == 1 and out == ""
    assert err.splitlines()[0] == f"error: {empty}: no .jsonl files in this folder"
    assert err.splitlines()[1].startswith("hint: give arena-hard-auto's model_judgment/<judge>/ folder")


def test_answers_folder_includes_gzipped_answer_files(cli, tmp_path, write_jsonl):
    arena = write_jsonl(tmp_path / "gpt-x.jsonl", _arena_judgments("gpt-x", [("B>A", "A>B")]))
    write_jsonl(tmp_path / "answers" / "gpt-x.jsonl.gz", [
        {"question_id": "q0", "model_id": "gpt-x", "choices": [{"index": 0, "turns": [{"content": "a", "token_len": 12}]}]}])
    code, out, err = cli("eval", "arena", "--from-judgments", arena, "--answers", tmp_path / "answers", "--json")
    assert code == 0, err
    assert json.loads(out)["models"]["gpt-x"]["avg_tokens"] == 12


def test_bad_files_are_one_line_errors(cli, tmp_path, write_jsonl):
    bad = write_jsonl(tmp_path / "j.jsonl", [{"model": "m", "turn": 1, "score": "eight"}])
    code, out, err = cli("eval", "mtbench", "--from-judgments", bad)
    assert code == 1 and out == ""
    assert err.splitlines()[0] == f"error: {bad}: line 1: field 'score' must be a number (-1 = no rating) (got 'eight')"
    assert err.splitlines()[1].startswith("hint: give FastChat's model_judgment")


def test_nothing_to_evaluate_without_a_policy_or_model(cli, tmp_path):
    code, out, err = cli("eval", "gsm8k", "--preset", "tiny", "--workdir", tmp_path / "empty")
    assert code == 1 and out == ""
    assert "error: nothing to evaluate" in err and "hint: pass --model" in err
    assert not (tmp_path / "empty" / "artifacts").exists()


def test_the_proxy_cannot_grade_mtbench(cli, tmp_path, tiny_model_dir):
    code, out, err = cli("eval", "mtbench", "--preset", "tiny", "--workdir", tmp_path / "w", "--model", tiny_model_dir,
                         "--judge", "proxy")
    assert code == 1 and out == "" and "error: MT-Bench grades single answers on a 1-10 scale" in err
    assert not (tmp_path / "w").exists()  # refused before any answer was generated


def test_eval_help_lists_the_benchmarks(cli):
    code, out, _ = cli("eval", "--help")
    assert code == 0 and all(name in out for name in ("alpaca", "arena", "mtbench", "gsm8k", "rm"))
