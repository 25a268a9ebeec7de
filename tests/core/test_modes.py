"""core.modes: the reward-mode registry PPO, held-out evaluation and the schema read."""

from segtool.core.modes import REWARD_MODES, STRATEGIES, sequence_reward_mode


def test_every_reward_model_is_read_by_a_dense_and_a_sequence_mode():
    for strategy in STRATEGIES:
        readers = [m for m in REWARD_MODES.values() if strategy in m.rm_strategies]
        assert any(m.dense for m in readers) and any(not m.dense for m in readers), strategy


def test_the_paper_value_clip_follows_density():
    assert {name: (m.dense, m.value_clip) for name, m in REWARD_MODES.items()} == {
        "segment": (True, 0.25), "token": (True, 0.25), "bandit": (False, 0.2),
        "bandit-as-segment": (True, 0.25), "segment-as-bandit": (False, 0.2)}


def test_which_reward_models_each_mode_reads():
    assert REWARD_MODES["segment"].rm_strategies == ("entropy", "ngram", "punct", "sat", "adaptive")
    assert REWARD_MODES["token"].rm_strategies == ("token",)
    assert REWARD_MODES["bandit"].rm_strategies == REWARD_MODES["bandit-as-segment"].rm_strategies == ("bandit",)
    assert "bandit" not in REWARD_MODES["segment-as-bandit"].rm_strategies
    assert [m.name for m in REWARD_MODES.values() if m.placement == "entropy-segments"] == ["bandit-as-segment"]


def test_sequence_reward_mode():
    assert sequence_reward_mode("bandit") == "bandit"
    assert {sequence_reward_mode(s) for s in STRATEGIES if s != "bandit"} == {"segment-as-bandit"}
