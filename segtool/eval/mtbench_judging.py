"""MT-Bench single-answer grading as FastChat's llm_judge does it: every turn of every answer is rated
1-10 with the shipped judge prompts (`single-v1` for turn 1, `single-v1-multi-turn` for turn 2; the
`-math-` forms with GPT-4's reference answers for math, reasoning and coding), temperature 0,
max_tokens 2048. The rating is read with [[x]], else [x]; none gives -1 (dropped from the averages).
"""

from __future__ import annotations

import time

from segtool.errors import ConfigError
from segtool.eval.benchmarks import mtbench_judge_prompts, mtbench_references
from segtool.eval.judges.base import ChatRequest
from segtool.eval.judges.cache import answer_all
from segtool.eval.mtbench_metrics import RATING, RATING_FALLBACK

NEED_REF = ("math", "reasoning", "coding", "arena-hard-200")
MAX_TOKENS = 2048


def prompt_name(category: str, turn: int) -> str:
    name = "single-math-v1" if category in NEED_REF else "single-v1"
    return name + ("-multi-turn" if turn == 2 else "")


def judge_messages(question, answer_turns: list[str], turn: int, refs: dict, prompts: dict) -> tuple[str, list[dict]]:
    """(prompt name, [system, user]) for grading ``turn`` (1 or 2) of an answer."""
    name = prompt_name(question.category, turn)
    kwargs = {}
    if question.category in NEED_REF:
        ref = refs.get(question.qid)
        if ref is None:
            raise ConfigError(f"MT-Bench question {question.qid} ({question.category}) has no reference answer",
                              "restore data/mt_bench/reference_answer/gpt-4.jsonl from git")
        kwargs["ref_answer_1"] = ref[0]
        if turn == 2:
            kwargs["ref_answer_2"] = ref[1]
    template = prompts[name]["prompt_template"]
    if turn == 2:
        user = template.format(question_1=question.turns[0], question_2=question.turns[1],
                               answer_1=answer_turns[0], answer_2=answer_turns[1], **kwargs)
    else:
        user = template.format(question=question.turns[0], answer=answer_turns[0], **kwargs)
    return name, [{"role": "system", "content": prompts[name]["system_prompt"]}, {"role": "user", "content": user}]


def rating_value(judgment: str):
    """FastChat's rating: the number in [[x]] (else [x]) as written (int or float); -1 if none."""
    match = RATING.search(judgment) or RATING_FALLBACK.search(judgment)
    if not match:
        return -1
    text = match.group(1)
    return float(text) if "." in text else int(text)


def judge(judge_obj, cache, questions, model_name: str, answers: list[list[str]], *, max_tokens: int = 0,
          quiet: bool = False) -> list[dict]:
    """FastChat single-judgment records (model_judgment/<judge>_single.jsonl), turn 1 rows first."""
    if judge_obj.proxy:
        raise ConfigError("MT-Bench grades single answers on a 1-10 scale, which a reward model cannot give",
                          "use an LLM judge: --set eval.judge=http (or hf with --judge-model)")
    refs, prompts = mtbench_references(), mtbench_judge_prompts()
    jobs = []  # (question, turn, prompt name, messages)
    for turn in (1, 2):
        for q, turns in zip(questions, answers):
            if turn <= len(q.turns):
                jobs.append((q, turn, *judge_messages(q, turns, turn, refs, prompts)))
    requests = [ChatRequest.of(messages, max_tokens or MAX_TOKENS, 0.0) for _, _, _, messages in jobs]
    replies = answer_all(judge_obj, cache, requests, progress_label="mt-bench judge", quiet=quiet)
    now = time.time()
    return [{"question_id": q.meta.get("question_id", q.qid), "model": model_name, "judge": [judge_obj.name, name],
             "user_prompt": messages[1]["content"], "judgment": reply.text, "score": rating_value(reply.text),
             "turn": turn, "tstamp": now}
            for (q, turn, name, messages), reply in zip(jobs, replies)]
