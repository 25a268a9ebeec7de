"""Reward-model benchmark rows with several candidate responses per prompt, read from the hub
(through ``read_pairs``' record reader) or from local JSONL/Parquet files in the same schema.

* RewardBench 2 (allenai/reward-bench-2): ``prompt``, ``chosen`` (a list, one response outside
  Ties), ``rejected`` (a list), ``subset``, ``id``; in Ties the id is ``ref:N`` or ``tied:N``.
* RM-Bench (THU-KEG/RM-Bench): ``prompt``, ``chosen`` and ``rejected`` with three style variants
  each (concise, detailed plain text, detailed markdown), ``domain``, ``id``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from segtool.errors import InputError
from segtool.inputs.rows import RowError, _check_encodable, _messages, read_pairs

TIES = "ties"  # RewardBench 2's subset with several correct answers (compared case-insensitively, as upstream)
TIES_ID = re.compile(r"^(ref|tied):(\d+)$")
RMBENCH_VARIANTS = 3  # concise, detailed plain text, detailed markdown
RMBENCH_DOMAINS = ("chat", "math", "code", "safety")  # upstream groups domains by these prefixes


@dataclass(frozen=True)
class CandidateRow:
    row_id: int
    id: str
    group: str  # RewardBench 2 subset, or RM-Bench domain (safety-refuse and safety-response -> safety)
    prompt: tuple[dict, ...]
    chosen: tuple[str, ...]
    rejected: tuple[str, ...]


def _responses(data: dict, field: str, where: str) -> tuple[str, ...]:
    value = data.get(field)
    if not isinstance(value, (list, tuple)) or not value:
        raise RowError(where, field, "must be a non-empty list of responses", "give the candidate responses as a list of strings")
    for i, text in enumerate(value):
        if not isinstance(text, str) or not text.strip():
            raise RowError(where, f"{field}[{i}]", "is not a non-empty string", "every candidate response must be text")
        _check_encodable(text, where, f"{field}[{i}]")
    return tuple(value)


def _common(data: dict, where: str, group_field: str) -> tuple[str, str, tuple[dict, ...]]:
    for field in ("prompt", "id", group_field):
        if data.get(field) is None:
            raise RowError(where, field, "is missing", "every row needs prompt, chosen, rejected, id and " + group_field)
    group = data[group_field]
    if not isinstance(group, str) or not group:
        raise RowError(where, group_field, "must be a non-empty string", f"give the row's {group_field} name")
    prompt = _messages(data["prompt"], where, "prompt")
    if prompt[-1]["role"] != "user":
        raise RowError(where, "prompt", "does not end with a user message", "the prompt must end with the turn being answered")
    for i, message in enumerate(prompt):
        _check_encodable(message["content"], where, "prompt" if isinstance(data["prompt"], str) else f"prompt[{i}]")
    return str(data["id"]), group, tuple(prompt)


def parse_rewardbench2(row_id: int, data: dict, where: str, fmt: str = "rewardbench2") -> CandidateRow:
    row_key, subset, prompt = _common(data, where, "subset")
    chosen, rejected = _responses(data, "chosen", where), _responses(data, "rejected", where)
    for field, count in (("num_correct", len(chosen)), ("total_completions", len(chosen) + len(rejected))):
        if data.get(field) is not None and data[field] != count:
            raise RowError(where, field, f"is {data[field]} but the row has {count} such responses",
                           "fix the count or the chosen/rejected lists")
    if subset.lower() == TIES:
        match = TIES_ID.match(row_key)
        if not match:
            raise RowError(where, "id", f"is {row_key!r}, not ref:N or tied:N", "Ties rows pair a reference prompt with its tied version by id")
        if match.group(1) == "tied" and len(chosen) < 2:
            raise RowError(where, "chosen", "has one answer in a tied: row", "tied rows have several correct answers")
    elif len(chosen) != 1:
        raise RowError(where, "chosen", f"has {len(chosen)} responses outside the Ties subset",
                       "best-of-N rows have one correct answer; only Ties rows have several")
    return CandidateRow(row_id, row_key, subset, prompt, chosen, rejected)


def rmbench_domain(domain: str, where: str) -> str:
    for name in RMBENCH_DOMAINS:
        if domain.startswith(name):
            return name
    raise RowError(where, "domain", f"is {domain!r}", f"RM-Bench domains start with one of {', '.join(RMBENCH_DOMAINS)}")


def parse_rmbench(row_id: int, data: dict, where: str, fmt: str = "rmbench") -> CandidateRow:
    row_key, domain, prompt = _common(data, where, "domain")
    sides = {}
    for field in ("chosen", "rejected"):
        value = data.get(field)
        if isinstance(value, (list, tuple)) and len(value) != RMBENCH_VARIANTS:
            # upstream indexes variants 0..2 of every row: a short row cannot be scored on the 3x3 matrix
            raise RowError(where, field, f"has {len(value)} style variants, not {RMBENCH_VARIANTS}",
                           "RM-Bench rows give concise, detailed plain and detailed markdown responses")
        sides[field] = _responses(data, field, where)
    return CandidateRow(row_id, row_key, rmbench_domain(domain, where), prompt, sides["chosen"], sides["rejected"])


PARSERS = {"rewardbench2": (parse_rewardbench2, "RewardBench 2 rows"), "rmbench": (parse_rmbench, "RM-Bench rows")}


def read_candidate_rows(benchmark: str, path: str, *, name: str = "", split: str = "train", max_rows: int = 0,
                        skip_invalid: bool = False):
    """Every valid row of ``benchmark`` (a key of PARSERS) as CandidateRow, in file order: a ReadReport
    whose ``pairs`` are the rows."""
    if benchmark not in PARSERS:
        raise InputError(f"unknown benchmark format {benchmark!r}", f"use one of {', '.join(PARSERS)}")
    parse, rows = PARSERS[benchmark]
    return read_pairs(path, name=name, split=split, fmt=benchmark, max_rows=max_rows, skip_invalid=skip_invalid,
                      parse=parse, rows=rows, hint="check the file against the benchmark's schema (see README: eval rm)")
