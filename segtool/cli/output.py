"""Human tables on stdout, or JSON only (--json); logs and progress always on stderr."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager

from rich.console import Console
from rich.table import Table

_OWN: list = []  # the real stdout while a command runs (see own_stdout)


def real_stdout():
    return _OWN[-1] if _OWN else sys.stdout


class _RealStdout:
    """File-like forwarding to the real stdout, so STDOUT can be created at import time."""

    def write(self, text: str) -> int:
        return real_stdout().write(text)

    def flush(self) -> None:
        real_stdout().flush()

    def isatty(self) -> bool:
        return real_stdout().isatty()

    def fileno(self) -> int:
        return real_stdout().fileno()


STDOUT = Console(file=_RealStdout())


@contextmanager
def own_stdout():
    """While a command runs, file descriptor 1 points at stderr: whatever libraries print
    (DeepSpeed's logger, compiled extensions) lands on stderr, and stdout carries only segtool's
    own tables or JSON, written through real_stdout()."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    _OWN.append(os.fdopen(os.dup(saved), "w"))
    try:
        yield
    finally:
        _OWN.pop().close()
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def emit_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str), file=real_stdout())


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
