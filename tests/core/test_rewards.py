"""Golden tests for read-outs, aggregations and the Bradley-Terry loss (METHOD §3)."""

import math

import pytest
import torch

from segtool.core.rewards import aggregate, bradley_terry, previous_positions, segment_rewards

# Two rows, T = 6. Row 0: prompt positions 0-1, segments end at 3 and 5. Row 1: prompt 0-2, ends 4, 5.
V = torch.tensor([[0.0, 1.0, 2.0, 4.0, 5.0, 7.0], [1.0, 1.0, 3.0, 3.0, 6.0, 2.0]])
ENDS = torch.tensor([3, 5, 4, 5])
ROWS = torch.tensor([0, 0, 1, 1])
PROMPT_LAST = torch.tensor([1, 2])


def test_end_readout():
    assert segment_rewards(V, ENDS, ROWS, "end").tolist() == [4.0, 7.0, 6.0, 2.0]


def test_differential_readout():
    # Row 0: 4 - v[1] = 3, 7 - v[3] = 3. Row 1: 6 - v[2] = 3, 2 - v[4] = -4.
    assert previous_positions(ENDS, ROWS, PROMPT_LAST).tolist() == [1, 3, 2, 4]
    assert segment_rewards(V, ENDS, ROWS, "differential", PROMPT_LAST).tolist() == [3.0, 3.0, 3.0, -4.0]


def test_differential_sums_to_value_change_over_the_response():
    # Telescoping: sum_t r_t = v[last end] - v[last prompt token].
    r = segment_rewards(V, ENDS, ROWS, "differential", PROMPT_LAST)
    assert aggregate(r, ROWS, 2, "sum").tolist() == [7.0 - 1.0, 2.0 - 3.0]


def test_aggregations():
    r = torch.tensor([4.0, 7.0, 6.0, 2.0])
    assert aggregate(r, ROWS, 2, "avg").tolist() == [5.5, 4.0]
    assert aggregate(r, ROWS, 2, "sum").tolist() == [11.0, 8.0]
    assert aggregate(r, ROWS, 2, "min").tolist() == [4.0, 2.0]
    assert aggregate(r, ROWS, 2, "last", last_values=torch.tensor([9.0, -1.0])).tolist() == [9.0, -1.0]


def test_attention_weights_are_a_softmax_within_each_row():
    r = torch.tensor([4.0, 7.0, 6.0, 2.0])
    # Row 0 scores (0, ln 3): alpha = (1/4, 3/4) -> 1 + 5.25 = 6.25. Row 1 equal scores -> mean 4.
    scores = torch.tensor([0.0, math.log(3.0), 5.0, 5.0])
    assert torch.allclose(aggregate(r, ROWS, 2, "attention", scores=scores), torch.tensor([6.25, 4.0]))
    # Huge scores do not overflow (each row is stabilised by its own max).
    big = aggregate(r, ROWS, 2, "attention", scores=torch.tensor([1000.0, 1000.0, -1000.0, -1000.0]))
    assert torch.allclose(big, torch.tensor([5.5, 4.0]))


def test_gradients_flow_to_values_and_scores():
    v = V.clone().requires_grad_(True)
    s = torch.zeros(4, requires_grad=True)
    e = aggregate(segment_rewards(v, ENDS, ROWS, "end"), ROWS, 2, "attention", scores=s)
    e.sum().backward()
    # Equal scores: alpha = 1/2 per segment, so d e / d v[end] = 1/2.
    assert v.grad[0, 3].item() == 0.5 and v.grad[1, 5].item() == 0.5 and v.grad[0, 0].item() == 0.0
    assert s.grad.abs().sum().item() > 0


def test_bradley_terry_golden():
    # diff = (1, -1): loss = (log(1 + e^-1) + log(1 + e^1)) / 2 = (0.3132617 + 1.3132617) / 2 = 0.8132617
    loss, acc, margin = bradley_terry(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0]))
    assert abs(loss.item() - 0.8132617) < 1e-6 and acc.item() == 0.5 and margin.item() == 0.0
    # With margin 1: diffs - 1 = (0, -2): (log 2 + log(1 + e^2)) / 2 = (0.6931472 + 2.1269280) / 2
    loss_m, _, _ = bradley_terry(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0]), margin=1.0)
    assert abs(loss_m.item() - 1.4100376) < 1e-6


def test_bradley_terry_is_float32_for_bf16_inputs():
    loss, _, _ = bradley_terry(torch.tensor([2.0], dtype=torch.bfloat16), torch.tensor([1.0], dtype=torch.bfloat16))
    assert loss.dtype == torch.float32


def test_unknown_modes():
    with pytest.raises(ValueError, match="unknown read-out"):
        segment_rewards(V, ENDS, ROWS, "start")
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(torch.ones(4), ROWS, 2, "median")
