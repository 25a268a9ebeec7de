"""Fixtures for the model tests.

* ``assert_same_up_to_rounding(got, other, exact, what)``: two float32 computations of the same values
  (``got``, and ``other``, the one it replaces; tensors, or dicts of them) compared through a float64
  run of the same math (``exact``): ``got`` may be no further from it than a few times ``other`` is.
  A fixed atol/rtol does not hold on every CPU: the float32 error depends on the kernels (vector width,
  MKL/oneDNN paths, threads) and, in a sum over many tokens such as a gradient, on how much the sum
  cancels, not on the size of the result.
"""

from __future__ import annotations

import pytest
import torch

EPS32 = torch.finfo(torch.float32).eps
# Measured on the tests that use it, with ATen's default/AVX2/AVX512 kernels, MKL_CBWR=COMPATIBLE/SSE4_2/
# AVX2/AVX512 and 1-16 threads: packed and per-sequence attention passes land at most ~2x padded SDPA's own
# float32 distance from float64, the LM head in other chunks 1x. Real faults land far beyond 8x: attention
# scores or hidden states in float16 200-1700x; a mask that lets a token see the next one or another
# sequence, or key/value heads paired with the wrong query heads, 10^5x.
ROUNDING_FACTOR = 8


def _assert_same_up_to_rounding(got, other, exact, what: str) -> None:
    """Max abs error of ``got`` against ``exact`` at most ROUNDING_FACTOR times that of ``other``, plus one
    float32 ulp at the tensor's scale for values ``other`` gets exactly (zero gradients); dicts key by key."""
    if isinstance(exact, dict):
        assert got.keys() == other.keys() == exact.keys(), what
        for key in exact:
            _assert_same_up_to_rounding(got[key], other[key], exact[key], f"{what}: {key}")
        return
    assert got.shape == other.shape == exact.shape, what
    error = (got.double() - exact).abs().max().item()
    other_error = (other.double() - exact).abs().max().item()
    bound = ROUNDING_FACTOR * other_error + EPS32 * exact.abs().max().item()
    assert error <= bound, f"{what}: error {error:.3g} against float64, the float32 pass it replaces {other_error:.3g}"


@pytest.fixture
def assert_same_up_to_rounding():
    return _assert_same_up_to_rounding
