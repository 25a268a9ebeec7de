import math

from segtool.core.schedule import warmup_cosine


def test_warmup_then_cosine_to_floor():
    # total 100, warm-up ceil(3) = 3 steps: 1/3, 2/3, 1; then cosine over steps 3..99 (span 96).
    assert [round(warmup_cosine(s, 100), 6) for s in range(3)] == [round(1 / 3, 6), round(2 / 3, 6), 1.0]
    assert warmup_cosine(3, 100) == 1.0
    assert abs(warmup_cosine(51, 100) - (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))) < 1e-12  # midpoint 0.55
    assert abs(warmup_cosine(99, 100) - 0.1) < 1e-12


def test_tiny_runs_have_at_least_one_warmup_step():
    assert warmup_cosine(0, 1) == 1.0
    assert warmup_cosine(0, 2) == 1.0 and warmup_cosine(1, 2) == 1.0  # one decay step: progress 0
    assert abs(warmup_cosine(2, 3) - 0.1) < 1e-12  # two decay steps: the last is on the floor
