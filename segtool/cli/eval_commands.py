"""`segtool eval alpaca|arena|mtbench|gsm8k` (issue 6): registered on the `eval` sub-app by app.py."""

from __future__ import annotations


def register(eval_app) -> None:
    """Add the benchmark commands to ``eval_app`` (none yet)."""
