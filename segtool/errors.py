"""Errors a user can act on: one line saying what is wrong, one saying how to fix it."""

from __future__ import annotations


class SegtoolError(Exception):
    """A known failure: bad input, bad config, missing or corrupt artifact.

    The CLI prints ``error: <message>`` and ``hint: <hint>`` on stderr and exits 1
    (tracebacks only with SEGTOOL_DEBUG=1).
    """

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(SegtoolError):
    """An invalid preset, config file or --set override."""


class InputError(SegtoolError):
    """A bad input row or file: the message names the file, row and field."""


class ArtifactError(SegtoolError):
    """A missing, partial, stale or corrupt artifact in a run directory."""
