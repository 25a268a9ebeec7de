"""MT-Bench single grading: prompt choice (reference answers where FastChat uses them), rating
extraction as FastChat writes it, and the turn averages with unparseable judgments dropped."""

import pytest

from segtool.errors import ConfigError
from segtool.eval import benchmarks, mtbench_judging, stored
from segtool.eval.judges.cache import JudgeCache


def _q(category):
    return next(q for q in benchmarks.questions("mtbench") if q.category == category)


def test_prompt_choice_and_reference_answers():
    refs, prompts = benchmarks.mtbench_references(), benchmarks.mtbench_judge_prompts()
    math_q, writing_q = _q("math"), _q("writing")
    name, msgs = mtbench_judging.judge_messages(math_q, ["A1", "A2"], 1, refs, prompts)
    assert name == "single-math-v1" and refs[math_q.qid][0] in msgs[1]["content"] and "A2" not in msgs[1]["content"]
    name, msgs = mtbench_judging.judge_messages(math_q, ["A1", "A2"], 2, refs, prompts)
    assert name == "single-math-v1-multi-turn"
    assert all(s in msgs[1]["content"] for s in (refs[math_q.qid][1], math_q.turns[1], "A1", "A2"))
    assert msgs[0]["content"] == prompts[name]["system_prompt"]
    name, msgs = mtbench_judging.judge_messages(writing_q, ["A1 {braces} stay", "A2"], 1, refs, prompts)
    assert name == "single-v1" and "A1 {braces} stay" in msgs[1]["content"]
    assert msgs[0]["content"] == "You are a helpful assistant."


def test_rating_values_as_fastchat_writes_them():
    assert mtbench_judging.rating_value("Rating: [[8]]") == 8 and isinstance(mtbench_judging.rating_value("[[8]]"), int)
    assert mtbench_judging.rating_value("Rating: [[7.5]]") == 7.5
    assert mtbench_judging.rating_value("I'd say [6] overall") == 6  # the fallback pattern
    assert mtbench_judging.rating_value("a fine answer, no number") == -1


def test_judging_and_averages_with_unparseable_ratings(tmp_path, scripted_judge):
    """Two questions, two turns: ratings 9 and 6 for turn 1; turn 2 gives 4 and an unreadable one.
    FastChat's averages: turn 1 = 7.5, turn 2 = 4, overall = (9 + 6 + 4) / 3."""
    qs = [_q("writing"), _q("coding")]
    script = {(qs[0].turns[0], 1): "[[9]]", (qs[1].turns[0], 1): "Rating: [[6]]",
              (qs[0].turns[1], 2): "[[4]]", (qs[1].turns[1], 2): "I cannot rate this."}

    def reply(req):
        user = req.messages[1][1]
        turn = 2 if "### User:" in user else 1
        return next(v for (text, t), v in script.items() if t == turn and text in user)

    judge = scripted_judge(reply)
    records = mtbench_judging.judge(judge, JudgeCache(tmp_path, judge.identity), qs, "m", [["a", "b"], ["c", "d"]])
    assert [(r["turn"], r["score"]) for r in records] == [(1, 9), (1, 6), (2, 4), (2, -1)]
    assert records[1]["judge"] == ["scripted-judge", "single-math-v1"]  # coding uses the reference prompt
    assert all(req.temperature == 0.0 and req.max_tokens == 2048 for req in judge.requests)
    m = stored.mtbench_metrics(records)["m"]
    assert (m["turn_1"], m["turn_2"], m["rated"], m["unrated"]) == (7.5, 4.0, 3, 1)
    assert m["overall"] == pytest.approx(19 / 3)


def test_the_proxy_judge_is_refused_for_mtbench(tmp_path):
    class Proxy:
        proxy = True

    with pytest.raises(ConfigError, match="1-10 scale"):
        mtbench_judging.judge(Proxy(), None, [_q("writing")], "m", [["a", "b"]])
