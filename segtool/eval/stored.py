"""Metrics from stored judgments, in the official tools' own file formats: alpaca_eval's
annotations.json, arena-hard-auto's judgment jsonl and FastChat's single-judgment jsonl.

The same functions score segtool's own judgments (written in those formats), so our numbers and the
official ones come from one code path. Every row is validated first: a bad row stops with the file,
row and field named.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from segtool.errors import InputError
from segtool.eval.alpaca_metrics import leaderboard_metrics, load_lc_inputs
from segtool.eval.arena_metrics import leaderboard, question_outcomes
from segtool.eval.benchmarks import questions, read_json, read_jsonl, spec
from segtool.eval.mtbench_metrics import summarise

FORMAT_HINT = {
    "alpaca": "give alpaca_eval's annotations.json (a JSON list of rows with instruction, output_1, output_2, preference)",
    "arena": "give arena-hard-auto's model_judgment/<judge>/ folder or one of its jsonl files (one row per question: model, games[].score)",
    "mtbench": "give FastChat's model_judgment/<judge>_single.jsonl (one row per turn: model, turn, score)",
}


def _field(row, key: str, check, what: str, where: str, bench: str):
    if not isinstance(row, dict) or key not in row or not check(row[key]):
        got = "missing" if not isinstance(row, dict) or key not in row else f"{row[key]!r:.60}"
        raise InputError(f"{where}: field '{key}' must be {what} (got {got})", FORMAT_HINT[bench])
    return row[key]


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _read(path: Path, bench: str):
    if not path.is_file():
        raise InputError(f"{path} not found", FORMAT_HINT[bench])
    return read_jsonl(path) if ".jsonl" in path.name else read_json(path)


def _jsonl_files(path: Path, hint: str) -> list[Path]:
    """``path`` itself, or the .jsonl(.gz) files of a folder (arena-hard-auto writes one per model)."""
    if not path.is_dir():
        return [path]
    files = sorted(f for f in path.iterdir() if f.is_file() and f.name.endswith((".jsonl", ".jsonl.gz")))
    if not files:
        raise InputError(f"{path}: no .jsonl files in this folder", hint)
    return files


# -- AlpacaEval -----------------------------------------------------------------------------------
def alpaca_rows(path: Path) -> list[dict]:
    rows = _read(path, "alpaca")
    if not isinstance(rows, list) or not rows:
        raise InputError(f"{path}: expected a non-empty JSON list of annotations", FORMAT_HINT["alpaca"])
    for i, row in enumerate(rows):
        where = f"{path}: row {i}"
        for key in ("instruction", "output_1", "output_2"):
            _field(row, key, lambda v: isinstance(v, str), "a string", where, "alpaca")
        pref = _field(row, "preference", lambda v: v is None or _is_number(v), "a number in [1, 2] or null", where, "alpaca")
        if pref is not None and not math.isnan(pref) and pref != 0 and not 1 <= pref <= 2:
            raise InputError(f"{where}: field 'preference' = {pref} is outside [1, 2]", FORMAT_HINT["alpaca"])
    return rows


def difficulty_positions(instructions: list[str]) -> tuple[list[int] | None, str]:
    """Index of each instruction in AlpacaEval's 805 (the LC GLM's instruction difficulty is indexed
    by it): positional when the rows follow the official order (as alpaca_eval writes them), else
    looked up by text; None when some instruction is not an AlpacaEval one."""
    official = [q.turns[0] for q in questions("alpaca")]
    if instructions == official[: len(instructions)]:
        return list(range(len(instructions))), "positional"
    where = {text: i for i, text in enumerate(official)}
    found = [where.get(text) for text in instructions]
    if any(i is None for i in found):
        return None, f"{sum(i is None for i in found)} instructions are not AlpacaEval's"
    return found, "matched by instruction"


def alpaca_metrics(rows: list[dict]) -> dict[str, dict]:
    """Per generator_2: the AlpacaEval 2.0 leaderboard metrics of its annotations."""
    difficulty, _ = load_lc_inputs()
    out = {}
    for model in dict.fromkeys(r.get("generator_2", "model") for r in rows):
        mine = [r for r in rows if r.get("generator_2", "model") == model]
        positions, how = difficulty_positions([r["instruction"] for r in mine])
        official = all(r.get("generator_1", spec("alpaca").baseline_name) == spec("alpaca").baseline_name for r in mine)
        pref = [np.nan if r["preference"] is None else float(r["preference"]) for r in mine]
        try:
            m = leaderboard_metrics(pref, [len(r["output_1"]) for r in mine], [len(r["output_2"]) for r in mine],
                                    difficulty[positions] if positions else None,
                                    length_controlled=official and positions is not None)
        except ValueError as err:
            raise InputError(f"annotations of {model}: {err}", "check that the judge returned logprobs for 'm'/'M'") from None
        if not official:
            m["lc_note"] = "not computed: the baseline is not gpt4_1106_preview"
        elif positions is None:
            m["lc_note"] = f"not computed: {how}"
        else:
            m.setdefault("lc_note", how)  # how the instruction difficulties were found
        out[model] = m
    return out


# -- Arena-Hard -----------------------------------------------------------------------------------
def arena_records(path: Path) -> list[dict]:
    """Judgment rows of one jsonl file, or of every file in a model_judgment/<judge>/ folder."""
    if path.is_dir():
        return [row for f in _jsonl_files(path, FORMAT_HINT["arena"]) for row in arena_records(f)]
    rows = _read(path, "arena")
    if not rows:
        raise InputError(f"{path}: no judgment rows", FORMAT_HINT["arena"])
    for i, row in enumerate(rows):
        where = f"{path}: line {i + 1}"
        _field(row, "model", lambda v: isinstance(v, str) and v, "a model name", where, "arena")
        games = _field(row, "games", lambda v: isinstance(v, list) and len(v) in (1, 2), "a list of one or two games", where, "arena")
        for g, game in enumerate(games):
            _field(game, "score", lambda v: v is None or isinstance(v, str), "a verdict string or null", f"{where}: games[{g}]", "arena")
    return rows


def arena_battles(records: list[dict], baseline: str) -> list[tuple[str, str, str]]:
    """(model_a = baseline, model_b = model, winner) battles in show_result.py's order."""
    to_winner = {"baseline": "model_a", "model": "model_b", "tie": "tie"}
    games = []
    for r in records:
        g = r["games"]
        for outcome in question_outcomes(g[0]["score"], g[1]["score"] if len(g) > 1 else None):
            games.append((r.get("baseline", baseline), r["model"], to_winner[outcome]))
    return games


def arena_metrics(records: list[dict], baseline: str, *, rounds: int = 100, seed: int = 42,
                  token_lengths: dict[str, list[int]] | None = None) -> dict[str, dict]:
    """Per model: score, 95% interval, battles, unparsed games and (given answers) average tokens."""
    games = arena_battles(records, baseline)
    if not games:
        raise InputError("no game has a verdict", "the judge never gave [[A>B]]-style verdicts: check its prompt")
    board = leaderboard(games, baseline, rounds, seed)
    out = {}
    for model, row in board.items():
        mine = [r for r in records if r["model"] == model]
        lens = (token_lengths or {}).get(model)
        out[model] = {**row, "questions": len(mine), "unparsed_games": sum(g["score"] is None for r in mine for g in r["games"]),
                      "avg_tokens": int(np.mean(lens)) if lens else None, "rounds": rounds, "seed": seed, "baseline": baseline}
    return out


def arena_token_lengths(path: Path) -> dict[str, list[int]]:
    """model -> token_len of each answer in an arena-hard-auto model_answer jsonl (or a folder of them)."""
    out: dict[str, list[int]] = {}
    for f in _jsonl_files(path, "give arena-hard-auto's model_answer folder or one of its jsonl files"):
        for i, row in enumerate(read_jsonl(f)):
            where = f"{f}: line {i + 1}"
            try:
                turn = row["choices"][0]["turns"][0]
                n = turn["token_len"] if "token_len" in turn else row["conv_metadata"]["token_len"]
            except (KeyError, IndexError, TypeError):
                raise InputError(f"{where}: field 'choices[0].turns[0].token_len' is missing", "give arena-hard-auto model_answer files") from None
            out.setdefault(_field(row, "model_id", lambda v: isinstance(v, str), "a model name", where, "arena"), []).append(int(n))
    return out


# -- MT-Bench -------------------------------------------------------------------------------------
def mtbench_records(path: Path) -> list[dict]:
    rows = _read(path, "mtbench")
    if not rows:
        raise InputError(f"{path}: no judgment rows", FORMAT_HINT["mtbench"])
    for i, row in enumerate(rows):
        where = f"{path}: line {i + 1}"
        _field(row, "model", lambda v: isinstance(v, str) and v, "a model name", where, "mtbench")
        _field(row, "turn", lambda v: v in (1, 2), "1 or 2", where, "mtbench")
        _field(row, "score", _is_number, "a number (-1 = no rating)", where, "mtbench")
    return rows


def mtbench_metrics(records: list[dict]) -> dict[str, dict]:
    """Per model: turn 1, turn 2 and overall means over rated rows (FastChat's show_result)."""
    out = {}
    for model in dict.fromkeys(r["model"] for r in records):
        out[model] = summarise([(r["turn"], float(r["score"])) for r in records if r["model"] == model])
    return out
