"""Prompt rows for generation stages (PPO rollouts, held-out evaluation).

Accepted shapes: a ``prompt`` field (string or chat messages), with or without responses;
preference rows of any shape ``read_pairs`` accepts (the prompt is kept, the answers ignored);
HH-RLHF transcripts in ``chosen`` (the conversation before the last "Assistant:").
"""

from __future__ import annotations

from dataclasses import dataclass

from segtool.inputs.rows import HH_ASSISTANT, RowError, _hh_messages, _hh_split, _messages, _response, read_pairs


@dataclass(frozen=True)
class PromptRow:
    row_id: int
    messages: tuple[dict, ...]  # chat messages, the last one from the user


def parse_prompt(data: dict, where: str) -> tuple[dict, ...]:
    if data.get("prompt") is not None:
        messages = _messages(data["prompt"], where, "prompt")
    elif isinstance(data.get("chosen"), str) and HH_ASSISTANT in data["chosen"]:
        messages = _hh_messages(_hh_split(data["chosen"], where, "chosen")[0])
    elif isinstance(data.get("chosen"), list):
        messages = _response(data["chosen"], where, "chosen")[1]
    else:
        raise RowError(where, "prompt", "is missing", "give a 'prompt' (text or chat messages) or an HH-RLHF 'chosen' transcript")
    if not messages or messages[-1]["role"] != "user":
        raise RowError(where, "prompt", "does not end with a user message", "the prompt must end with the turn to answer")
    return tuple(messages)


def read_prompts(path: str, *, name: str = "", split: str = "train", max_rows: int = 0,
                 skip_invalid: bool = False) -> tuple[list[PromptRow], int]:
    """(valid prompt rows in file order, number of skipped invalid rows): ``read_pairs``' reading and
    error handling with a prompt parser."""
    report = read_pairs(path, name=name, split=split, max_rows=max_rows, skip_invalid=skip_invalid,
                        parse=lambda row_id, data, where, _fmt: PromptRow(row_id, parse_prompt(data, where)),
                        rows="prompt rows", hint="each row needs a 'prompt' field or an HH-RLHF transcript")
    return report.pairs, len(report.invalid)
