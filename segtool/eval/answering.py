"""Benchmark answers from a causal LM: chat-formatted prompts, batched KV-cache generation, and the
benchmark's own settings (MT-Bench: FastChat's per-category temperatures and two turns, the second
conditioned on the model's first answer).

Prompts go through ``inputs.formatting.Encoder`` (the chat template when the tokenizer has one), so
they are tokenised exactly as in every other stage. Each length-sorted batch gets the largest answer
budget that still fits the model's context.
"""

from __future__ import annotations

from dataclasses import dataclass

from segtool.errors import ConfigError
from segtool.eval.benchmarks import Question
from segtool.models.generation import HFGenerator, hash_seed
from segtool.models.loading import pad_id_of

# FastChat's llm_judge temperature_config: sampling temperature of MT-Bench answers per category.
MTBENCH_TEMPERATURES = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
                        "reasoning": 0.0, "stem": 0.1, "humanities": 0.1, "arena-hard-200": 0.0}
MTBENCH_DEFAULT_TEMPERATURE = 0.7  # FastChat's fallback for categories not in the table


@dataclass(frozen=True)
class Settings:
    max_new_tokens: int
    temperature: float  # alpaca, arena, gsm8k (MT-Bench: per category)
    top_p: float
    seed: int
    batch_size: int


@dataclass
class Answer:
    question: Question
    turns: list[str]
    new_tokens: list[int]  # generated tokens per turn, EOS not counted
    truncated: list[bool]  # the turn hit its token budget without EOS
    temperature: float


def temperature_for(bench: str, question: Question, settings: Settings) -> float:
    if bench == "mtbench":
        return MTBENCH_TEMPERATURES.get(question.category, MTBENCH_DEFAULT_TEMPERATURE)
    return settings.temperature


def first_turn_messages(bench: str, question: Question, shots: list[dict]) -> list[dict]:
    """Chat messages before the first answer (GSM8K few-shot examples as earlier turns)."""
    messages = []
    if bench == "gsm8k":
        for shot in shots:
            messages += [{"role": "user", "content": shot["question"]}, {"role": "assistant", "content": shot["answer"]}]
    return messages + [{"role": "user", "content": question.turns[0]}]


def context_length(model, fallback: int) -> int:
    return int(getattr(model.config, "max_position_embeddings", None) or fallback)


def answer_questions(model, encoder, bench: str, items: list[Question], settings: Settings, *, shots=(),
                     context: int, advance=None, generator=None) -> list[Answer]:
    """One answer per question (every turn), in the order of ``items``. ``advance(n)`` counts turns.
    ``generator`` (models.generators, holding ``model``'s weights) samples them; hf by default."""
    generator = generator or HFGenerator(model)
    answers = [Answer(q, [], [], [], temperature_for(bench, q, settings)) for q in items]
    histories = [first_turn_messages(bench, q, list(shots)) for q in items]
    for turn in range(max(len(q.turns) for q in items)):
        live = [i for i, q in enumerate(items) if turn < len(q.turns)]
        if turn > 0:
            for i in live:
                histories[i] += [{"role": "assistant", "content": answers[i].turns[-1]},
                                 {"role": "user", "content": items[i].turns[turn]}]
        prompts = {i: encoder.encode_prompt(histories[i]) for i in live}
        for group in _batches(live, prompts, answers, settings.batch_size):
            budget = min(settings.max_new_tokens, context - max(len(prompts[i]) for i in group))
            if budget < 1:
                raise _too_long(items[group[0]], context)
            seed = hash_seed(settings.seed, int(items[group[0]].index) * 4 + turn)  # independent of batching order
            texts, counts, cut = _generate(generator, encoder, [prompts[i] for i in group], budget,
                                           answers[group[0]].temperature, settings, seed)
            for i, text, n, c in zip(group, texts, counts, cut):
                answers[i].turns.append(text)
                answers[i].new_tokens.append(n)
                answers[i].truncated.append(c)
            if advance is not None:
                advance(len(group))
    return answers


def _batches(live, prompts, answers, size: int) -> list[list[int]]:
    """Length-sorted batches of one temperature each (generate() takes one temperature per call)."""
    by_temp: dict[float, list[int]] = {}
    for i in live:
        by_temp.setdefault(answers[i].temperature, []).append(i)
    out = []
    for temp in sorted(by_temp):
        ordered = sorted(by_temp[temp], key=lambda i: (-len(prompts[i]), i))
        out += [ordered[k : k + size] for k in range(0, len(ordered), size)]
    return out


def _generate(generator, encoder, prompts, budget, temperature, settings: Settings, seed: int):
    tok = encoder.tokenizer
    pad = pad_id_of(tok)
    out = generator(prompts, eos_id=encoder.eos_id, pad_id=pad, max_new_tokens=budget,
                   temperature=temperature, top_p=settings.top_p, batch_size=len(prompts), seed=seed,
                   force_eos=False)
    texts, counts = [], []
    for ids, cut in zip(out.responses, out.truncated):
        body = ids if cut else ids[:-1]  # drop the EOS that ended the answer
        texts.append(without_special_strings(tok.decode(body, skip_special_tokens=True), tok))
        counts.append(len(body))
    return texts, counts, out.truncated


def without_special_strings(text: str, tokenizer) -> str:
    """The answer with every special-token string of the tokenizer removed, then stripped (FastChat's
    gen_model_answer does this before judging): a model can spell "<|end_story|>" with ordinary
    tokens, which skip_special_tokens keeps."""
    for value in tokenizer.special_tokens_map.values():
        for special in value if isinstance(value, list) else [value]:
            text = text.replace(special, "")
    return text.strip()


def _too_long(question: Question, context: int):
    return ConfigError(f"question {question.qid}: the prompt leaves no room to answer in the model's {context}-token context",
                       "lower tokenize.max_prompt_len (prompts keep their right end)")
