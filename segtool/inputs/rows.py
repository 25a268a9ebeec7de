"""Preference rows -> (prompt messages, chosen text, rejected text), with row-level validation.

Accepted shapes (METHOD §1):
* ``prompt`` (string or list of {role, content}) + ``chosen`` + ``rejected`` (strings, or message
  lists whose last message is the assistant's response);
* HH-RLHF: ``chosen``/``rejected`` transcripts "\\n\\nHuman: ... \\n\\nAssistant: ...", split at
  the last "Assistant:".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from segtool.errors import InputError
from segtool.inputs.readers import SKIP_HINT, read_records

ROLES = ("system", "user", "assistant")
HH_TURN = re.compile(r"\n\n(Human|Assistant):")
HH_ASSISTANT = "\n\nAssistant:"
HH_SPEAKER = re.compile(r"(^|\n)\s*(Human|Assistant):")  # a transcript, even a malformed one


@dataclass(frozen=True)
class Pair:
    row_id: int
    prompt: tuple[dict, ...]  # chat messages, last one from the user
    chosen: str
    rejected: str
    subset: str = ""  # optional grouping (e.g. RewardBench subsets) for per-subset reports


class RowError(InputError):
    def __init__(self, where: str, field: str, problem: str, fix: str):
        super().__init__(f"{where}: field '{field}' {problem}", f"{fix}; {SKIP_HINT}")
        self.field = field


def _messages(value, where: str, field: str) -> list[dict]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise RowError(where, field, "must be a string or a non-empty list of chat messages", "give the prompt text or [{\"role\": \"user\", \"content\": ...}]")
    out = []
    for i, msg in enumerate(value):
        if not isinstance(msg, dict) or msg.get("role") not in ROLES or not isinstance(msg.get("content"), str):
            raise RowError(where, f"{field}[{i}]", "is not a chat message", f"each message needs role in {ROLES} and string content")
        out.append({"role": msg["role"], "content": msg["content"]})
    return out


def _response(value, where: str, field: str) -> tuple[str, list[dict] | None]:
    """The response text, plus the conversation before it when given as a message list."""
    if isinstance(value, list):
        messages = _messages(value, where, field)
        if messages[-1]["role"] != "assistant":
            raise RowError(where, field, "does not end with an assistant message", "the last message must be the response")
        return messages[-1]["content"], messages[:-1]
    if not isinstance(value, str):
        raise RowError(where, field, f"must be a string, got {type(value).__name__}", "give the response text")
    return value, None


def _hh_split(text: str, where: str, field: str) -> tuple[str, str]:
    cut = text.rfind(HH_ASSISTANT)
    if cut < 0:
        raise RowError(where, field, "has no '\\n\\nAssistant:' turn", "HH-RLHF transcripts end with '\\n\\nAssistant: <response>'")
    return text[:cut], text[cut + len(HH_ASSISTANT) :].strip()


def _hh_messages(transcript: str) -> list[dict]:
    parts = HH_TURN.split(transcript)
    # parts = [preamble, role, text, role, text, ...]
    messages = []
    if parts[0].strip():
        messages.append({"role": "system", "content": parts[0].strip()})
    for role, text in zip(parts[1::2], parts[2::2]):
        messages.append({"role": "user" if role == "Human" else "assistant", "content": text.strip()})
    return messages


def _detect(data: dict) -> str:
    if "prompt" not in data and isinstance(data.get("chosen"), str) and HH_SPEAKER.search(data["chosen"]):
        return "hh"
    return "pairs"


def _check_encodable(text: str, where: str, field: str) -> None:
    """A lone UTF-16 surrogate (a JSON "\\ud800" escape without its pair) cannot be tokenized or written."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise RowError(where, field, f"contains a lone UTF-16 surrogate (\\u{ord(text[err.start]):04x} at character {err.start})",
                       "write the character as a valid surrogate pair (or as UTF-8), or remove it") from None


def parse_pair(row_id: int, data: dict, where: str, fmt: str = "auto") -> Pair:
    fmt = _detect(data) if fmt == "auto" else fmt
    for field in ("chosen", "rejected"):
        if data.get(field) is None:
            need = "'chosen' and 'rejected' transcripts" if fmt == "hh" else "'prompt', 'chosen' and 'rejected'"
            raise RowError(where, field, "is missing", f"every row needs {need}")
    if fmt == "hh":
        prompt_c, chosen = _hh_split(_str(data, "chosen", where), where, "chosen")
        prompt_r, rejected = _hh_split(_str(data, "rejected", where), where, "rejected")
        if prompt_c != prompt_r:
            raise RowError(where, "rejected", "has a different conversation before its last answer than 'chosen'", "both transcripts must share the prompt")
        prompt = _hh_messages(prompt_c)
        if not prompt or prompt[-1]["role"] != "user":
            raise RowError(where, "chosen", "has no Human turn before the last Assistant turn", "the prompt must end with a Human turn")
    else:
        chosen, ctx_c = _response(data["chosen"], where, "chosen")
        rejected, ctx_r = _response(data["rejected"], where, "rejected")
        if data.get("prompt") is not None:
            prompt = _messages(data["prompt"], where, "prompt")
        elif ctx_c:
            if ctx_c != ctx_r:
                raise RowError(where, "rejected", "has a different conversation before its answer than 'chosen'", "both must share the prompt")
            prompt = ctx_c
        else:
            raise RowError(where, "prompt", "is missing", "every row needs 'prompt', 'chosen' and 'rejected'")
    if prompt[-1]["role"] != "user":
        field = "prompt" if data.get("prompt") is not None or fmt == "hh" else "chosen"
        raise RowError(where, field, "does not end with a user message", "the prompt must end with the turn being answered")
    for field, text in (("chosen", chosen), ("rejected", rejected)):
        _check_encodable(text, where, field)
        if not text.strip():
            raise RowError(where, field, "is an empty response", "remove the row or give a non-empty response")
    source = "chosen" if fmt == "hh" or data.get("prompt") is None else "prompt"  # the field the prompt came from
    for i, message in enumerate(prompt):
        _check_encodable(message["content"], where, source if isinstance(data[source], str) else f"{source}[{i}]")
    if chosen == rejected:
        raise RowError(where, "rejected", "is identical to 'chosen'", "a preference pair needs two different responses")
    subset = data.get("subset")
    return Pair(row_id=row_id, prompt=tuple(prompt), chosen=chosen, rejected=rejected, subset=str(subset) if subset is not None else "")


def _str(data: dict, field: str, where: str) -> str:
    if not isinstance(data[field], str):
        raise RowError(where, field, f"must be a string transcript, got {type(data[field]).__name__}", "give the HH-RLHF transcript text")
    return data[field]


@dataclass
class ReadReport:
    pairs: list[Pair]
    invalid: list[InputError]  # skipped rows (only with skip_invalid)


def read_pairs(path: str, *, name: str = "", split: str = "train", fmt: str = "auto", max_rows: int = 0, skip_invalid: bool = False,
               parse=parse_pair, rows: str = "preference rows",
               hint: str = "check the file's format (see README: Inputs)") -> ReadReport:
    """Read and validate every row; fail on the first bad one unless ``skip_invalid``.

    parse(row_id, data, where, fmt): turns one record into a row (``parse_pair``, or a parser that
    also reads extra fields); ``rows`` and ``hint`` word the error when no row is valid.
    """
    pairs, invalid = [], []
    for rec in read_records(path, name, split):
        if max_rows and rec.row_id >= max_rows:
            break
        try:
            if rec.error is not None:
                raise rec.error
            pairs.append(parse(rec.row_id, rec.data, rec.where, fmt))
        except InputError as err:
            if not skip_invalid:
                raise
            invalid.append(err)
    if not pairs:
        skipped = f" ({len(invalid)} invalid rows skipped, the first: {invalid[0].message})" if invalid else ""
        raise InputError(f"{path}: no valid {rows}{skipped}", hint)
    return ReadReport(pairs, invalid)
