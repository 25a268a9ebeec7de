"""Answers in each benchmark's own file format, so they can be submitted upstream unchanged:

* AlpacaEval: ``model_outputs.json``, a JSON list of {instruction, output, generator, dataset}
  (alpaca_eval ``--model_outputs``).
* Arena-Hard: ``model_answer.jsonl`` (arena-hard-auto's data/arena-hard-v0.1/model_answer/<model>.jsonl):
  {question_id, answer_id, model_id, choices: [{index, turns: [{content, token_len}]}], tstamp}.
  ``token_len`` is counted with the answering model's own tokenizer (the official files use tiktoken).
* Arena-Hard-Auto v2.0: ``model_answer.jsonl`` (data/arena-hard-v2.0/model_answer/<model>.jsonl):
  {uid, ans_id, model, messages: [user, {role: assistant, content: {answer}}], tstamp, metadata} with
  ``metadata`` as utils/add_markdown_info.py writes it (token_len, header/list/bold counts).
* MT-Bench: ``model_answer.jsonl`` (FastChat's data/mt_bench/model_answer/<model>.jsonl):
  {question_id, answer_id, model_id, choices: [{index, turns: [turn 1, turn 2]}], tstamp}.
* GSM8K: ``answers.jsonl``: {question, answer (the reference solution), output, generator}.
"""

from __future__ import annotations

import json
import time

from segtool.artifacts.files import atomic_write_text, stable_hash
from segtool.eval.arena_style import markdown_metadata
from segtool.eval.benchmarks import questions

ANSWER_FILES = {"alpaca": "model_outputs.json", "arena": "model_answer.jsonl", "arena-v2": "model_answer.jsonl",
                "mtbench": "model_answer.jsonl",
                "gsm8k": "answers.jsonl"}
JUDGMENT_FILES = {"alpaca": "annotations.json", "arena": "judgment.jsonl", "arena-v2": "judgment.jsonl",
                  "mtbench": "judgment_single.jsonl"}


def _answer_id(name: str, qid: str) -> str:
    return stable_hash({"model": name, "question": qid})[:22]


def answer_records(bench: str, name: str, answers: list[dict]) -> list[dict]:
    """``answers``: rows of answers.parquet (qid, index, category, turns, new_tokens, ...), in order."""
    by_index = {q.index: q for q in questions(bench)}
    now = time.time()
    out = []
    for a in answers:
        q = by_index[a["index"]]
        if bench == "alpaca":
            out.append({"instruction": q.turns[0], "output": a["turns"][0], "generator": name,
                        "dataset": q.meta.get("dataset", "")})
        elif bench == "arena":
            out.append({"question_id": q.qid, "answer_id": _answer_id(name, q.qid), "model_id": name,
                        "choices": [{"index": 0, "turns": [{"content": a["turns"][0], "token_len": int(a["new_tokens"][0])}]}],
                        "tstamp": now})
        elif bench == "arena-v2":
            out.append(arena_v2_answer(name, q, a["turns"][0], int(a["new_tokens"][0]), now))
        elif bench == "mtbench":
            out.append({"question_id": q.meta["question_id"], "answer_id": _answer_id(name, q.qid), "model_id": name,
                        "choices": [{"index": 0, "turns": list(a["turns"])}], "tstamp": now})
        else:
            out.append({"question": q.turns[0], "answer": q.meta["solution"], "output": a["turns"][0], "generator": name})
    return out


def arena_v2_answer(name: str, question, text: str, token_len: int, tstamp: float) -> dict:
    metadata = {"token_len": token_len, **markdown_metadata(text)}
    return {"uid": question.qid, "ans_id": _answer_id(name, question.qid), "model": name,
            "messages": [{"role": "user", "content": question.turns[0]},
                         {"role": "assistant", "content": {"answer": text}}], "tstamp": tstamp, "metadata": metadata}


def write_records(path, records: list[dict], as_list: bool) -> None:
    """A JSON list (``as_list``, alpaca_eval's files) or JSON lines, atomically."""
    if as_list:
        atomic_write_text(path, json.dumps(records, indent=2, ensure_ascii=False) + "\n")
    else:
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
