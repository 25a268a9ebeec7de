"""The `segtool` command line. Commands stay thin: options -> config -> pipeline -> report.

Heavy libraries (torch, transformers) are imported inside commands so `--help` is instant.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from segtool import __version__
from segtool.cli import credit_commands, eval_commands, stage_commands
from segtool.cli.options import StageOptions, stage_command
from segtool.cli.output import report_stage
from segtool.config.stages import OTHER_POLICY_STAGES, STAGE_ORDER
from segtool.console import STDOUT, emit_json
from segtool.errors import SegtoolError

app = typer.Typer(
    name="segtool",
    help="Segment-level reward RLHF for language models. Every stage reads and writes versioned artifacts in a run directory.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
eval_app = typer.Typer(help="Evaluate: benchmarks (AlpacaEval 2.0, Arena-Hard, MT-Bench, GSM8K), reward-model pairwise accuracy and credit assignment.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
show_app = typer.Typer(help="Look at artifacts: segments in colour or HTML, segment-length tables.", no_args_is_help=True)
app.add_typer(show_app, name="show")
credit_app = typer.Typer(help="The credit-assignment benchmark: preference pairs with one injected defect at a "
                         "known place.", no_args_is_help=True)
app.add_typer(credit_app, name="credit")


def _version(value: bool):
    if value:
        print(f"segtool {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")] = False,
):
    """segtool: every stage reads and writes versioned artifacts in a run directory (--workdir)."""


stage_commands.register(app, STAGE_ORDER)


@app.command()
@stage_command
def run(opts: StageOptions):
    """Run every stage in order in one run directory (segment, train-rm, fit-normalizer, ppo, or the
    preset's run.stages). Re-running continues where it stopped. Ends with PPO's held-out reward and
    length before and after training."""
    from segtool.pipeline.registry import run_pipeline

    cfg = opts.load()
    results = run_pipeline(cfg, force=opts.force, quiet=opts.json_,
                           on_done=None if opts.json_ else lambda result: report_stage(result, False))
    if opts.json_:
        emit_json({"workdir": cfg.run.workdir, "stages": [r.to_json() for r in results]})
        return
    for r in results:
        if r.stage == "ppo" and "reward_before" in r.record["metrics"]:
            m = r.record["metrics"]
            STDOUT.print(f"[bold]PPO on {m['eval_prompts']} held-out prompts[/]: reward {m['reward_before']:+.4f} -> "
                         f"{m['reward_after']:+.4f} (normalised {m['norm_reward_before']:+.3f} -> {m['norm_reward_after']:+.3f}), "
                         f"length {m['length_before']:.1f} -> {m['length_after']:.1f} tokens, KL to pi_SFT {m['kl_after']:.3f}",
                         highlight=False)
            if "gold_before" in m:
                STDOUT.print(f"[bold]gold reward[/] (programmatic defect count, negated): {m['gold_before']:+.4f} -> "
                             f"{m['gold_after']:+.4f}", highlight=False)


@app.command()
@stage_command
def status(opts: StageOptions):
    """List the artifacts of a run directory: status, head, staleness against the config, and whether
    every recorded file is there with its recorded size (exit 1 when one is not).

    The config compared against is the one given (--preset/--config/--set), else the one the run
    directory last ran with.
    """
    from rich import box
    from rich.table import Table

    from segtool.artifacts.manifest import RunDir
    from segtool.errors import ArtifactError
    from segtool.pipeline.status import damage_error, status_rows

    if opts.workdir is None and opts.preset is None and opts.config is None:
        raise SegtoolError("no run directory given", "pass --workdir DIR (or --preset NAME for runs/NAME)")
    rundir = RunDir(opts.workdir) if opts.workdir else RunDir(opts.load().run.workdir)
    if not rundir.manifest_path.exists():
        raise ArtifactError(f"{rundir.root} has no manifest.json", "run a stage with --workdir pointing there first")
    # Compare against: the given preset/config, else the run directory's last config; --set applies on top.
    cfg = opts.load(base=rundir.read().get("config"))
    rows = status_rows(rundir, cfg)
    damaged = damage_error(rundir, rows)
    if opts.json_:
        emit_json({"workdir": str(rundir.root), "artifacts": rows})
        if damaged:
            raise damaged
        return
    table = Table(title=f"artifacts in {rundir.root}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("stage", "id", "status", "head", "stale", "pairs", "files", "created"):
        table.add_column(col, no_wrap=True)
    notes = []
    for r in rows:
        colour = "green" if r["status"] == "complete" else "yellow"
        stale = {"no": "[green]no[/]", "yes": "[red]yes[/]"}.get(r["stale"], "?")
        if stale == "?":
            notes.append(f"{r['stage']} {r['id'][:12]}: staleness unknown ({r['stale']})")
        check = r["file_check"]
        files = f"{check['recorded']} ok"
        if not check["ok"]:
            bad = [f"{len(check[k])} {k.replace('_', ' ')}" for k in ("missing", "wrong_size") if check[k]]
            files = f"[red]{', '.join(bad)}[/]"
            sizes = [f"{w['file']} ({w['size']} bytes, recorded {w['recorded_size']})" for w in check["wrong_size"]]
            for what, names in (("missing", check["missing"]), ("wrong size", sizes)):
                if names:
                    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
                    notes.append(f"{r['stage']} {r['id'][:12]} ({r['dir']}) {what}: {', '.join(names[:5])}{more}")
        count = (r["rows"] or {}).get("pairs", "")
        table.add_row(r["stage"], r["id"][:10], f"[{colour}]{r['status']}[/]", "*" if r["head"] else "", stale,
                      str(count), files, r["created_at"][5:16].replace("T", " "))
    STDOUT.print(table)
    for note in notes:
        STDOUT.print(note, highlight=False)
    if damaged:
        raise damaged


@eval_app.command("rm")
@stage_command
def eval_rm(
    opts: StageOptions,
    rm: Annotated[str | None, typer.Option("--rm", help="Reward model folder (default: the run directory's train-rm model).")] = None,
    format_: Annotated[str, typer.Option("--format", help="pairs (preference rows), rewardbench2 (allenai/reward-bench-2 rows) or rmbench (THU-KEG/RM-Bench rows).")] = "pairs",
):
    """Pairwise accuracy and mean margin of a reward model on a preference file (--data), per `subset`
    field and overall; or, with --format rewardbench2|rmbench, that benchmark's official scores.
    Every response is segmented exactly as the RM was trained."""
    from segtool.pipeline import eval_rm as stage

    cfg = opts.load()
    result = stage.run(cfg, rm, fmt=format_, force=opts.force, quiet=opts.json_)
    if opts.json_:
        emit_json(result.to_json())
        return
    m = result.record["metrics"]
    title = f"reward model {m['rm']} on {cfg.data.path}"
    show = {"rewardbench2": _rewardbench2_table, "rmbench": _rmbench_table}.get(format_, _pairs_table)
    STDOUT.print(show(m, title))


def _pairs_table(m: dict, title: str):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in ("subset", "pairs", "accuracy", "mean margin"):
        table.add_column(col, justify="right" if col != "subset" else "left")
    for name, sub in m["subsets"].items():
        table.add_row(name, str(sub["pairs"]), f"{sub['accuracy']:.4f}", f"{sub['mean_margin']:.4f}")
    if len(m["subsets"]) > 1:
        table.add_row("[bold]overall[/]", str(m["pairs"]), f"{m['accuracy']:.4f}", f"{m['mean_margin']:.4f}")
    return table


def _rewardbench2_table(m: dict, title: str):
    from rich.table import Table

    table = Table(title=f"RewardBench 2: {title}", title_justify="left")
    for col in ("subset", "rows", "score"):
        table.add_column(col, justify="right" if col != "subset" else "left")
    for name, sub in m["subsets"].items():
        table.add_row(name, str(sub["rows"]), f"{sub['score']:.4f}")
    table.add_row("[bold]overall[/] (mean of subsets)", str(m["rows"]), f"{m['score']:.4f}")
    return table


def _rmbench_table(m: dict, title: str):
    from rich.table import Table

    table = Table(title=f"RM-Bench: {title}", title_justify="left")
    for col in ("domain", "rows", "hard", "normal", "easy", "score"):
        table.add_column(col, justify="right" if col != "domain" else "left")
    for name, row in [*m["domains"].items(), ("[bold]overall[/] (mean of domains)", m)]:
        table.add_row(name, str(row["rows"]), *(f"{row[k]:.4f}" for k in ("hard", "normal", "easy", "score")))
    return table


@show_app.command("segments")
@stage_command
def show_segments(
    opts: StageOptions,
    row: Annotated[int, typer.Option("--row", help="row_id of the pair to show.")] = 0,
    side: Annotated[str, typer.Option("--side", help="chosen, rejected or both.")] = "both",
    html: Annotated[Path | None, typer.Option("--html", help="Also write a self-contained HTML page here.")] = None,
    cutoffs: Annotated[str | None, typer.Option("--cutoffs", help="Comma-separated c_ent values: print the segment-length table instead (no recomputation of entropies).")] = None,
):
    """Show a row's segments in alternating colours, or the segment-length table for several c_ent."""
    from segtool.viz import segments as viz

    cfg = opts.load()
    if cutoffs is not None:
        try:
            values = [float(v) for v in cutoffs.split(",") if v.strip()]
        except ValueError:
            raise typer.BadParameter(f"{cutoffs!r} is not a comma-separated list of numbers", param_hint="--cutoffs") from None
        viz.cutoff_report(cfg, values, opts.json_)
        return
    if side not in ("chosen", "rejected", "both"):
        raise typer.BadParameter("use chosen, rejected or both", param_hint="--side")
    viz.segments_report(cfg, row, side, html, opts.json_)


@show_app.command("rewards")
@stage_command
def show_rewards(
    opts: StageOptions,
    row: Annotated[int, typer.Option("--row", help="row_id of the pair in --data / data.path.")] = 0,
    side: Annotated[str, typer.Option("--side", help="chosen or rejected.")] = "chosen",
    rm: Annotated[str | None, typer.Option("--rm", help="Reward model folder (default: the run directory's train-rm model).")] = None,
    compare: Annotated[str | None, typer.Option("--compare", help="A second reward model folder, shown side by side.")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Also write a self-contained HTML page here.")] = None,
):
    """Colour a response by segment reward (the paper's Fig. 2); --compare shows a second RM beside it."""
    from segtool.viz import rewards as viz

    if side not in ("chosen", "rejected"):
        raise typer.BadParameter("use chosen or rejected", param_hint="--side")
    viz.rewards_report(opts.load(), row, side, [rm] + ([compare] if compare else []), html, opts.json_)


# Registered last so `segtool --help` lists the pipeline stages first and DPO / RS after them.
eval_commands.register(eval_app)
stage_commands.register(app, OTHER_POLICY_STAGES)
credit_commands.register(credit_app)


def main() -> None:
    """Entry point: known errors -> one line + hint, exit 1; usage errors exit 2 (click)."""
    from segtool.runtime import tune_allocator

    debug = os.environ.get("SEGTOOL_DEBUG") == "1"
    tune_allocator()
    try:
        try:
            app()
        finally:
            if "torch" in sys.modules:  # under torchrun/deepspeed: leave the process group cleanly
                from segtool.distributed import shutdown

                shutdown()
    except SegtoolError as err:
        if debug:
            raise
        print(f"error: {err.message}", file=sys.stderr)
        if err.hint:
            print(f"hint: {err.hint}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: partial artifacts can be continued with --resume", file=sys.stderr)
        sys.exit(130)
    except Exception as err:  # a bug: say so plainly, keep the traceback for SEGTOOL_DEBUG=1
        if debug:
            raise
        print(f"error: internal error: {type(err).__name__}: {err}", file=sys.stderr)
        print("hint: re-run with SEGTOOL_DEBUG=1 for the traceback, and please report it", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
