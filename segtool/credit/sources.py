"""Clean responses for `segtool credit make`, and the shipped word lists it draws from.

Sources (``--source``):

* ``hh``: the chosen answers of the bundled HH-RLHF pairs (data/prefs/hh-helpful-tiny.jsonl.gz);
* ``alpaca``: AlpacaEval's reference outputs (gpt4_1106_preview, data/alpaca_eval/);
* ``gsm8k``: GSM8K's reference solutions (data/gsm8k/test.jsonl.gz) without the ``<<...>>``
  calculator annotations, as a person writes them (the ``#### answer`` line is kept);
* a file: the chosen side of any preference file segtool reads, or rows with ``prompt`` (text or
  chat messages) and ``response``.

``sft`` (samples of the run's own pi_SFT) needs the model and is built by the stage
(``pipeline.credit_make``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segtool.credit.arithmetic import strip_annotations
from segtool.credit.gold import GoldScorer
from segtool.credit.sentences import is_finished, split_sentences
from segtool.errors import InputError
from segtool.eval.benchmarks import questions
from segtool.inputs.rows import RowError, _messages, parse_pair, read_pairs

DATA = Path(__file__).resolve().parents[2] / "data"
BUILTIN = {"hh": DATA / "prefs" / "hh-helpful-tiny.jsonl.gz",
           "alpaca": DATA / "alpaca_eval" / "alpaca_eval_gpt4_baseline.json.gz",
           "gsm8k": DATA / "gsm8k" / "test.jsonl.gz"}
SOURCE_NAMES = {"hh": "hh-rlhf", "alpaca": "alpaca_eval", "gsm8k": "gsm8k", "sft": "sft-samples"}
TOXIC_SENTENCES = DATA / "credit" / "toxic_sentences.txt"
STORY_PROMPTS = DATA / "credit" / "story_prompts.txt"
POOL_WORDS = (4, 40)  # off-topic sentences: finished sentences of this many words


@dataclass(frozen=True)
class Clean:
    prompt: tuple[dict, ...]  # chat messages, the last one from the user
    response: str
    source: str
    source_row: int


@dataclass
class SourceRows:
    rows: list[Clean]
    invalid: list[InputError]  # rows skipped with --skip-invalid


def gold_scorer() -> GoldScorer:
    """The gold scorer with the shipped insult list, weights 1."""
    return GoldScorer(toxic=read_lines(TOXIC_SENTENCES, "toxic sentences"))


def source_file(source: str) -> Path:
    """The file a source reads (a built-in name or a path)."""
    if source in BUILTIN:
        return BUILTIN[source]
    path = Path(source).expanduser()
    if not path.is_file():
        raise InputError(f"--source {source}: no such file", f"use one of {', '.join([*BUILTIN, 'sft'])} or a "
                         "preference / prompt-response file (.jsonl, .jsonl.gz, .parquet)")
    return path


def read_source(source: str, *, skip_invalid: bool = False) -> SourceRows:
    """The clean responses of a built-in source or a file, in file order."""
    if source in ("alpaca", "gsm8k"):
        # the shipped benchmark files, read as `segtool eval` reads them
        rows = [Clean(({"role": "user", "content": q.turns[0]},),
                      q.meta["baseline"] if source == "alpaca" else strip_annotations(q.meta["solution"]),
                      SOURCE_NAMES[source], q.index) for q in questions(source)]
        return SourceRows(rows, [])
    path = source_file(source)
    name = SOURCE_NAMES.get(source, path.name)
    report = read_pairs(str(path), skip_invalid=skip_invalid, parse=lambda row_id, data, where, _: _clean(data, row_id, where, name),
                        rows="responses", hint="give preference rows, or rows with 'prompt' and 'response'")
    return SourceRows(report.pairs, report.invalid)


def _clean(data: dict, row_id: int, where: str, name: str) -> Clean:
    if "response" in data and "chosen" not in data:
        if data.get("prompt") is None:
            raise RowError(where, "prompt", "is missing", "rows with a 'response' need the 'prompt' it answers")
        prompt = _messages(data["prompt"], where, "prompt")
        if prompt[-1]["role"] != "user":
            raise RowError(where, "prompt", "does not end with a user message",
                           "the prompt must end with the turn being answered")
        response = data["response"]
        if not isinstance(response, str) or not response.strip():
            raise RowError(where, "response", "is not a non-empty string", "give the response text")
        return Clean(tuple(prompt), response, name, row_id)
    pair = parse_pair(row_id, data, where)
    return Clean(pair.prompt, pair.chosen, name, row_id)


def read_lines(path: Path, what: str) -> list[str]:
    """The non-empty lines of a shipped text list (``#`` starts a comment line)."""
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read {what} {path}: {err}",
                         "restore the file from git, or pass another one") from None
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise InputError(f"{path}: no {what} in it", "write one per line")
    return lines


def offtopic_pool(rows: list[Clean]) -> list[tuple[int, str]]:
    """(row index, sentence) of every finished sentence of POOL_WORDS words in the responses."""
    low, high = POOL_WORDS
    return [(i, s.text) for i, row in enumerate(rows) for s in split_sentences(row.response)
            if low <= s.words <= high and is_finished(s.text)]
