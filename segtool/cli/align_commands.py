"""`segtool dpo` and `segtool rs` (issue 7): registered on the root app by app.py."""

from __future__ import annotations


def register(app) -> None:
    """Add the DPO and rejection-sampling stage commands to ``app`` (none yet)."""
