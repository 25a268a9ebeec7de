"""The four benchmarks' shipped inputs (data/, see data/SOURCES.md): prompts, baseline answers,
reference answers and the official judge prompts, read into one small shape.

A ``Question`` is what a model answers: one or two user turns (MT-Bench has two). Benchmark-specific
facts (official judge, default answer length, baseline) live in ``SPECS`` so the rest of the code
never branches on file layouts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import huggingface_hub

from segtool.errors import ConfigError, InputError
from segtool.inputs.textfiles import UTF8_HINT, read_lines, read_text

DATA = Path(__file__).resolve().parents[2] / "data"


@dataclass(frozen=True)
class Spec:
    name: str
    prompts: Path
    default_max_new_tokens: int  # the official generation settings (FastChat 1024, arena 4096, ...)
    official_judge: str  # the judge model of the published leaderboard ("" = no judge: gsm8k)
    baseline_name: str  # the official baseline's model name ("" = none)


SPECS = {
    "alpaca": Spec("alpaca", DATA / "alpaca_eval" / "alpaca_eval_gpt4_baseline.json.gz", 2048, "gpt-4-1106-preview", "gpt4_1106_preview"),
    "arena": Spec("arena", DATA / "arena_hard" / "question.jsonl.gz", 4096, "gpt-4-1106-preview", "gpt-4-0314"),
    # v2.0's baseline differs per category (ARENA_V2_BASELINES); o3-mini is the hard_prompt one
    "arena-v2": Spec("arena-v2", DATA / "arena_hard_v2" / "question.jsonl.gz", 4096, "gpt-4.1", "o3-mini-2025-01-31"),
    "mtbench": Spec("mtbench", DATA / "mt_bench" / "question.jsonl", 1024, "gpt-4", ""),
    "gsm8k": Spec("gsm8k", DATA / "gsm8k" / "test.jsonl.gz", 512, "", ""),
}
BENCHES = tuple(SPECS)


@dataclass(frozen=True)
class Question:
    qid: str  # the benchmark's own id (as text); AlpacaEval has none: its position
    index: int  # position in the benchmark file (AlpacaEval's LC difficulty is indexed by it)
    category: str
    turns: tuple[str, ...]  # user turns, answered one after the other
    meta: dict = field(default_factory=dict, compare=False)  # dataset (alpaca), reference solution (gsm8k), raw id


def spec(bench: str) -> Spec:
    if bench not in SPECS:
        raise ConfigError(f"unknown benchmark {bench!r}", f"use one of: {', '.join(BENCHES)}")
    return SPECS[bench]


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a (gzipped) jsonl file; a bad line is an InputError naming the file and line."""
    rows = []
    for line in read_lines(path):
        n = line.number
        if line.text is None:
            raise InputError(f"{path}: line {n}: {line.problem}", UTF8_HINT)
        if not line.text.strip():
            continue
        try:
            row = json.loads(line.text)
        except ValueError as err:
            raise InputError(f"{path}: line {n}: not valid JSON ({err})", "fix or remove that line") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}: line {n}: not a JSON object", "each line must be one {...} record")
        rows.append(row)
    return rows


def read_json(path: Path):
    try:
        return json.loads(read_text(path))
    except ValueError as err:
        raise InputError(f"{path}: not valid JSON ({err})", "give the file the tool wrote, unchanged") from None


def _need(row: dict, key: str, typ, where: str):
    value = row.get(key)
    if not isinstance(value, typ) or (isinstance(value, str) and not value.strip()):
        raise InputError(f"{where}: field '{key}' is missing or not a {getattr(typ, '__name__', typ)}",
                         "the shipped benchmark files are read unchanged: restore data/ from git")
    return value


@cache
def _questions(bench: str) -> tuple[Question, ...]:
    path = spec(bench).prompts
    out = []
    if bench == "alpaca":
        for i, row in enumerate(read_json(path)):
            where = f"{path}: row {i}"
            out.append(Question(str(i), i, row.get("dataset", ""), (_need(row, "instruction", str, where),),
                                {"dataset": row.get("dataset", ""), "baseline": _need(row, "output", str, where)}))
    elif bench == "arena":
        for i, row in enumerate(read_jsonl(path)):
            where = f"{path}: line {i + 1}"
            turns = _need(row, "turns", list, where)
            out.append(Question(str(_need(row, "question_id", str, where)), i, row.get("category", ""),
                                (_need(turns[0], "content", str, where),), {"cluster": row.get("cluster", "")}))
    elif bench == "arena-v2":
        out = list(arena_v2_questions(path))
    elif bench == "mtbench":
        for i, row in enumerate(read_jsonl(path)):
            where = f"{path}: line {i + 1}"
            turns = tuple(_need(row, "turns", list, where))
            out.append(Question(str(_need(row, "question_id", int, where)), i, _need(row, "category", str, where), turns,
                                {"question_id": row["question_id"]}))
    else:
        for i, row in enumerate(read_jsonl(path)):
            where = f"{path}: line {i + 1}"
            out.append(Question(str(i), i, "gsm8k", (_need(row, "question", str, where),),
                                {"solution": _need(row, "answer", str, where)}))
    return tuple(out)


def arena_v2_questions(path: Path) -> tuple[Question, ...]:
    """Arena-Hard-Auto v2.0 questions (uid, category, subcategory, prompt) of a question.jsonl."""
    out = []
    for i, row in enumerate(read_jsonl(path)):
        where = f"{path}: line {i + 1}"
        category = _need(row, "category", str, where)
        if category not in arena_v2_settings():
            raise InputError(f"{where}: field 'category' = {category!r} has no judge settings",
                             f"use one of: {', '.join(arena_v2_settings())}")
        out.append(Question(_need(row, "uid", str, where), i, category, (_need(row, "prompt", str, where),),
                            {"subcategory": row.get("subcategory", "")}))
    return tuple(out)


def questions(bench: str, limit: int = 0) -> list[Question]:
    """The benchmark's prompts in file order; ``limit`` keeps the first N (0 = all)."""
    items = list(_questions(bench))
    return items[:limit] if limit else items


@cache
def arena_baseline() -> dict[str, dict]:
    """question_id -> {"content", "token_len"} of gpt-4-0314's answers."""
    path = DATA / "arena_hard" / "model_answer" / "gpt-4-0314.jsonl.gz"
    out = {}
    for i, row in enumerate(read_jsonl(path)):
        turn = row["choices"][0]["turns"][0]
        out[row["question_id"]] = {"content": turn["content"], "token_len": turn.get("token_len")}
        if not isinstance(turn.get("content"), str):
            raise InputError(f"{path}: line {i + 1}: no answer text", "restore data/ from git")
    return out


def official_baseline(bench: str, items: list[Question]) -> list[str]:
    """The official baseline's answer to each question (AlpacaEval: gpt4_1106_preview; Arena-Hard:
    gpt-4-0314)."""
    if bench == "alpaca":
        return [q.meta["baseline"] for q in items]
    if bench == "arena":
        table = arena_baseline()
        return [table[q.qid]["content"] for q in items]
    raise ConfigError(f"{bench} has no official baseline answers", "MT-Bench grades single answers; GSM8K has references")


@cache
def arena_v2_settings() -> dict[str, dict]:
    """category -> {"baseline", "system_prompt"} of arena-hard-auto v2.0 (utils/judge_utils.py)."""
    import yaml  # PyYAML: a dependency of transformers and datasets

    return yaml.safe_load((DATA / "arena_hard_v2" / "judge_settings.yaml").read_text())


@cache
def arena_v2_judge_config() -> dict:
    """arena-hard-auto's v2.0 judge config (template, verdict patterns, temperature, max_tokens)."""
    import yaml

    return yaml.safe_load((DATA / "arena_hard_v2" / "arena-hard-v2.0.yaml").read_text())


def arena_v2_answers(path: Path) -> dict[str, dict]:
    """uid -> {"model", "content", "token_len"} of a model_answer jsonl in arena-hard-auto v2.0's schema
    (uid, model, messages[-1].content.answer, metadata.token_len)."""
    out = {}
    for i, row in enumerate(read_jsonl(path)):
        where = f"{path}: line {i + 1}"
        hint = "give an arena-hard-auto v2.0 model_answer jsonl (metadata added by its utils/add_markdown_info.py)"
        uid = row.get("uid")
        messages = row.get("messages")
        content = messages[-1].get("content") if isinstance(messages, list) and messages and isinstance(messages[-1], dict) else None
        answer = content.get("answer") if isinstance(content, dict) else None
        token_len = (row.get("metadata") or {}).get("token_len") if isinstance(row.get("metadata"), dict) else None
        for field_name, ok in (("uid", isinstance(uid, str) and uid), ("model", isinstance(row.get("model"), str)),
                               ("messages[-1].content.answer", isinstance(answer, str)),
                               ("metadata.token_len", isinstance(token_len, int) and not isinstance(token_len, bool))):
            if not ok:
                raise InputError(f"{where}: field '{field_name}' is missing or malformed", hint)
        out[uid] = {"model": row["model"], "content": answer, "token_len": token_len}
    return out


ARENA_V2_SHIPPED = DATA / "arena_hard_v2" / "model_answer"


ARENA_HUB_REPO = "lmarena-ai/arena-hard-auto"  # the official results archive, a dataset repository
ARENA_V2_HUB_ANSWERS = "data/arena-hard-v2.0/model_answer"


@cache
def creative_baseline_file(value: str) -> Path:
    """The creative_writing baseline answers named by ``eval.arena_creative_baseline``: a local
    model_answer jsonl, or ``hub`` / ``hub:OWNER/NAME`` for gemini-2.0-flash-001's answers in the official
    archive (or a copy with its layout), downloaded once into the Hugging Face cache."""
    if value != "hub" and not value.startswith("hub:"):
        path = Path(value).expanduser()
        if not path.is_file():
            raise InputError(f"eval.arena_creative_baseline: {path} does not exist",
                             "give gemini-2.0-flash-001's answers as an arena-hard-auto v2.0 model_answer jsonl, or 'hub'")
        return path
    repo = value.partition(":")[2] or ARENA_HUB_REPO
    filename = f"{ARENA_V2_HUB_ANSWERS}/{arena_v2_settings()['creative_writing']['baseline']}.jsonl"
    try:
        return Path(huggingface_hub.hf_hub_download(repo, filename, repo_type="dataset"))
    except Exception as e:  # offline, unknown repository or file, refused token: all one fix for the user
        raise InputError(f"eval.arena_creative_baseline = {value}: could not download {filename} from the "
                         f"dataset {repo} ({type(e).__name__})",
                         "on a machine without hub access, download that file elsewhere and give its path") from e


def arena_v2_baselines(items: list[Question], creative: str = "") -> tuple[dict[str, str], dict[str, dict]]:
    """(category -> why it is skipped, uid -> baseline answer) for v2.0's per-category baselines: the
    shipped o3-mini answers, and for creative_writing the answers ``creative`` names (creative_baseline_file;
    gemini-2.0-flash-001's answers do not ship). A category whose baseline answers are not available is
    skipped, never substituted."""
    tables: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    answers: dict[str, dict] = {}
    for category in dict.fromkeys(q.category for q in items):
        model = arena_v2_settings()[category]["baseline"]
        path = ARENA_V2_SHIPPED / f"{model}.jsonl.gz"
        if category == "creative_writing" and creative:
            path = creative_baseline_file(creative)
        elif not path.is_file():
            skipped[category] = (f"its baseline {model}'s answers are not shipped; give them with "
                                 "--creative-baseline FILE (an arena-hard-auto v2.0 model_answer jsonl) or --creative-baseline hub")
            continue
        if path not in tables:
            tables[path] = arena_v2_answers(path)
        table = tables[path]
        missing = [q.qid for q in items if q.category == category and q.qid not in table]
        if missing:
            raise InputError(f"{path}: no answer to question uid {missing[0]} ({len(missing)} missing in {category})",
                             f"give {model}'s answers to every {category} question")
        answers.update({q.qid: table[q.qid] for q in items if q.category == category})
    return skipped, answers


@cache
def mtbench_references() -> dict[str, tuple[str, ...]]:
    """question_id -> GPT-4 reference turns (math, reasoning and coding questions)."""
    rows = read_jsonl(DATA / "mt_bench" / "reference_answer" / "gpt-4.jsonl")
    return {str(r["question_id"]): tuple(r["choices"][0]["turns"]) for r in rows}


@cache
def mtbench_judge_prompts() -> dict[str, dict]:
    """FastChat's judge prompts by name (single-v1, single-math-v1, and their -multi-turn forms)."""
    return {r["name"]: r for r in read_jsonl(DATA / "mt_bench" / "judge_prompts.jsonl")}


@cache
def arena_judge_config() -> dict:
    """arena-hard-auto's v0.1 judge config (system prompt, template, regex, attempts, max_tokens)."""
    import yaml  # lazy: PyYAML is not a declared dependency (transformers and datasets bring it)

    return yaml.safe_load((DATA / "arena_hard" / "judge_config.yaml").read_text())


def alpaca_judge_template() -> str:
    """The weighted AlpacaEval 2.0 judge prompt (ChatML text with {instruction}, {output_1}, {output_2})."""
    return (DATA / "alpaca_eval" / "judge" / "alpaca_eval_clf_gpt4_turbo" / "alpaca_eval_clf.txt").read_text()


def gsm8k_shots(k: int) -> list[dict]:
    """The first k shipped GSM8K train problems ({"question", "answer"}), as few-shot examples."""
    rows = read_jsonl(DATA / "gsm8k" / "train-first8.jsonl")
    if k > len(rows):
        raise ConfigError(f"eval.gsm8k_shots = {k} but only {len(rows)} examples ship", f"use 0-{len(rows)}")
    return rows[:k]
