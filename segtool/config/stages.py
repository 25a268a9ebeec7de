"""The stage names a preset may list in run.stages, in pipeline order (data only: the stage modules
live in segtool.pipeline, which config must not import)."""

from __future__ import annotations

STAGE_ORDER = ("segment", "train-rm", "fit-normalizer", "ppo")  # what `segtool run` runs by default
OTHER_POLICY_STAGES = ("dpo", "rs")  # policy training without PPO
KNOWN_STAGES = (*STAGE_ORDER, *OTHER_POLICY_STAGES, "eval")  # a preset may list any of these in run.stages
