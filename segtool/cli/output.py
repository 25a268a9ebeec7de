"""A stage's result for the user: a summary table on stdout, or JSON only (--json)."""

from __future__ import annotations

from rich.table import Table

from segtool.console import STDOUT, emit_json


def summary_table(title: str, rows: dict) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key, value in rows.items():
        table.add_row(key.replace("_", " "), f"{value:,}" if isinstance(value, int) else str(value))
    return table


def report_stage(result, json_out: bool) -> None:
    from segtool.distributed import is_main

    if not is_main():  # under a launcher only rank 0 reports
        return
    if json_out:
        emit_json(result.to_json())
        return
    words = {"computed": "done", "resumed": "resumed and done", "up-to-date": "already complete, nothing to do"}
    STDOUT.print(f"[bold]{result.stage}[/]: {words[result.outcome]} (artifact {result.artifact_id[:12]} in {result.workdir})")
    STDOUT.print(summary_table(f"{result.stage} summary", result.record["metrics"]))
