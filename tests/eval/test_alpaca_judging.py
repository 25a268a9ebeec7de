"""AlpacaEval judging: the order switch, the logprob parser and the request, pinned to alpaca_eval's
stored annotations (which keep the judge's raw logprobs for the order it was shown)."""

import csv
import gzip
import json
import math
from pathlib import Path

import pytest

from segtool.eval import alpaca_judging as aj
from segtool.eval import benchmarks, stored
from segtool.eval.judges.base import Completion
from segtool.eval.judges.cache import JudgeCache

ANNOTATIONS = Path(__file__).resolve().parents[2] / "data" / "alpaca_eval" / "annotations"


def _rows(model):
    with gzip.open(ANNOTATIONS / f"{model}.weighted_alpaca_eval_gpt4_turbo.annotations.json.gz", "rt") as fh:
        return json.load(fh)


def _top(raw):
    return [[{"token": t["token"], "logprob": t["logprob"]} for t in tok["top_logprobs"]] for tok in raw["logprobs"]["content"]]


@pytest.mark.parametrize("model", ["alpaca-7b", "gpt-3.5-turbo-1106", "Qwen-14B-Chat"])
def test_switch_and_parser_reproduce_every_stored_preference(model):
    """The judge's stored logprobs + our seeded switch give alpaca_eval's stored preference on all
    805 rows (identical outputs: 1.5 without a call). A wrong switch seed would flip ~half of them."""
    rows = _rows(model)
    switched = 0
    for r in rows:
        if r["raw_completion"] is None:
            assert r["output_1"] == r["output_2"] and r["preference"] == 1.5
            continue
        s = aj.is_switched(r["instruction"])
        switched += s
        assert aj.preference_of(Completion("", _top(r["raw_completion"])), s) == pytest.approx(r["preference"], abs=1e-9)
    assert 300 < switched < 500  # a fair coin per instruction


def test_preference_from_logprobs_by_hand():
    lg = math.log
    assert aj.preference_from_logprobs([{"token": "m", "logprob": 0.0}]) == 1.0  # only m: output_1 surely better
    assert aj.preference_from_logprobs([{"token": "M", "logprob": -3.0}]) == 2.0  # m absent counts as prob 0
    # P(m) = .25 / (.25 + .5) = 1/3 over the denominator {m, M}; other tokens ignored
    two = [{"token": "The", "logprob": lg(0.2)}, {"token": "m", "logprob": lg(0.25)}, {"token": "M", "logprob": lg(0.5)}]
    assert aj.preference_from_logprobs(two) == pytest.approx(2 - 1 / 3)
    assert math.isnan(aj.preference_from_logprobs([{"token": "Both", "logprob": -0.1}]))
    # switched: the judge saw the model as "m"; P(m) = 0.8 -> 1.2 as shown -> 3 - 1.2 = 1.8 for the model
    assert aj.preference_of(Completion("m", [[{"token": "m", "logprob": lg(0.8)}, {"token": "M", "logprob": lg(0.2)}]]), True) == pytest.approx(1.8)


def test_fill_replaces_each_placeholder_once_and_never_inside_outputs():
    template = "I: {instruction}\nA: {output_1}\nB: {output_2}\n{ literal }"
    out = aj.fill(template, {"instruction": "say {output_2}", "output_1": "x {instruction} y", "output_2": "z"})
    # {instruction} filled first, so the "{output_2}" it brings in is the first occurrence and gets "z":
    # alpaca_eval's replace-first-occurrence formatting, reproduced as is.
    assert out == "I: say z\nA: x {instruction} y\nB: {output_2}\n{ literal }"


def test_request_uses_the_official_template_order_and_settings():
    template = benchmarks.alpaca_judge_template()
    # Find one instruction that is switched and one that is not.
    qs = benchmarks.questions("alpaca")
    plain = next(q for q in qs if not aj.is_switched(q.turns[0]))
    swapped = next(q for q in qs if aj.is_switched(q.turns[0]))
    for q, want_first in ((plain, "BASELINE-OUT"), (swapped, "MODEL-OUT")):
        req, s = aj.request(template, q.turns[0], "BASELINE-OUT", "MODEL-OUT")
        system, user = req.chat_messages()
        assert system["role"] == "system" and user["role"] == "user"
        assert user["content"].index(want_first) < user["content"].index("MODEL-OUT" if want_first == "BASELINE-OUT" else "BASELINE-OUT")
        assert req.body() == {"messages": req.chat_messages(), "max_tokens": 1, "temperature": 1.0, "logprobs": True, "top_logprobs": 5}


def test_judging_with_the_stored_replies_reproduces_the_leaderboard_row(tmp_path, scripted_judge):
    """End to end: a judge that replies with alpaca_eval's stored logprobs for each instruction ->
    our annotations -> our metrics = the published alpaca-7b row (win rate and LC to 3 decimals)."""
    rows = _rows("alpaca-7b")
    by_instruction = {r["instruction"]: r for r in rows}
    qs = benchmarks.questions("alpaca")
    assert [q.meta["baseline"] for q in qs] == [r["output_1"] for r in rows]  # the shipped baseline is theirs

    def reply(req):  # the instruction sits between the template's triple quotes
        r = by_instruction[req.messages[1][1].split('"instruction": """', 1)[1].split('""",', 1)[0]]
        return Completion("M", _top(r["raw_completion"]), r["raw_completion"])

    judge = scripted_judge(reply, "gpt-4-1106-preview")
    cache = JudgeCache(tmp_path, judge.identity)
    annotations = aj.judge(judge, cache, qs, "gpt4_1106_preview", [r["output_1"] for r in rows], "alpaca-7b",
                           [r["output_2"] for r in rows])
    assert len(judge.requests) == 802  # 3 identical outputs are draws without a call
    got = stored.alpaca_metrics(annotations)["alpaca-7b"]
    want = next(r for r in csv.DictReader(open(ANNOTATIONS / "expected_metrics.csv")) if r["name"] == "alpaca-7b")
    assert got["win_rate"] == pytest.approx(float(want["win_rate"]), abs=5e-4)
    assert got["length_controlled_winrate"] == pytest.approx(float(want["length_controlled_winrate"]), abs=5e-4)
    assert annotations[0]["annotator"] == aj.ANNOTATOR and annotations[0]["generator_2"] == "alpaca-7b"
