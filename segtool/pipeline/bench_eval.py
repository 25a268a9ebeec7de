"""`segtool eval alpaca|arena|mtbench|gsm8k`: answers (``bench_answers``), the judge's verdicts in the
benchmark's own judgment format, and the official metrics, recorded as one ``eval-<bench>`` artifact
per (answers, baseline, judge).

Judge calls are cached on disk by (judge, request) (``eval.judges.cache``), so re-running, resuming
after a failure, or re-scoring the same answers in another run directory never repeats a paid call.
The metrics are computed by ``eval.stored`` from the very judgment records written to disk: the
path that re-scores the official tools' files also scores ours.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from segtool.artifacts.files import atomic_path, atomic_write_text, strict_json
from segtool.artifacts.fingerprint import fingerprint_path
from segtool.artifacts.manifest import RunDir, artifact_id
from segtool.config.loader import config_to_dict
from segtool.config.schema import Config
from segtool.console import STDERR
from segtool.errors import ConfigError, InputError
from segtool.eval import (
    alpaca_judging,
    arena_judging,
    arena_v2_judging,
    arena_v2_metrics,
    benchmarks,
    formats,
    judges,
    mtbench_judging,
    stored,
)
from segtool.eval.arena_style import answer_features
from segtool.eval.gsm8k_metrics import last_number, reference_answer
from segtool.eval.reports import markdown_report
from segtool.pipeline import bench_answers
from segtool.pipeline import stage as protocol
from segtool.pipeline.bench_answers import Target
from segtool.pipeline.common import StageResult, already_complete, exclusive_stage
from segtool.pipeline.runner import run_stage

SCHEMA_VERSION = 1
PROXY_NOTE = "PROXY judge (the reward model): not comparable with published leaderboards"


def stage_name(bench: str) -> str:
    return f"eval-{bench}"


def resolve_target(cfg: Config, model: str | None = None, name: str | None = None) -> Target:
    """--model (``sft`` = model.path), else the run directory's ppo policy."""
    return bench_answers.model_target(cfg, model, name) if model else bench_answers.policy_target(cfg, name)


def baseline_target(cfg: Config) -> Target | None:
    """None for the benchmark's official baseline answers, else the model whose answers compete."""
    if cfg.eval.baseline == "official":
        return None
    return bench_answers.model_target(cfg, cfg.eval.baseline)


def check_judge(cfg: Config, bench: str, judge=None) -> None:
    """Refuse what cannot work before anything is generated: a reward model cannot grade MT-Bench."""
    if bench == "mtbench" and (cfg.eval.judge == "proxy" or getattr(judge, "proxy", False)):
        raise ConfigError("MT-Bench grades single answers on a 1-10 scale, which a reward model cannot give",
                          "use an LLM judge: --judge http (an OpenAI-compatible endpoint) or --judge hf --judge-model DIR")


@dataclass
class Plan:
    bench: str
    stage: str
    target: Target
    baseline: Target | None
    judge: object  # None for gsm8k
    art_id: str
    identity: dict
    parents: list[str]


def plan(cfg: Config, bench: str, target: Target, *, judge=None, api_key: str | None = None, rm: str | None = None,
         stage: str | None = None) -> Plan:
    """The eval artifact's identity, computed without loading any model."""
    check_judge(cfg, bench, judge)
    answers_id = bench_answers.plan_id(cfg, bench, target)
    ident = {"bench": bench, "answers": answers_id}
    parents = [answers_id]
    baseline = None
    if bench != "gsm8k":
        judge = judge or judges.build(cfg, bench, api_key=api_key, rm=rm)
        ident.update(judge=judge.identity, judge_max_tokens=cfg.eval.judge_max_tokens)
        parents += list(getattr(judge, "parents", []))
    if bench in ("alpaca", "arena", "arena-v2"):  # pairwise against a baseline; MT-Bench grades single answers
        baseline = baseline_target(cfg)
        ident["baseline"] = "official" if baseline is None else bench_answers.plan_id(cfg, bench, baseline)
        parents += [] if baseline is None else [ident["baseline"]]
        if bench in ("arena", "arena-v2"):
            ident["bootstrap_rounds"] = cfg.eval.bootstrap_rounds
        if bench == "arena-v2" and baseline is None and cfg.eval.arena_creative_baseline:
            creative = benchmarks.creative_baseline_file(cfg.eval.arena_creative_baseline)
            ident["creative_baseline"] = fingerprint_path(creative)
    stage = stage or stage_name(bench)
    return Plan(bench, stage, target, baseline, judge, artifact_id(stage, ident, parents, SCHEMA_VERSION), ident, parents)


@exclusive_stage("eval")
def run(cfg: Config, bench: str, target: Target, *, resume: bool = False, force: bool = False, quiet: bool = False,
        judge=None, api_key: str | None = None, rm: str | None = None, stage: str | None = None) -> StageResult:
    """Answer (or reuse answers), judge (from the cache where possible), score, record."""
    the_plan = plan(cfg, bench, target, judge=judge, api_key=api_key, rm=rm, stage=stage)
    rundir = RunDir(cfg.run.workdir)
    done = already_complete(rundir, the_plan.stage, the_plan.art_id, None, force)
    if done:
        return done
    started = time.perf_counter()
    answers_record, rows, files, metrics = _evaluate(cfg, the_plan, resume=resume, force=force, quiet=quiet)
    record = rundir.begin(the_plan.stage, the_plan.art_id, config=config_to_dict(cfg), identity_config=the_plan.identity,
                          parents=the_plan.parents, schema_version=SCHEMA_VERSION,
                          inputs={"model": target.what, "answers": answers_record["id"]}, resume=False)
    _write_files(rundir, record, files)
    record = rundir.complete(the_plan.art_id, rows={"questions": len(rows)}, metrics=metrics,
                             seconds=time.perf_counter() - started)
    return StageResult(the_plan.stage, the_plan.art_id, "computed", str(rundir.root), record, metrics)


def _evaluate(cfg: Config, the_plan: Plan, *, resume, force, quiet) -> tuple[dict, list[dict], dict, dict]:
    """(answers record, answer rows, files to write, metrics) of the planned evaluation."""
    bench, target = the_plan.bench, the_plan.target
    answers_record, rows = bench_answers.ensure(cfg, bench, target, resume=resume, force=force, quiet=quiet)
    if bench == "gsm8k":
        files, metrics = _grade_gsm8k(rows, target)
    else:
        files, metrics = _judge(cfg, the_plan, rows, resume=resume, force=force, quiet=quiet)
    metrics = strict_json({"benchmark": bench, "model": target.name, **metrics, "answers": answers_record["id"]})
    files["report.md"] = _report(cfg, metrics)
    return answers_record, rows, files, metrics


def _write_files(rundir: RunDir, record: dict, files: dict) -> None:
    """Each file (text, or a function writing it to a path) into the artifact's folder, recorded."""
    for name, write in files.items():
        if callable(write):
            write(rundir.path_of(record, name))
        else:
            _write_text(rundir.path_of(record, name), write)
        rundir.add_file(record["id"], name)


# -- judging ------------------------------------------------------------------------------------
def _baseline_answers(cfg: Config, the_plan: Plan, items, resume, force, quiet) -> tuple[str, list[str], list[int] | None]:
    """(baseline name, its answer to each question, its token counts or None)."""
    if the_plan.baseline is None:
        name = benchmarks.spec(the_plan.bench).baseline_name
        texts = benchmarks.official_baseline(the_plan.bench, items)
        lens = [benchmarks.arena_baseline()[q.qid]["token_len"] for q in items] if the_plan.bench == "arena" else None
        return name, texts, lens
    _, rows = bench_answers.ensure(cfg, the_plan.bench, the_plan.baseline, resume=resume, force=force, quiet=quiet)
    by_index = {r["index"]: r for r in rows}
    return the_plan.baseline.name, [by_index[q.index]["turns"][0] for q in items], [by_index[q.index]["new_tokens"][0] for q in items]


def _judge(cfg: Config, the_plan: Plan, rows: list[dict], *, resume, force, quiet) -> tuple[dict, dict]:
    bench, judge, name = the_plan.bench, the_plan.judge, the_plan.target.name
    by_index = {q.index: q for q in benchmarks.questions(bench)}
    items = [by_index[r["index"]] for r in rows]
    outputs = [r["turns"][0] for r in rows]
    cache = judges.cache_for(cfg, judge)
    files = {}  # the answers in the benchmark's format are in the answers artifact
    common = {"judge": judge.label, "judge_name": judge.name, "judge_kind": judge.identity["kind"], "proxy": judge.proxy}
    if bench == "arena-v2":
        return _judge_arena_v2(cfg, the_plan, items, rows, cache, common, resume=resume, force=force, quiet=quiet)
    if bench == "mtbench":
        records = mtbench_judging.judge(judge, cache, items, name, [list(r["turns"]) for r in rows],
                                        max_tokens=cfg.eval.judge_max_tokens, quiet=quiet)
        metrics = {**common, "questions": len(rows), **stored.mtbench_metrics(records)[name]}
    else:
        base_name, base_texts, base_lens = _baseline_answers(cfg, the_plan, items, resume, force, quiet)
        common["baseline"] = base_name
        if bench == "alpaca":
            records = alpaca_judging.judge(judge, cache, items, base_name, base_texts, name, outputs, quiet=quiet)
            metrics = {**common, **stored.alpaca_metrics(records)[name]}
        else:
            records = arena_judging.judge(judge, cache, items, base_texts, name, outputs,
                                          max_tokens=cfg.eval.judge_max_tokens, quiet=quiet)
            lens = {name: [int(r["new_tokens"][0]) for r in rows]}
            if base_lens and all(n is not None for n in base_lens):
                metrics_base = {"baseline_avg_tokens": int(sum(base_lens) / len(base_lens))}
            else:
                metrics_base = {}
            board = stored.arena_metrics(records, base_name, rounds=cfg.eval.bootstrap_rounds, token_lengths=lens)
            metrics = {**common, **board[name], **metrics_base}
    if judge.proxy:
        metrics["note"] = PROXY_NOTE
    metrics.update(cache.stats())
    judgment_file = formats.JUDGMENT_FILES[bench]
    files[judgment_file] = lambda p: formats.write_records(p, records, bench == "alpaca")
    files["judgments.parquet"] = lambda p: _write_judgments_parquet(p, bench, records)
    return files, metrics


def _judge_arena_v2(cfg: Config, the_plan: Plan, items, rows, cache, common, *, resume, force, quiet) -> tuple[dict, dict]:
    """v2.0: each category against its own baseline; a category without baseline answers is skipped
    and said so. Style features: the model's token counts from its own tokenizer, the baseline's from
    its answer file (the official files count with tiktoken's gpt-4o encoding)."""

    judge, name = the_plan.judge, the_plan.target.name
    if the_plan.baseline is None:
        skipped, table = benchmarks.arena_v2_baselines(items, cfg.eval.arena_creative_baseline)
    else:
        _, base_rows = bench_answers.ensure(cfg, "arena-v2", the_plan.baseline, resume=resume, force=force, quiet=quiet)
        by_index = {r["index"]: r for r in base_rows}
        skipped = {}
        table = {q.qid: {"model": the_plan.baseline.name, "content": by_index[q.index]["turns"][0],
                         "token_len": int(by_index[q.index]["new_tokens"][0])} for q in items}
    for category, why in skipped.items():
        STDERR.print(f"arena v2.0: category {category} skipped: {why}", highlight=False)
    kept = [k for k, q in enumerate(items) if q.category not in skipped]
    if not kept:

        raise ConfigError(f"arena v2.0: no category can be scored ({', '.join(skipped)} skipped)",
                          "raise eval.limit past the first category, or give --creative-baseline FILE")
    questions = [items[k] for k in kept]
    outputs = [rows[k]["turns"][0] for k in kept]
    bases = [table[q.qid] for q in questions]
    records = arena_v2_judging.judge(judge, cache, questions, [b["content"] for b in bases], [b["model"] for b in bases],
                                     name, outputs, max_tokens=cfg.eval.judge_max_tokens, quiet=quiet)
    styles = {q.qid: (answer_features(outputs[j], int(rows[kept[j]]["new_tokens"][0])),
                      answer_features(bases[j]["content"], bases[j]["token_len"])) for j, q in enumerate(questions)}
    try:
        board = arena_v2_metrics.report(records, styles, skipped, rounds=cfg.eval.bootstrap_rounds)
    except ValueError as err:

        raise InputError(f"arena v2.0 scores of {name}: {err}", "check the answers: an answer and its baseline are both empty") from None
    lens = [int(rows[k]["new_tokens"][0]) for k in kept]
    metrics = {**common, "baseline": ", ".join(dict.fromkeys(b["model"] for b in bases)), "questions": len(questions),
               "avg_tokens": int(sum(lens) / len(lens)), **board}
    metrics.update(arena_v2_metrics.headline(board))
    if judge.proxy:
        metrics["note"] = PROXY_NOTE
    metrics.update(cache.stats())
    files = {formats.JUDGMENT_FILES["arena-v2"]: lambda p: formats.write_records(p, records, False),
             "judgments.parquet": lambda p: _write_judgments_parquet(p, "arena-v2", records)}
    return files, metrics


def _grade_gsm8k(rows: list[dict], target: Target) -> tuple[dict, dict]:
    by_index = {q.index: q for q in benchmarks.questions("gsm8k")}
    graded = []
    for r in rows:
        q = by_index[r["index"]]
        pred, ref = last_number(r["turns"][0]), reference_answer(q.meta["solution"])
        graded.append({"question": q.turns[0], "answer": q.meta["solution"], "output": r["turns"][0],
                       "generator": target.name, "prediction": pred, "reference": ref, "correct": pred == ref})
    correct = sum(g["correct"] for g in graded)
    files = {"graded.jsonl": lambda p: formats.write_records(p, graded, False)}
    return files, {"accuracy": correct / len(graded), "correct": correct, "questions": len(graded)}


def _write_judgments_parquet(path, bench: str, records: list[dict]) -> None:
    """The judgments as a flat table (one row per annotation / game / rated turn)."""
    if bench == "alpaca":
        cols = {k: [r[k] for r in records] for k in ("instruction", "generator_1", "generator_2", "output_1", "output_2")}
        cols["preference"] = pa.array([r["preference"] for r in records], pa.float64())
    elif bench == "arena":
        flat = [(r["question_id"], g + 1, game["score"], game["judgment"]) for r in records for g, game in enumerate(r["games"])]
        cols = dict(zip(("question_id", "game", "verdict", "judgment"), map(list, zip(*flat))))
    elif bench == "arena-v2":
        flat = [(r["uid"], r["category"], g + 1, game["score"], game["judgment"]["answer"])
                for r in records for g, game in enumerate(r["games"])]
        cols = dict(zip(("uid", "category", "game", "verdict", "judgment"), map(list, zip(*flat))))
    else:
        cols = {"question_id": [int(r["question_id"]) for r in records], "turn": [r["turn"] for r in records],
                "prompt": [r["judge"][1] for r in records], "score": pa.array([float(r["score"]) for r in records]),
                "judgment": [r["judgment"] for r in records]}
    with atomic_path(path) as tmp:
        pq.write_table(pa.table(cols), tmp)


def _write_text(path, text: str) -> None:
    atomic_write_text(path, text)


def _report(cfg: Config, metrics: dict) -> str:
    return markdown_report(metrics["benchmark"], [metrics])


# -- the proxy evaluation at the end of `segtool run` --------------------------------------------
PROXY_STAGE = "eval-proxy"


def proxy_config(cfg: Config) -> Config:
    """AlpacaEval prompts (eval.proxy_prompts of them) judged by the run directory's reward model."""
    return dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, judge="proxy", limit=cfg.eval.proxy_prompts))


def plan_proxy(cfg: Config) -> Plan:
    proxy_cfg = proxy_config(cfg)
    return plan(proxy_cfg, "alpaca", bench_answers.policy_target(proxy_cfg), stage=PROXY_STAGE)


def _proxy_stage_plan(proxy_cfg: Config) -> protocol.Plan:
    evaluation = plan_proxy(proxy_cfg)  # proxy_config of a proxy config is itself
    return protocol.Plan.of(PROXY_STAGE, evaluation.identity, evaluation.parents, SCHEMA_VERSION,
                            resolved={"evaluation": evaluation})


def _compute_proxy(ctx: protocol.Context) -> protocol.Outcome:
    evaluation = ctx.plan.resolved["evaluation"]
    answers_record, rows, files, metrics = _evaluate(ctx.cfg, evaluation, resume=ctx.resume, force=ctx.force,
                                                     quiet=ctx.quiet)
    record = ctx.begin({"model": evaluation.target.what, "answers": answers_record["id"]})
    _write_files(ctx.rundir, record, files)
    return protocol.Outcome({"questions": len(rows)}, metrics)


PROXY = protocol.Stage(PROXY_STAGE, _proxy_stage_plan, _compute_proxy, resumable=False, side_artifact=True)


def run_proxy(cfg: Config, *, resume: bool, force: bool, quiet: bool) -> StageResult:
    """A small AlpacaEval-style evaluation of the run directory's ppo policy against
    ``eval.baseline`` (the SFT model's answers in the tiny preset) with the reward model as an
    offline proxy judge. Recorded as stage ``eval-proxy``; the metrics say "proxy"."""
    return run_stage(PROXY, proxy_config(cfg), resume=resume, force=force, quiet=quiet)
