"""Arena-Hard v2.0: verdict labels, battle scores, Bradley-Terry scores with and without style control on
synthetic battles with known answers, the style features against the official answer metadata and a
hand-worked example, per-category judging, the skipped creative-writing category, and bad question rows."""

import gzip
import json
import math

import numpy as np
import pytest

from segtool.errors import InputError
from segtool.eval import arena_style, arena_v2_judging, benchmarks, reports
from segtool.eval import arena_v2_metrics as v2
from segtool.eval.judges.cache import JudgeCache

PATTERNS = benchmarks.arena_v2_judge_config()["regex_patterns"]


@pytest.mark.parametrize("label", list(v2.LABEL_SCORES))
def test_every_label_is_read_from_double_brackets(label):
    assert v2.parse_verdict(f"My final verdict is [[{label}]].", PATTERNS) == label


def test_verdict_parsing_follows_get_score():
    assert v2.parse_verdict("first [[A>B]], finally [[b>>a]]", PATTERNS) == "B>>A"  # upper-cased, last match wins
    assert v2.parse_verdict("verdict: [A=B]", PATTERNS) == "A=B"  # the single-bracket pattern comes second
    assert v2.parse_verdict("[A>B] but [[B>A]]", PATTERNS) == "B>A"  # the first pattern with a match decides
    assert v2.parse_verdict("no label here", PATTERNS) is None


def test_question_scores_from_the_models_side():
    # game 2 (A = model) first, then game 1 (A = baseline) as one minus A's score; strong labels x3
    assert v2.question_scores("B>>A", "A=B") == [0.5, 1.0, 1.0, 1.0]
    assert v2.question_scores("A>B", "B<A") == [1.0, 0.0]
    assert v2.question_scores("A<<B", "A>B") == [1.0, 1.0, 1.0, 1.0]
    assert v2.question_scores(None, "A>B") is None
    assert v2.question_scores("A>B>A", "A>B") is None  # a label outside the score table drops the question


def _flat_style(n):
    """Every battle the same style (model 100 tokens, baseline 100 tokens, no markdown)."""
    return np.array([[100, 0, 0, 0]] * n), np.array([[100, 0, 0, 0]] * n)


def test_a_model_that_always_wins_gets_the_top_score():
    outcomes = [1.0] * 40
    model = np.array([[100 + 10 * (i % 4), i % 3, 0, i % 2] for i in range(40)])
    base = np.array([[120, 1, 2, 0]] * 40)
    s = v2.category_scores(outcomes, model, base, rounds=10)
    assert (s["score"], s["lower"], s["upper"]) == (100.0, 100.0, 100.0)
    assert (s["score_style"], s["lower_style"], s["upper_style"]) == (100.0, 100.0, 100.0)
    lost = v2.category_scores([0.0] * 40, model, base, rounds=10)
    assert lost["score"] == 0.0 and lost["score_style"] == 0.0


def test_symmetric_verdicts_give_fifty_percent():
    # each question: game 1 A>B (baseline wins), game 2 A>B (model wins) -> one win, one loss
    outcomes = [s for _ in range(30) for s in v2.question_scores("A>B", "A>B")]
    assert v2.fit_win_rate(np.array(outcomes))[0] == pytest.approx(0.5, abs=1e-9)  # the fit on all battles
    s = v2.category_scores(outcomes, *_flat_style(len(outcomes)), rounds=50)
    # the bootstrap scores scatter around it: 50 lies inside both intervals
    assert s["lower"] < 50.0 < s["upper"] and s["lower_style"] < 50.0 < s["upper_style"]
    assert s["score"] == pytest.approx(50.0, abs=2.0) and s["score_style"] == pytest.approx(50.0, abs=2.0)
    # all ties: 50% with a zero-width interval
    ties = v2.category_scores([0.5] * 20, *_flat_style(20), rounds=5)
    assert ties["lower"] == pytest.approx(50.0) and ties["upper"] == pytest.approx(50.0)


def test_without_style_the_bt_win_rate_is_the_share_of_points():
    # one model against its baseline: the MLE of sigma(b) is the mean outcome (ties count half)
    y = np.array([1.0] * 5 + [0.5] * 2 + [0.0] * 3)
    assert v2.fit_win_rate(y)[0] == pytest.approx(0.6, abs=1e-6)


def test_style_covariates_of_one_battle_by_hand():
    # model: 99 tokens, 2 headers, 0 list items, 1 bold; baseline: 199 tokens, 0, 4, 0
    # length: (99 - 199) / (99 + 199) = -100 / 298
    # densities per (tokens + 1): model (2/100, 0, 1/100), baseline (0, 4/200, 0)
    # headers (0.02 - 0) / (0.02 + 0 + 1), lists (0 - 0.02) / 1.02, bold 0.01 / 1.01
    row = arena_style.battle_covariates(np.array([[99, 2, 0, 1]]), np.array([[199, 0, 4, 0]]))[0]
    assert row == pytest.approx([-100 / 298, 0.02 / 1.02, -0.02 / 1.02, 0.01 / 1.01])


def test_style_control_coefficients_by_hand():
    """8 battles. Four where the model's answer is 300 tokens against the baseline's 100 (won 3 of 4),
    four where both are 100 tokens (won 2 of 4); no markdown anywhere.

    Length covariate: (300-100)/400 = 0.5 in the long battles, 0 in the short ones. Standardised with
    the sample std: mean 0.25, std = sqrt(8 * 0.25^2 / 7) = sqrt(1/14), so z = +-0.25 * sqrt(14) =
    +-sqrt(7/8). The markdown columns are all 0: constant, left out.
    With two covariate values the logistic fit is saturated: sigma(b + c z) equals the win share of
    each group, logit(3/4) = ln 3 and logit(1/2) = 0, so c = ln 3 / (2 sqrt(7/8)) = 0.587233 and
    b = ln 3 / 2, a style-controlled win rate sigma(ln 3 / 2) = sqrt(3) / (1 + sqrt(3)) = 63.397%,
    against 5/8 = 62.5% of points won without style control."""
    model = np.array([[300, 0, 0, 0]] * 4 + [[100, 0, 0, 0]] * 4)
    base = np.array([[100, 0, 0, 0]] * 8)
    z, kept = arena_style.standardise(arena_style.battle_covariates(model, base))
    assert kept == ["length"]
    assert z[:, 0] == pytest.approx([math.sqrt(7 / 8)] * 4 + [-math.sqrt(7 / 8)] * 4)
    y = np.array([1, 1, 1, 0, 1, 0, 1, 0], dtype=float)
    rate, coef = v2.fit_win_rate(y, z)
    assert coef == pytest.approx([math.log(3) / (2 * math.sqrt(7 / 8))], abs=1e-5)
    assert coef[0] == pytest.approx(0.587233, abs=1e-5)
    assert rate == pytest.approx(math.sqrt(3) / (1 + math.sqrt(3)), abs=1e-6)
    assert v2.fit_win_rate(y)[0] == pytest.approx(0.625, abs=1e-6)
    # the full scorer names the coefficients and leaves the constant ones out
    s = v2.category_scores(list(y), model, base, rounds=5)
    assert set(s["style_coefficients"]) == {"length", "headers", "lists", "bold"}
    assert s["style_coefficients"]["headers"] is None


def test_markdown_counts_match_the_official_metadata_of_every_baseline_answer():
    path = benchmarks.ARENA_V2_SHIPPED / "o3-mini-2025-01-31.jsonl.gz"
    rows = [json.loads(line) for line in gzip.open(path, "rt")]
    assert len(rows) == 750
    for r in rows:
        want = {k: r["metadata"][k] for k in ("header_count", "list_count", "bold_count")}
        assert arena_style.markdown_metadata(r["messages"][-1]["content"]["answer"]) == want, r["uid"]


def test_code_blocks_are_not_counted():
    text = "# Title\n```\n# not a header\n- not a list\n```\n- item\n**bold**"
    assert arena_style.markdown_counts(text) == (1, 1, 1)


def test_creative_writing_is_skipped_without_its_baseline_and_the_report_says_so():
    items = benchmarks.questions("arena-v2")
    skipped, answers = benchmarks.arena_v2_baselines(items)
    assert list(skipped) == ["creative_writing"] and "gemini-2.0-flash-001" in skipped["creative_writing"]
    assert "--creative-baseline" in skipped["creative_writing"]
    assert len(answers) == 500 and {a["model"] for a in answers.values()} == {"o3-mini-2025-01-31"}
    records = [{"uid": q.qid, "category": q.category, "baseline": "o3-mini-2025-01-31",
                "games": [{"score": "A>B"}, {"score": "A>>B"}]} for q in items if q.category == "hard_prompt"][:6]
    styles = {r["uid"]: ((120, 1, 2, 0), (100, 0, 0, 1)) for r in records}
    board = v2.report(records, styles, skipped, rounds=5)
    assert board["scored_categories"] == ["hard_prompt"] and "creative_writing" in board["skipped_categories"]
    notes = reports.notes([{"model": "m", **board}])
    assert any(n.startswith("m: category creative_writing skipped: its baseline gemini-2.0-flash-001") for n in notes)
    assert "m: scored categories: hard_prompt" in notes


def test_a_supplied_creative_baseline_is_used(tmp_path, write_jsonl):
    items = [q for q in benchmarks.questions("arena-v2") if q.category == "creative_writing"][:2]
    path = tmp_path / "gemini.jsonl"
    write_jsonl(path, [{"uid": q.qid, "model": "gemini-2.0-flash-001", "metadata": {"token_len": 7},
                        "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": {"answer": f"story {q.qid}"}}]}
                       for q in items])
    skipped, answers = benchmarks.arena_v2_baselines(items, str(path))
    assert skipped == {} and answers[items[0].qid] == {"model": "gemini-2.0-flash-001", "content": f"story {items[0].qid}", "token_len": 7}


def test_each_category_is_judged_with_its_own_system_prompt(tmp_path, scripted_judge):
    allq = benchmarks.questions("arena-v2")
    qs = [next(q for q in allq if q.category == "hard_prompt"), next(q for q in allq if q.category == "creative_writing")]
    judge = scripted_judge(lambda req: "My final verdict is [[B>A]]")
    records = arena_v2_judging.judge(judge, JudgeCache(tmp_path, judge.identity), qs, ["BASE-0", "BASE-1"],
                                     ["o3-mini-2025-01-31", "gemini-2.0-flash-001"], "m", ["MODEL-0", "MODEL-1"])
    settings = benchmarks.arena_v2_settings()
    systems = [req.messages[0][1] for req in judge.requests]
    assert systems == [settings["hard_prompt"]["system_prompt"]] * 2 + [settings["creative_writing"]["system_prompt"]] * 2
    user = judge.requests[0].messages[1][1]  # game 1: A = baseline
    assert user.index("BASE-0") < user.index("MODEL-0") and qs[0].turns[0] in user
    assert judge.requests[0].max_tokens == 16000 and judge.requests[0].temperature == 0.0
    assert [r["baseline"] for r in records] == ["o3-mini-2025-01-31", "gemini-2.0-flash-001"]
    assert [g["score"] for g in records[0]["games"]] == ["B>A", "B>A"]


def test_a_malformed_question_row_names_file_row_and_field(tmp_path):
    path = tmp_path / "question.jsonl"
    path.write_text(json.dumps({"uid": "a", "category": "hard_prompt", "prompt": "hi"}) + "\n"
                    + json.dumps({"uid": "b", "category": "hard_prompt"}) + "\n")
    with pytest.raises(InputError) as err:
        benchmarks.arena_v2_questions(path)
    assert f"{path}: line 2: field 'prompt' is missing" in str(err.value)
    path.write_text(json.dumps({"uid": "a", "category": "poetry", "prompt": "hi"}) + "\n")
    with pytest.raises(InputError, match=r"line 1: field 'category' = 'poetry'"):
        benchmarks.arena_v2_questions(path)


def test_a_malformed_baseline_answer_names_file_row_and_field(tmp_path, write_jsonl):
    path = tmp_path / "gemini.jsonl"
    write_jsonl(path, [{"uid": "x", "model": "g", "messages": [{"role": "assistant", "content": {"answer": "a"}}]}])
    with pytest.raises(InputError, match=r"gemini.jsonl: line 1: field 'metadata.token_len'"):
        benchmarks.arena_v2_answers(path)


def test_the_creative_baseline_comes_from_the_hub_archive(tmp_path, write_jsonl, monkeypatch):
    items = [q for q in benchmarks.questions("arena-v2") if q.category == "creative_writing"][:2]
    local = tmp_path / "gemini-2.0-flash-001.jsonl"
    write_jsonl(local, [{"uid": q.qid, "model": "gemini-2.0-flash-001", "metadata": {"token_len": 3},
                         "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": {"answer": "tale"}}]}
                        for q in items])
    calls = []

    def download(repo_id, filename, repo_type=None):
        calls.append((repo_id, filename, repo_type))
        return str(local)

    monkeypatch.setattr(benchmarks.huggingface_hub, "hf_hub_download", download)
    benchmarks.creative_baseline_file.cache_clear()
    skipped, answers = benchmarks.arena_v2_baselines(items, "hub")
    assert skipped == {} and answers[items[1].qid]["content"] == "tale"
    benchmarks.creative_baseline_file("hub:me/arena-copy")
    assert calls == [("lmarena-ai/arena-hard-auto", "data/arena-hard-v2.0/model_answer/gemini-2.0-flash-001.jsonl", "dataset"),
                     ("me/arena-copy", "data/arena-hard-v2.0/model_answer/gemini-2.0-flash-001.jsonl", "dataset")]
    benchmarks.creative_baseline_file.cache_clear()


def test_an_unreachable_hub_or_a_missing_file_is_one_line_with_the_fix(tmp_path, monkeypatch):
    def offline(repo_id, filename, repo_type=None):
        raise OSError("network is unreachable")

    monkeypatch.setattr(benchmarks.huggingface_hub, "hf_hub_download", offline)
    benchmarks.creative_baseline_file.cache_clear()
    with pytest.raises(InputError, match=r"could not download data/arena-hard-v2.0/model_answer/gemini-2.0-flash-001"
                                         r".jsonl from the dataset lmarena-ai/arena-hard-auto \(OSError\)") as err:
        benchmarks.creative_baseline_file("hub")
    assert "give its path" in err.value.hint
    with pytest.raises(InputError, match="does not exist"):
        benchmarks.creative_baseline_file(str(tmp_path / "nope.jsonl"))
    benchmarks.creative_baseline_file.cache_clear()
