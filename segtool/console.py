"""The terminal: logs and progress on stderr (STDERR, ``progress``); segtool's own tables and JSON on
the real stdout (STDOUT, ``emit_json``), which ``own_stdout`` keeps free of what libraries print."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

STDERR = Console(stderr=True)

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


class progress:
    """A rich progress bar on stderr (nothing when quiet); ``done`` units already finished."""

    def __init__(self, quiet: bool, total: int, label: str, unit: str = "responses", done: int = 0):
        self.quiet, self.total, self.label, self.unit, self.done = quiet, total, label, unit, done

    def __enter__(self):
        if self.quiet:
            self._bar = None
            return lambda n: None
        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn(self.unit), TimeRemainingColumn(), console=STDERR, transient=False)
        self._bar.__enter__()
        task = self._bar.add_task(self.label, total=self.total, completed=self.done)
        return lambda n: self._bar.advance(task, n)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
        return False
