"""`segtool eval alpaca|arena|mtbench|gsm8k|credit` (METHOD §8): registered on the `eval` sub-app by app.py.

Each command answers the benchmark with a model (``--model``, or the run directory's ppo policy),
judges the answers (an OpenAI-compatible endpoint, a local model, or the reward model as an offline
proxy) and prints the official metrics; or, with ``--from-annotations`` / ``--from-judgments``,
recomputes the metrics from the official tools' stored judgment files without calling any judge.
`credit` scores reward models on defect pairs instead (``pipeline.eval_credit``).
"""


import json
from pathlib import Path
from typing import Annotated

import typer

from segtool.cli.options import StageOptions, stage_command

MODEL = Annotated[str | None, typer.Option("--model", help="Model to evaluate: a folder or hub id; `sft` = model.path (default: the run directory's ppo policy).", show_default=False)]
NAME = Annotated[str | None, typer.Option("--name", help="Model name written into the output files (default: from the model).", show_default=False)]
JUDGE = Annotated[str | None, typer.Option("--judge", help="http (OpenAI-compatible endpoint), hf (local model) or proxy (the reward model, offline) (default: eval.judge).", show_default=False)]
JUDGE_URL = Annotated[str | None, typer.Option("--judge-url", help="Judge base URL, e.g. http://localhost:8000/v1 (default: eval.base_url, $SEGTOOL_JUDGE_BASE_URL, $OPENAI_BASE_URL, OpenAI).", show_default=False)]
JUDGE_MODEL = Annotated[str | None, typer.Option("--judge-model", help="Judge model: endpoint model name, or a folder / hub id for --judge hf (default: the benchmark's official judge).", show_default=False)]
API_KEY = Annotated[str | None, typer.Option("--api-key", help="Judge API key (default: $SEGTOOL_JUDGE_API_KEY, $OPENAI_API_KEY). Never written anywhere.", show_default=False)]
RM = Annotated[str | None, typer.Option("--rm", help="Reward model folder for --judge proxy (default: the run directory's train-rm model).", show_default=False)]
BASELINE = Annotated[str | None, typer.Option("--baseline", help="official (the benchmark's baseline answers), sft, or a model folder / hub id (default: eval.baseline).", show_default=False)]
LIMIT = Annotated[int | None, typer.Option("--limit", help="Only the first N prompts (0 = all) (default: eval.limit).", show_default=False)]
COMPARE = Annotated[list[Path] | None, typer.Option("--compare", help="Also evaluate this run directory's ppo policy and write a comparison report (repeatable).", show_default=False)]


def register(eval_app) -> None:
    """Add the benchmark commands to ``eval_app``."""

    @eval_app.command("alpaca")
    @stage_command
    def alpaca(opts: StageOptions, model: MODEL = None, name: NAME = None, judge: JUDGE = None, judge_url: JUDGE_URL = None,
               judge_model: JUDGE_MODEL = None, api_key: API_KEY = None, rm: RM = None, baseline: BASELINE = None,
               limit: LIMIT = None, compare: COMPARE = None,
               from_annotations: Annotated[Path | None, typer.Option("--from-annotations", help="Only compute the metrics from an alpaca_eval annotations.json(.gz); no judge is called.", show_default=False)] = None):
        """AlpacaEval 2.0: win rate, standard error, discrete win rate, average length and the
        length-controlled win rate against gpt4_1106_preview, judged as `weighted_alpaca_eval_gpt4_turbo`."""
        if from_annotations is not None:
            from segtool.eval import stored

            _print_stored("alpaca", from_annotations, stored.alpaca_metrics(stored.alpaca_rows(from_annotations)), opts.json_)
            return
        _evaluate("alpaca", opts, locals())

    @eval_app.command("arena")
    @stage_command
    def arena(opts: StageOptions, model: MODEL = None, name: NAME = None, judge: JUDGE = None, judge_url: JUDGE_URL = None,
              judge_model: JUDGE_MODEL = None, api_key: API_KEY = None, rm: RM = None, baseline: BASELINE = None,
              limit: LIMIT = None, compare: COMPARE = None,
              from_judgments: Annotated[Path | None, typer.Option("--from-judgments", help="Only compute the scores from arena-hard-auto judgments: a model_judgment/<judge>/ folder (one jsonl per model) or one jsonl file; no judge is called.", show_default=False)] = None,
              answers: Annotated[Path | None, typer.Option("--answers", help="With --from-judgments: model_answer jsonl file or folder, for the average token counts.", show_default=False)] = None,
              baseline_name: Annotated[str, typer.Option("--baseline-name", help="With --from-judgments: the baseline's name in the battles.")] = "gpt-4-0314",
              version: Annotated[str, typer.Option("--version", help="Arena-Hard version: v0.1 (500 questions, baseline gpt-4-0314) or v2.0 (750 questions, per-category baselines and judge prompts, scores with and without style control).")] = "v0.1",
              creative_baseline: Annotated[str | None, typer.Option("--creative-baseline", help="With --version v2.0: gemini-2.0-flash-001's answers (arena-hard-auto v2.0 model_answer jsonl), the creative_writing baseline, or `hub` for the official archive's copy; without it that category is skipped (default: eval.arena_creative_baseline).", show_default=False)] = None):
        """Arena-Hard. v0.1: score against gpt-4-0314 (Bradley-Terry, two games per question, strong
        verdicts x3) with its 95% bootstrap interval (100 rounds, seed 42) and average answer tokens.
        v2.0 (--version v2.0): per category (hard_prompt vs o3-mini, creative_writing vs gemini-2.0-flash-001)
        Bradley-Terry scores with 90% bootstrap intervals, with and without style control."""
        if version not in ("v0.1", "v2.0"):
            from segtool.errors import ConfigError

            raise ConfigError(f"--version {version!r} is not an Arena-Hard version", "use v0.1 or v2.0")
        if version == "v2.0":
            if from_judgments is not None:
                from segtool.errors import ConfigError

                raise ConfigError("--from-judgments reads Arena-Hard v0.1 judgments only",
                                  "drop --version v2.0, or judge the answers with `segtool eval arena --version v2.0`")
            _evaluate("arena-v2", opts, locals())
            return
        if creative_baseline is not None:
            from segtool.errors import ConfigError

            raise ConfigError("--creative-baseline applies to Arena-Hard v2.0 only", "add --version v2.0")
        if from_judgments is not None:
            from segtool.eval import stored

            lens = stored.arena_token_lengths(answers) if answers else None
            cfg = opts.load() if (opts.preset or opts.config or opts.set_) else None
            rounds = cfg.eval.bootstrap_rounds if cfg else 100
            metrics = stored.arena_metrics(stored.arena_records(from_judgments), baseline_name, rounds=rounds, token_lengths=lens)
            _print_stored("arena", from_judgments, metrics, opts.json_)
            return
        _evaluate("arena", opts, locals())

    @eval_app.command("mtbench")
    @stage_command
    def mtbench(opts: StageOptions, model: MODEL = None, name: NAME = None, judge: JUDGE = None, judge_url: JUDGE_URL = None,
                judge_model: JUDGE_MODEL = None, api_key: API_KEY = None, limit: LIMIT = None, compare: COMPARE = None,
                from_judgments: Annotated[Path | None, typer.Option("--from-judgments", help="Only compute the scores from a FastChat single-judgment jsonl; no judge is called.", show_default=False)] = None):
        """MT-Bench: two-turn answers (FastChat's per-category temperatures) graded 1-10 by the judge
        with FastChat's prompts (reference answers for math, reasoning, coding); turn 1, turn 2, overall."""
        if from_judgments is not None:
            from segtool.eval import stored

            _print_stored("mtbench", from_judgments, stored.mtbench_metrics(stored.mtbench_records(from_judgments)), opts.json_)
            return
        _evaluate("mtbench", opts, locals())

    @eval_app.command("credit")
    @stage_command
    def credit(opts: StageOptions,
               rm: Annotated[list[str] | None, typer.Option("--rm", help="Reward model folder (repeatable) (default: the run directory's train-rm model).", show_default=False)] = None,
               compare: Annotated[list[Path] | None, typer.Option("--compare", help="Also score this run directory's train-rm model on the same pairs; one comparison table (repeatable).", show_default=False)] = None,
               dpo: Annotated[list[str] | None, typer.Option("--dpo", help="Also score a DPO policy's implicit token reward beta log pi/pi_ref: a run directory with a dpo artifact or its policy/ folder; model.path must be its reference (repeatable).", show_default=False)] = None,
               credit_mode: Annotated[str, typer.Option("--credit", help="Per-token credit: auto (values for bandit RMs, else segments), segments (r_t spread over their tokens) or values (v_i - v_(i-1)).")] = "auto",
               interpolation: Annotated[str, typer.Option("--interpolation", help="How a segment's reward spreads over its tokens, as in PPO: even (r_t / |a_t|), repeat or end.")] = "even",
               heatmaps: Annotated[int, typer.Option("--heatmaps", help="Credit heatmaps of this many pairs per defect family.")] = 3):
        """Credit-assignment benchmark on defect pairs (--data): pairwise accuracy per defect family and
        position, token AUROC, pointing game and credit mass on the gold defect span, with 95% bootstrap
        intervals; writes a Parquet of per-pair results, Markdown/HTML reports and credit heatmaps."""
        _credit(opts, rm or [], compare or [], dpo or [], credit_mode, interpolation, heatmaps)

    @eval_app.command("gsm8k")
    @stage_command
    def gsm8k(opts: StageOptions, model: MODEL = None, name: NAME = None, limit: LIMIT = None, compare: COMPARE = None):
        """GSM8K: accuracy of the last number in the answer against the reference after "####"
        (zero-shot, or eval.gsm8k_shots worked examples as earlier chat turns)."""
        _evaluate("gsm8k", opts, locals())


def _overrides(args: dict) -> list[str]:
    """Flags that are shorthands for --set eval.KEY=VALUE (so the manifest records them)."""
    keys = {"judge": "judge", "judge_url": "base_url", "judge_model": "judge_model", "baseline": "baseline", "limit": "limit",
            "creative_baseline": "arena_creative_baseline"}
    return [f"eval.{key}={json.dumps(args[flag])}" for flag, key in keys.items() if args.get(flag) is not None]


def _evaluate(bench: str, opts: StageOptions, args: dict) -> None:
    import dataclasses

    from segtool.console import STDOUT, emit_json
    from segtool.eval import reports
    from segtool.pipeline import bench_eval

    opts = dataclasses.replace(opts, set_=list(opts.set_ or []) + _overrides(args))
    cfg = opts.load()
    bench_eval.check_judge(cfg, bench)
    jobs = _targets(cfg, bench, args)
    judge = None
    if bench != "gsm8k":
        from segtool.eval import judges

        judge = judges.build(cfg, bench, api_key=args.get("api_key"), rm=args.get("rm"))
    results = [bench_eval.run(job_cfg, bench, target, resume=opts.resume, force=opts.force, quiet=opts.json_, judge=judge)
               for job_cfg, target in jobs]
    metrics = [r.record["metrics"] for r in results]
    paths = {}
    if len(results) > 1:
        paths = reports.write_comparison(Path(cfg.run.workdir) / "reports", bench, metrics)
    if opts.json_:
        emit_json({"benchmark": bench, "results": [r.to_json() for r in results], "report": {k: str(v) for k, v in paths.items()}})
        return
    STDOUT.print(reports.terminal_table(bench, metrics))
    for note in reports.notes(metrics):
        STDOUT.print(note, highlight=False)
    for r in results:
        state = "already complete" if r.outcome == "up-to-date" else "done"
        STDOUT.print(f"{r.record['metrics']['model']}: {state}, artifact {r.stage} {r.artifact_id[:12]} in {r.workdir}", highlight=False)
    for kind, path in paths.items():
        STDOUT.print(f"comparison report ({kind}): {path}", highlight=False)


def _targets(cfg, bench: str, args: dict) -> list:
    """(config, Target) for the main model (--model, or the run directory's policy) and every --compare run directory."""
    from segtool.artifacts.manifest import RunDir
    from segtool.pipeline import bench_answers, bench_eval

    compare = [Path(p).expanduser().resolve() for p in (args.get("compare") or [])]
    jobs = []
    main_dir = Path(cfg.run.workdir).resolve()
    if args.get("model") or not compare or (RunDir(main_dir).head("ppo") is not None and main_dir not in compare):
        jobs.append((cfg, bench_eval.resolve_target(cfg, args.get("model"), args.get("name"))))
    for folder in dict.fromkeys(compare):
        other = _run_config(cfg, folder)
        jobs.append((other, bench_answers.policy_target(other)))
    return jobs


def _credit(opts: StageOptions, rms: list[str], compare: list[Path], dpos: list[str], credit_mode: str, interpolation: str,
            heatmaps: int) -> None:
    import dataclasses

    from segtool.artifacts.manifest import RunDir
    from segtool.console import STDOUT, emit_json
    from segtool.pipeline import eval_credit
    from segtool.viz import credit as viz

    cfg = opts.load()
    main_dir = Path(cfg.run.workdir).resolve()
    others = list(dict.fromkeys(Path(p).expanduser().resolve() for p in compare))
    jobs = [(cfg, rm, None) for rm in rms]
    if not rms and not dpos and (not others or (RunDir(main_dir).head("train-rm") is not None and main_dir not in others)):
        jobs.insert(0, (cfg, None, None))
    for folder in others:  # its own model and RM settings; this command's pairs and bootstrap seed
        other = _run_config(cfg, folder, "a train-rm artifact")
        jobs.append((dataclasses.replace(other, data=cfg.data, run=dataclasses.replace(other.run, seed=cfg.run.seed)),
                     None, None))
    rm_jobs = len(jobs)
    jobs += [(cfg, None, dpo) for dpo in dpos]
    # --credit picks the reward models' credit; beside them a DPO policy keeps its own (alone, it must be auto)
    results = [eval_credit.run(job_cfg, rm, dpo=dpo, credit="auto" if dpo and rm_jobs else credit_mode,
                               interpolation=interpolation, heatmaps=heatmaps, force=opts.force, quiet=opts.json_)
               for job_cfg, rm, dpo in jobs]
    summaries = [r.record["metrics"] for r in results]
    paths = viz.write_comparison(main_dir / "reports", summaries) if len(results) > 1 else {}
    if opts.json_:
        emit_json({"results": [r.to_json() for r in results], "report": {k: str(v) for k, v in paths.items()}})
        return
    if len(results) > 1:
        STDOUT.print(viz.comparison_table(summaries))
    else:
        STDOUT.print(viz.terminal_table(summaries[0]))
        for note in viz.notes(summaries[0]):
            STDOUT.print(note, highlight=False)
    for r in results:
        state = "already complete" if r.outcome == "up-to-date" else "done"
        folder = RunDir(r.workdir).path_of(r.record)
        STDOUT.print(f"{r.record['metrics']['name']}: {state}, artifact {r.stage} {r.artifact_id[:12]} ({folder})", highlight=False)
    for kind, path in paths.items():
        STDOUT.print(f"comparison report ({kind}): {path}", highlight=False)


def _run_config(cfg, folder: Path, needs: str = "a ppo artifact"):
    """A compared run directory's own config with this command's [eval] settings and device."""
    import dataclasses

    from segtool.artifacts.manifest import RunDir
    from segtool.config.loader import config_from_dict
    from segtool.errors import ArtifactError

    rundir = RunDir(folder)
    if not rundir.manifest_path.exists():
        raise ArtifactError(f"--compare {folder}: no manifest.json there", f"give a run directory that has {needs}")
    saved = dict(rundir.read().get("config") or {})
    saved.pop("eval", None)
    other = config_from_dict(saved)
    return dataclasses.replace(other, eval=cfg.eval, model=dataclasses.replace(other.model, device=cfg.model.device),
                               run=dataclasses.replace(other.run, workdir=str(folder)))


def _print_stored(bench: str, path: Path, metrics: dict[str, dict], json_out: bool) -> None:
    from segtool.artifacts.files import strict_json
    from segtool.console import STDOUT, emit_json
    from segtool.eval import reports

    metrics = strict_json(metrics)
    results = [{"model": model, **m} for model, m in metrics.items()]
    if json_out:
        emit_json({"benchmark": bench, "file": str(path), "models": metrics})
        return
    STDOUT.print(reports.terminal_table(bench, results, f"{reports.TITLES[bench]} from {path.name}"))
    for note in reports.notes(results):
        STDOUT.print(note, highlight=False)
