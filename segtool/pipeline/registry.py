"""The stages that exist, in pipeline order (imported lazily so the CLI starts fast)."""

from __future__ import annotations

import importlib

STAGE_ORDER = ("segment", "train-rm", "fit-normalizer")


def stage_module(name: str):
    return importlib.import_module(f"segtool.pipeline.{name.replace('-', '_')}")
