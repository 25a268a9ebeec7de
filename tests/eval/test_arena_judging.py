"""Arena-Hard: verdict parsing, battle order and weighting, Bradley-Terry scores on synthetic battles
with known answers, the bootstrap against pandas' resampling, and the two-attempt judging protocol."""

import math

import numpy as np
import pytest

from segtool.eval import arena_judging, benchmarks, stored
from segtool.eval import arena_metrics as arena
from segtool.eval.judges.cache import JudgeCache


def test_verdict_and_retry_follow_get_score():
    assert arena.verdict_and_retry("My final verdict is [[B>>A]].") == ("B>>A", False)
    assert arena.verdict_and_retry("no label yet") == (None, True)  # ask again
    assert arena.verdict_and_retry("[[A>B]] ... actually [[A=B]]") == (None, False)  # contradictory: give up
    assert arena.verdict_and_retry("[[A>B]] and [[A>B]]") == ("A>B", False)


def test_question_outcomes_official_order_and_weights():
    # game 1 (A = baseline): B>>A -> model x3; game 2 (A = model): A=B -> tie
    assert arena.question_outcomes("B>>A", "A=B") == ["model"] * 3 + ["tie"]
    # game 1: A>B -> baseline; game 2: B>A -> baseline (B is the baseline there); None -> nothing
    assert arena.question_outcomes("A>B", "B>A") == ["baseline", "baseline"]
    assert arena.question_outcomes(None, "A>>B") == ["model"] * 3


def test_bradley_terry_with_known_answers():
    # one model, 3 wins and 1 loss: 10^(d/400) = 3 -> win rate 75
    ratings = arena.mle_ratings([("base", "m", "model_b")] * 3 + [("base", "m", "model_a")], "base")
    assert ratings["base"] == 1000.0
    assert ratings["m"] == pytest.approx(1000 + 400 * math.log10(3), abs=1e-3)
    # two models pooled in one fit (as show_result.py does): each keeps its own win rate (1/4 and 3/5 + ties)
    games = [("base", "x", "model_a")] * 3 + [("base", "x", "model_b")] + [("base", "y", "model_b")] * 2 + \
            [("base", "y", "tie")] * 2 + [("base", "y", "model_a")]
    board = arena.leaderboard(games, "base", rounds=20, seed=42)
    assert board["x"]["score"] == pytest.approx(25.0, abs=1e-3)
    assert board["y"]["score"] == pytest.approx(60.0, abs=1e-3)  # (2 + 2 * 0.5) / 5
    # a model that won everything has no finite MLE
    assert arena.leaderboard([("base", "z", "model_b")] * 4, "base", rounds=5)["z"]["score"] == 100.0


def test_bootstrap_draws_what_pandas_sample_draws_under_seed_42():
    """show_result.py resamples with battles.sample(frac=1, replace=True) after np.random.seed(42); our
    RandomState(42).choice must pick the same rows in the same order."""
    pd = pytest.importorskip("pandas")
    n = 37
    np.random.seed(42)
    frame = pd.DataFrame({"i": range(n)})
    theirs = [frame.sample(frac=1.0, replace=True)["i"].tolist() for _ in range(3)]
    rs = np.random.RandomState(42)
    ours = [rs.choice(n, size=n, replace=True).tolist() for _ in range(3)]
    assert ours == theirs


def test_bootstrap_interval_is_stable_for_a_fixed_seed():
    outcomes = ["model"] * 60 + ["baseline"] * 30 + ["tie"] * 10
    a, b = arena.score(outcomes, rounds=20, seed=42), arena.score(outcomes, rounds=20, seed=42)
    assert a == b and a["score"] == pytest.approx(65.0, abs=1e-3)
    assert a["lower"] < a["score"] < a["upper"]
    assert arena.score(outcomes, rounds=20, seed=7)["lower"] != a["lower"]


def _two_questions():
    return benchmarks.questions("arena", 2)


def test_judging_asks_again_without_a_verdict_and_reads_both_texts(tmp_path, scripted_judge):
    """Question 1: a verdict at once. Question 2, game 1: no verdict, then the continuation prompt;
    the verdict comes from the concatenated judgment (arena-hard-auto's two attempts)."""
    qs = _two_questions()

    def reply(req):
        user = req.messages[1][1]
        if qs[1].turns[0] in user and len(req.messages) == 2 and user.index("BASE-1") < user.index("MODEL-1"):
            return "I am still thinking."  # game 1 of question 2: no label
        if req.messages[-1] == ("user", arena_judging.CONTINUE):
            return "My final verdict is [[B>A]]."
        return "Verdict: [[A>>B]]"

    judge = scripted_judge(reply)
    records = arena_judging.judge(judge, JudgeCache(tmp_path, judge.identity), qs, ["BASE-0", "BASE-1"], "m",
                                  ["MODEL-0", "MODEL-1"])
    assert len(judge.requests) == 5  # 4 games + 1 continuation
    cont = judge.requests[-1]
    assert [role for role, _ in cont.messages] == ["system", "user", "assistant", "user"]
    assert cont.max_tokens == 4096 and cont.temperature == 0.0
    g = records[1]["games"][0]
    assert g["judgment"] == "\nI am still thinking.\nMy final verdict is [[B>A]]." and g["score"] == "B>A"
    assert [x["score"] for x in records[0]["games"]] == ["A>>B", "A>>B"]
    # question 1: baseline x3 then model x3; question 2: model (B>A in game 1) then model x3
    assert stored.arena_battles(records, "gpt-4-0314") == \
        [("gpt-4-0314", "m", w) for w in ["model_a"] * 3 + ["model_b"] * 3 + ["model_b"] + ["model_b"] * 3]


def test_judgment_records_rescore_like_the_official_file(tmp_path, write_jsonl):
    """A judgment jsonl in arena-hard-auto's layout: 3 questions, known outcome counts."""
    rows = [{"question_id": "q1", "model": "m", "judge": "j", "games": [{"score": "B>A"}, {"score": "A>B"}]},  # model, model
            {"question_id": "q2", "model": "m", "judge": "j", "games": [{"score": "A>B"}, {"score": "B>A"}]},  # baseline x2
            {"question_id": "q3", "model": "m", "judge": "j", "games": [{"score": "A=B"}, {"score": None}]}]  # tie, nothing
    path = write_jsonl(tmp_path / "judgment.jsonl", rows)
    got = stored.arena_metrics(stored.arena_records(path), "gpt-4-0314", rounds=10)["m"]
    assert got["score"] == pytest.approx(50.0, abs=1e-3)  # 2 wins, 2 losses, 1 tie
    assert got["battles"] == 5 and got["unparsed_games"] == 1 and got["questions"] == 3


def test_proxy_verdict_cuts():
    assert [arena_judging.proxy_verdict(p) for p in (0.95, 0.7, 0.5, 0.2, 0.05)] == ["A>>B", "A>B", "A=B", "B>A", "B>>A"]
