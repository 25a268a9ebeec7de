"""Arena-Hard v0.1 judging as arena-hard-auto's gen_judgment.py does it, with the shipped judge
config: per question two games (game 1: A = baseline, B = model; game 2 swapped), the official
system prompt and template, temperature 0, max_tokens 4096, and up to two attempts: when the first
judgment has no verdict, the judge's text is appended to the conversation with "continue your
judgment and finish by outputting a final verdict label", and the verdict is read from both texts.

The RM proxy has no text to give: it maps P(A beats B) = sigma(e_A - e_B) onto the verdict scale
with fixed cut-offs (``PROXY_CUTS``), a crude stand-in that every report labels as a proxy.
"""

from __future__ import annotations

from segtool.eval.arena_metrics import verdict_and_retry
from segtool.eval.benchmarks import arena_judge_config
from segtool.eval.judges.base import ChatRequest
from segtool.eval.judges.cache import answer_all

CONTINUE = "continue your judgment and finish by outputting a final verdict label"
PROXY_CUTS = ((0.9, "A>>B"), (0.6, "A>B"), (0.4, "A=B"), (0.1, "B>A"))  # p >= cut -> verdict, else B>>A


def game_messages(config: dict, question: str, answer_a: str, answer_b: str) -> list[dict]:
    user = config["prompt_template"][0].format(question_1=question, answer_1=answer_a, answer_2=answer_b)
    return [{"role": "system", "content": config["system_prompt"]}, {"role": "user", "content": user}]


def proxy_verdict(p_a: float) -> str:
    for cut, verdict in PROXY_CUTS:
        if p_a >= cut:
            return verdict
    return "B>>A"


def record(question, model_name: str, judge_name: str, games: list[dict]) -> dict:
    """One line of arena-hard-auto's model_judgment/<judge>/<model>.jsonl (v0.1 layout)."""
    return {"question_id": question.qid, "model": model_name, "judge": judge_name, "games": games}


def judge(judge_obj, cache, questions, baselines, model_name, outputs, *, max_tokens: int = 0, quiet=False) -> list[dict]:
    """Judgment records of the model's answers against the baseline's, in question order."""
    config = arena_judge_config()
    if judge_obj.proxy:
        probs = judge_obj.win_probabilities(cache, [([{"role": "user", "content": q.turns[0]}], out, base)
                                                    for q, out, base in zip(questions, outputs, baselines)], quiet)
        out = []
        for q, base, ans, p_model in zip(questions, baselines, outputs, probs):
            games = []
            for p_a, (a, b) in ((1.0 - p_model, (base, ans)), (p_model, (ans, base))):
                verdict = proxy_verdict(p_a)
                games.append({"user_prompt": game_messages(config, q.turns[0], a, b)[1]["content"],
                              "judgment": f"reward-model proxy: P(A beats B) = {p_a:.4f} -> [[{verdict}]]", "score": verdict})
            out.append(record(q, model_name, judge_obj.name, games))
        return out

    tokens = max_tokens or int(config["max_tokens"])
    convs = []  # (question index, game) -> conversation
    for i, q in enumerate(questions):
        convs.append(game_messages(config, q.turns[0], baselines[i], outputs[i]))
        convs.append(game_messages(config, q.turns[0], outputs[i], baselines[i]))
    texts = [""] * len(convs)
    todo = list(range(len(convs)))
    for attempt in range(int(config.get("number_of_judgment_attempts", 1))):
        if not todo:
            break
        replies = answer_all(judge_obj, cache, [ChatRequest.of(convs[k], tokens, float(config["temperature"])) for k in todo],
                             progress_label=f"arena judge (attempt {attempt + 1})", quiet=quiet)
        again = []
        for k, reply in zip(todo, replies):
            texts[k] += "\n" + reply.text
            convs[k] = convs[k] + [{"role": "assistant", "content": reply.text}]
            if verdict_and_retry(texts[k])[1]:
                convs[k] = convs[k] + [{"role": "user", "content": CONTINUE}]
                again.append(k)
        todo = again
    out = []
    for i, q in enumerate(questions):
        games = [{"user_prompt": convs[k][1]["content"], "judgment": texts[k], "score": verdict_and_retry(texts[k])[0]}
                 for k in (2 * i, 2 * i + 1)]
        out.append(record(q, model_name, judge_obj.name, games))
    return out
