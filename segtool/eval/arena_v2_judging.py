"""Arena-Hard-Auto v2.0 judging as arena-hard-auto's gen_judgment.py does it: per question two games
(game 1: A = baseline, B = model; game 2 swapped), the category's judge system prompt, the v2.0
template, the config's temperature and max_tokens, one attempt, and the label read by
``arena_v2_metrics.parse_verdict``. The records follow its model_judgment/<judge>/<model>.jsonl layout.
The RM proxy maps P(A beats B) onto labels as for v0.1 (``arena_judging.proxy_verdict``).
"""

from __future__ import annotations

from segtool.eval.arena_judging import proxy_verdict
from segtool.eval.arena_v2_metrics import parse_verdict
from segtool.eval.benchmarks import arena_v2_judge_config, arena_v2_settings
from segtool.eval.judges.base import ChatRequest
from segtool.eval.judges.cache import answer_all


def game_messages(question, answer_a: str, answer_b: str) -> list[dict]:
    config = arena_v2_judge_config()
    user = config["prompt_template"].format(QUESTION=question.turns[0], ANSWER_A=answer_a, ANSWER_B=answer_b)
    return [{"role": "system", "content": arena_v2_settings()[question.category]["system_prompt"]},
            {"role": "user", "content": user}]


def record(question, model_name: str, baseline_name: str, judge_name: str, games: list[dict]) -> dict:
    return {"uid": question.qid, "category": question.category, "judge": judge_name, "model": model_name,
            "baseline": baseline_name, "games": games}


def judge(judge_obj, cache, questions, baselines: list[str], baseline_names: list[str], model_name: str,
          outputs: list[str], *, max_tokens: int = 0, quiet=False) -> list[dict]:
    """Judgment records of the model's answers against each question's baseline answer, in order."""
    config = arena_v2_judge_config()
    games = []  # (question index, A, B) in the official order: game 1 then game 2 of each question
    for i in range(len(questions)):
        games += [(i, baselines[i], outputs[i]), (i, outputs[i], baselines[i])]
    convs = [game_messages(questions[i], a, b) for i, a, b in games]
    if judge_obj.proxy:
        probs = judge_obj.win_probabilities(cache, [([{"role": "user", "content": q.turns[0]}], out, base)
                                                    for q, out, base in zip(questions, outputs, baselines)], quiet)
        texts = []
        for p_model in probs:
            for p_a in (1.0 - p_model, p_model):  # game 1: A = baseline; game 2: A = model
                texts.append(f"reward-model proxy: P(A beats B) = {p_a:.4f} -> [[{proxy_verdict(p_a)}]]")
    else:
        tokens = max_tokens or int(config["max_tokens"])
        replies = answer_all(judge_obj, cache, [ChatRequest.of(c, tokens, float(config["temperature"])) for c in convs],
                             progress_label="arena v2.0 judge", quiet=quiet)
        texts = [r.text for r in replies]
    out = []
    for i, q in enumerate(questions):
        pair = [{"score": parse_verdict(texts[k], config["regex_patterns"]), "judgment": {"answer": texts[k]},
                 "prompt": convs[k]} for k in (2 * i, 2 * i + 1)]
        out.append(record(q, model_name, baseline_names[i], judge_obj.name, pair))
    return out
