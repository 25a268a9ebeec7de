"""`segtool credit make`: registered on the `credit` sub-app by app.py.

No ``from __future__ import annotations`` here: typer reads the options' Annotated types at runtime.
"""

from pathlib import Path
from typing import Annotated

import typer

from segtool.cli.options import StageOptions, stage_command


def _comma_list(value: str | None, flag: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in (value or "").split(",") if v.strip())
    if value is not None and not items:
        raise typer.BadParameter("give a comma-separated list", param_hint=flag)
    return items


SOURCE = Annotated[str, typer.Option("--source", help="Clean responses: hh, alpaca, gsm8k, sft (samples of the run's "
                                     "model) or a preference / prompt-response file.")]
FAMILIES = Annotated[str | None, typer.Option("--families", show_default=False, help="Comma list of defect families "
                                              "(default: every family the source admits).")]
POSITIONS = Annotated[str, typer.Option("--positions", help="Comma list of positions, dealt round-robin.")]
PAIRS = Annotated[int, typer.Option("--pairs", help="Number of pairs, shared evenly over families and positions.")]
SEED = Annotated[int, typer.Option("--seed", help="Seed of the row order, the defects and the sft samples.")]
OUT = Annotated[Path | None, typer.Option("--out", show_default=False, help="Write this preference file (.jsonl, "
                                          ".jsonl.gz, .parquet) instead of a run-directory artifact.")]
PROMPTS = Annotated[str | None, typer.Option("--prompts", show_default=False, help="sft: prompts (.txt, one per line, "
                                             "or a prompt file) (default: data/credit/story_prompts.txt).")]
SAMPLES = Annotated[int, typer.Option("--samples", help="sft: samples to draw (0 = as many as --pairs).")]
MAX_NEW_TOKENS = Annotated[int, typer.Option("--max-new-tokens", help="sft: sample length limit in tokens.")]


def register(credit_app) -> None:
    """Add the credit-assignment benchmark commands to ``credit_app``."""

    @credit_app.command("make")
    @stage_command
    def make(opts: StageOptions, source: SOURCE = "hh", families: FAMILIES = None,
             positions: POSITIONS = "beginning,middle,end", pairs: PAIRS = 300, seed: SEED = 0, out: OUT = None,
             prompts: PROMPTS = None, samples: SAMPLES = 0, max_new_tokens: MAX_NEW_TOKENS = 256):
        """Make preference pairs with one injected defect at a known place.

        Chosen = a clean response, rejected = the same with one defect (arithmetic, swap, duplicate,
        offtopic, toxic, negation, truncation) at the beginning, middle or end; the defect's character
        span and the response tokens it covers are recorded.
        """
        from segtool.console import STDOUT, emit_json
        from segtool.pipeline import credit_make as stage

        if opts.data is not None:
            raise typer.BadParameter("credit make reads --source, not --data", param_hint="--data")
        if opts.resume:
            raise typer.BadParameter("credit make writes its file in one step: there is nothing to resume",
                                     param_hint="--resume")
        make_opts = stage.MakeOptions(source=source, families=_comma_list(families, "--families"),
                                      positions=_comma_list(positions, "--positions"), pairs=pairs, seed=seed, out=out,
                                      prompts=prompts or "", samples=samples, max_new_tokens=max_new_tokens)
        result = stage.run(opts.load(), make_opts, force=opts.force, quiet=opts.json_)
        if opts.json_:
            emit_json(result.to_json())
            return
        _print_summary(STDOUT, result)


def _print_summary(console, result) -> None:
    from rich.table import Table

    s = result.summary
    table = Table(title=f"defect pairs from {s['source']} ({s['source_rows']} responses)", title_justify="left")
    table.add_column("family")
    for col in (*s["positions"], "total", "rows skipped", "unseen"):
        table.add_column(col, justify="right")
    for family, cells in s["table"].items():
        table.add_row(family, *(str(cells[p]) for p in s["positions"]), str(sum(cells.values())),
                      str(s["not_admitted"][family]), str(s["unseen"][family]))
    console.print(table)
    if "sft" in s:
        sft = s["sft"]
        console.print(f"pi_SFT samples: {sft['samples']} drawn, {sft['kept']} kept ({sft['no_eos']} without EOS, "
                      f"{sft['gold_defective']} with a repeated sentence or an unfinished ending)", highlight=False)
    for cell, missing in s["short"].items():
        console.print(f"[yellow]note[/]: {cell}: {missing} pair(s) short; the source has no more responses that "
                      "admit it", highlight=False)
    state = "already complete, nothing to do: " if result.outcome == "up-to-date" else ""
    console.print(f"{state}{s['pairs']} pairs in {result.output}", highlight=False)
