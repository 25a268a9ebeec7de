"""Shared by the adaptive-segment, dpo and rs stage tests: a small run directory with segments and a
reward model on 24 bundled pairs, built once per session and copied into each test."""

from __future__ import annotations

import shutil

from segtool.config.loader import load_config

SMALL = ["data.max_rows=24", "train_rm.global_batch=8", "train_rm.micro_batch=4", "train_rm.max_steps=2",
         "train_rm.eval_fraction=0.25", "train_rm.lr=1e-3"]
_BUILT: dict = {}


def config(preset: str, workdir, *sets):
    return load_config(preset=preset, overrides=[*SMALL, *sets], workdir=str(workdir))[0]


def upstream_copy(tmp_path_factory, target):
    """Copy of a run directory holding the tiny segment and train-rm artifacts for SMALL."""
    from segtool.pipeline import train_rm

    if "tiny" not in _BUILT:
        workdir = tmp_path_factory.mktemp("align-upstream")
        train_rm.run(config("tiny", workdir), quiet=True)
        _BUILT["tiny"] = workdir
    shutil.copytree(_BUILT["tiny"], target)
    return target
