"""Shared stage helpers."""

from types import SimpleNamespace

import pytest

from segtool.errors import ConfigError
from segtool.pipeline.common import total_iterations


def settings(rollout_batch=4, episodes=2, iterations=0):
    return SimpleNamespace(rollout_batch=rollout_batch, episodes=episodes, iterations=iterations)


def test_iterations_are_whole_rollout_batches_per_episode_capped_by_iterations():
    assert total_iterations(settings(), "ppo", 10) == 4  # 2 full batches of 4 per episode, 2 episodes
    assert total_iterations(settings(iterations=3), "ppo", 10) == 3
    assert total_iterations(settings(iterations=9), "ppo", 10) == 4


def test_too_few_prompts_names_the_stage_knob():
    with pytest.raises(ConfigError) as err:
        total_iterations(settings(rollout_batch=16), "rs", 10)
    assert "one rollout batch of 16" in err.value.message and "rs.rollout_batch" in err.value.hint
