"""The names of the method's variants that core implements, and how PPO reads each reward mode.

Plain data, no torch: config validates against these names without loading torch, and core's
functions dispatch on them.
"""

from __future__ import annotations

from dataclasses import dataclass

STRATEGIES = ("entropy", "token", "bandit", "ngram", "punct", "sat", "adaptive")  # segment boundaries (METHOD §2, §7)
# strategies whose boundaries come from the response text, not its tokens: sampled responses are never segmented with them
TEXT_STRATEGIES = ("sat",)
READOUTS = ("end", "differential")  # segment reward from values (METHOD §3)
AGGREGATIONS = ("avg", "sum", "min", "last", "attention")  # e(x, y) from segment rewards (METHOD §3)
NORMALISER_KINDS = ("location", "global", "last", "none")  # METHOD §4
INTERPOLATIONS = ("even", "repeat", "end")  # segment reward -> tokens (METHOD §5)
BASELINES = ("sequence", "running", "td")  # adaptive segments' baseline (METHOD §7)


@dataclass(frozen=True)
class RewardMode:
    """How PPO reads a reward model (METHOD §5)."""

    name: str
    rm_strategies: tuple[str, ...]  # the segment strategies of the reward models it can read
    needs: str  # those reward models, in words
    placement: str  # where rewards land: "rm-segments" (the RM's own segment ends, normalised, interpolated),
    # "entropy-segments" (ends of a PPO-time entropy segmentation at ppo.c_ent), or "eos" (e(x, y) on the EOS)
    value_clip: float  # the paper's value clip: 0.25 with dense rewards, 0.2 with one reward per sequence

    @property
    def dense(self) -> bool:
        return self.placement != "eos"


_SEGMENTED = tuple(s for s in STRATEGIES if s not in ("bandit", "token"))
_NOT_BANDIT = tuple(s for s in STRATEGIES if s != "bandit")

REWARD_MODES = {mode.name: mode for mode in (
    RewardMode("segment", _SEGMENTED, "a segment-level RM (entropy, ngram or punct)", "rm-segments", 0.25),
    RewardMode("token", ("token",), "a token-level RM (segment.strategy=token)", "rm-segments", 0.25),
    RewardMode("bandit", ("bandit",), "a bandit RM (segment.strategy=bandit)", "eos", 0.2),
    RewardMode("bandit-as-segment", ("bandit",), "a bandit RM (segment.strategy=bandit)", "entropy-segments", 0.25),
    RewardMode("segment-as-bandit", _NOT_BANDIT, "a segment- or token-level RM", "eos", 0.2),
)}


def sequence_reward_mode(rm_strategy: str) -> str:
    """The mode that reads only e(x, y) from a reward model trained with ``rm_strategy``."""
    return next(m.name for m in REWARD_MODES.values() if not m.dense and rm_strategy in m.rm_strategies)
