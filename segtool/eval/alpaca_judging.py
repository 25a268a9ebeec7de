"""AlpacaEval 2.0 judging as alpaca_eval's `weighted_alpaca_eval_gpt4_turbo` annotator does it.

* output_1 is the baseline, output_2 the model. Identical outputs are a draw (1.5) without a call.
* The order shown to the judge is swapped at random, seeded by the instruction: Python's
  ``random.Random("is_switched_outputs" + instruction + "0").choices([False, True])`` (alpaca_eval's
  RandomSwitchTwoColumnsProcessor, annotator seed 0); a swapped preference p is mapped back to 3 - p.
* The judge sees the official ChatML prompt (system + user) and answers one token at temperature 1
  with its top-5 logprobs; preference = 2 - P("m") with P("m") = exp(lp_m) / (exp(lp_m) + exp(lp_M))
  over the tokens present ("m" = output_1); neither present: NaN (dropped from the win rate).
* The RM proxy gives the Bradley-Terry probability instead: preference = 1 + P(model beats baseline).
"""

from __future__ import annotations

import math
import random
import re

import numpy as np

from segtool.eval.benchmarks import alpaca_judge_template
from segtool.eval.judges.base import ChatRequest
from segtool.eval.judges.cache import answer_all

ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"
PROXY_ANNOTATOR = "segtool_reward_model_proxy"
MAX_TOKENS, TEMPERATURE, TOP_LOGPROBS = 1, 1.0, 5  # the annotator's completions_kwargs
NUMERATOR, DENOMINATOR = "m", ("m", "M")
ANNOTATOR_SEED = 0
PLACEHOLDER = re.compile(r"{([^ \s]+?)}")


def is_switched(instruction: str, seed: int = ANNOTATOR_SEED) -> bool:
    return random.Random("is_switched_outputs" + instruction + str(seed)).choices([False, True], k=1)[0]


def fill(template: str, values: dict) -> str:
    """alpaca_eval's formatting: each {placeholder} (in order of first appearance) replaced once,
    left to right, so braces inside the outputs are never interpreted."""
    for key in dict.fromkeys(PLACEHOLDER.findall(template)):
        if key in values:
            template = template.replace("{" + key + "}", str(values[key]), 1)
    return template


def chatml_messages(prompt: str) -> list[dict]:
    """'<|im_start|>role\\ncontent<|im_end|>' blocks -> chat messages (as alpaca_eval sends them)."""
    messages = []
    for block in prompt.strip().split("<|im_start|>")[1:]:
        role, _, rest = block.partition("\n")
        messages.append({"role": role.strip(), "content": rest.split("<|im_end|>", 1)[0].strip()})
    return messages


def request(template: str, instruction: str, output_1: str, output_2: str) -> tuple[ChatRequest, bool]:
    """The judge request for one pair, and whether the outputs were shown swapped."""
    switched = is_switched(instruction)
    shown_1, shown_2 = (output_2, output_1) if switched else (output_1, output_2)
    prompt = fill(template, {"instruction": instruction, "output_1": shown_1, "output_2": shown_2})
    return ChatRequest.of(chatml_messages(prompt), MAX_TOKENS, TEMPERATURE, TOP_LOGPROBS), switched


def preference_from_logprobs(top_logprobs: list[dict] | None) -> float:
    """2 - P("m") from one token's top logprobs; NaN when neither "m" nor "M" is among them."""
    found = {}
    for entry in top_logprobs or []:
        if entry["token"] in DENOMINATOR and entry["token"] not in found:
            found[entry["token"]] = float(entry["logprob"])
    if not found:
        return math.nan
    lp_m = found.get(NUMERATOR, -math.inf)
    norm = np.logaddexp.reduce([found.get(t, -math.inf) for t in DENOMINATOR])
    return 2.0 - math.exp(lp_m - norm)


def preference_of(completion, switched: bool) -> float:
    first = completion.top_logprobs[0] if completion.top_logprobs else None
    p = preference_from_logprobs(first)
    return 3.0 - p if switched and not math.isnan(p) else p


def annotation(question, baseline_name: str, baseline: str, model_name: str, output: str, annotator: str,
               preference: float, raw: dict) -> dict:
    """One row of alpaca_eval's annotations.json."""
    return {"instruction": question.turns[0], "output_1": baseline, "generator_1": baseline_name,
            "dataset": question.meta.get("dataset", ""), "output_2": output, "generator_2": model_name,
            "annotator": annotator, "preference": None if math.isnan(preference) else preference,
            "raw_completion": raw}


def judge(judge_obj, cache, questions, baseline_name, baselines, model_name, outputs, *, quiet=False) -> list[dict]:
    """Annotations (alpaca_eval's format) of the model's outputs against the baseline's."""
    if judge_obj.proxy:
        probs = judge_obj.win_probabilities(cache, [([{"role": "user", "content": q.turns[0]}], out, base)
                                                    for q, out, base in zip(questions, outputs, baselines)], quiet)
        return [annotation(q, baseline_name, base, model_name, out, PROXY_ANNOTATOR,
                           1.5 if out == base else 1.0 + p, {"proxy": True, "p_model_beats_baseline": p})
                for q, base, out, p in zip(questions, baselines, outputs, probs)]
    template = alpaca_judge_template()
    asked = [i for i in range(len(questions)) if outputs[i] != baselines[i]]
    built = [request(template, questions[i].turns[0], baselines[i], outputs[i]) for i in asked]
    completions = dict(zip(asked, answer_all(judge_obj, cache, [r for r, _ in built], progress_label="alpaca judge", quiet=quiet)))
    switched = dict(zip(asked, [s for _, s in built]))
    name = ANNOTATOR if judge_obj.name == "gpt-4-1106-preview" else f"{ANNOTATOR}:{judge_obj.name}"
    rows = []
    for i, q in enumerate(questions):
        if i not in completions:  # identical outputs: alpaca_eval's draw without a call
            rows.append(annotation(q, baseline_name, baselines[i], model_name, outputs[i], name, 1.5, {}))
            continue
        pref = preference_of(completions[i], switched[i])
        rows.append(annotation(q, baseline_name, baselines[i], model_name, outputs[i], name, pref,
                               {**completions[i].raw, "is_switched_outputs": switched[i]}))
    return rows
