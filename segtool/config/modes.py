"""Every closed set of names a config knob takes, in one torch-free module.

The method's variants are core's (``segtool.core.modes``, re-exported here): core dispatches on
them and sits below config, so it owns them. The rest are settings only config and the stages read.
"""

from __future__ import annotations

from segtool.core.modes import (  # noqa: F401 (re-exported: code above core reads every name from here)
    AGGREGATIONS,
    BASELINES,
    INTERPOLATIONS,
    NORMALISER_KINDS,
    READOUTS,
    REWARD_MODES,
    STRATEGIES,
    TEXT_STRATEGIES,
    RewardMode,
    sequence_reward_mode,
)

DTYPES = ("float32", "bfloat16", "float16")
DATA_FORMATS = ("auto", "pairs", "hh")
TEMPLATES = ("auto", "plain")
ADAPTIVE_SOURCES = ("rm", "dpo")
REWARD_SOURCES = ("rm", "dpo")  # PPO's token rewards: the reward model, or a DPO policy's implicit reward (RTO)
NORMALISER_METHODS = ("huber", "ols", "raw")
CALIBRATION_ROWS = ("heldout", "all")
MASKS = ("none", "adaptive")  # policy-loss masks: plain, or adaptive segments (METHOD §7)
BF16 = ("auto", "true", "false")
CRITIC_INITS = ("sft", "rm")
GOLD_SCORERS = ("none", "defects")
METRIC_LOGGERS = ("none", "tensorboard", "wandb")
PACKING = ("auto", "on", "off")
COMPILE = ("auto", "on", "off")
FIRST_FORWARD = ("auto", "on", "off")
GENERATORS = ("hf", "vllm")  # transformers generate, or a colocated vLLM engine (models.generators)
JUDGES = ("http", "hf", "proxy")
