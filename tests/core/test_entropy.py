import math

import torch

from segtool.core.entropy import chunked_entropy, entropy_from_logits


def ref_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Independent float64 reference: -sum p log p."""
    logp = torch.log_softmax(logits.double(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def test_uniform_distribution_has_entropy_log_v():
    # Uniform over V = 2048: H = ln 2048 = 7.624618986...
    h = entropy_from_logits(torch.zeros(3, 2048))
    assert torch.allclose(h, torch.full((3,), math.log(2048)), atol=1e-5)


def test_hand_computed_distribution():
    # p = (1/2, 1/4, 1/4): H = 1/2 ln 2 + 2 * 1/4 ln 4 = 1.5 ln 2 = 1.0397208
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25]])) + 3.0  # a shift must not matter
    assert abs(entropy_from_logits(logits).item() - 1.5 * math.log(2)) < 1e-6


def test_extreme_logits_stay_finite():
    # One logit dominates by 1e4: H ~ 0, no NaN from exp overflow.
    h = entropy_from_logits(torch.tensor([[1e4, 0.0, 0.0], [-1e4, 0.0, 0.0]]))
    assert torch.isfinite(h).all()
    assert abs(h[0].item()) < 1e-6 and abs(h[1].item() - math.log(2)) < 1e-6


def test_bf16_input_computes_in_float32():
    logits = torch.randn(4, 100).to(torch.bfloat16)
    h = entropy_from_logits(logits)
    assert h.dtype == torch.float32
    ref = ref_entropy(logits)
    assert torch.allclose(h.double(), ref, atol=1e-5)


def test_chunks_never_exceed_chunk_size(monkeypatch):
    """No call projects more than chunk_size positions: no [N, V] logits tensor is ever built."""
    seen = []
    real_mm = torch.mm

    def spy(x, w, out=None):
        seen.append(x.shape[0])
        return real_mm(x, w, out=out)

    monkeypatch.setattr(torch, "mm", spy)
    gen = torch.Generator().manual_seed(0)
    hidden, weight = torch.randn(103, 16, generator=gen), torch.randn(500, 16, generator=gen)
    out = chunked_entropy(hidden, weight, chunk_size=10)
    assert seen == [10] * 10 + [3]
    ref = ref_entropy(hidden.double() @ weight.double().T)
    assert torch.allclose(out.double(), ref, atol=1e-5)


def test_softcap_is_applied_before_entropy():
    gen = torch.Generator().manual_seed(1)
    hidden, weight = torch.randn(5, 8, generator=gen) * 10, torch.randn(50, 8, generator=gen)
    z = hidden.double() @ weight.double().T
    ref = ref_entropy(30.0 * torch.tanh(z / 30.0))
    assert torch.allclose(chunked_entropy(hidden, weight, 2, softcap=30.0).double(), ref, atol=1e-5)


def test_masked_logits_count_as_zero_probability():
    # Two live tokens of four, equally likely: H = ln 2, not NaN.
    logits = torch.tensor([[0.0, float("-inf"), 0.0, float("-inf")]])
    assert abs(entropy_from_logits(logits).item() - math.log(2)) < 1e-6


def test_cpu_row_blocks_cover_every_row(monkeypatch):
    """Row blocks smaller than a chunk (and chunks not multiples of blocks) leave no gaps."""
    import segtool.core.entropy as entropy_mod

    monkeypatch.setattr(entropy_mod, "CPU_BLOCK_BYTES", 3 * 50 * 4)  # 3 rows per block at V = 50
    gen = torch.Generator().manual_seed(2)
    hidden, weight = torch.randn(23, 8, generator=gen), torch.randn(50, 8, generator=gen)
    out = chunked_entropy(hidden, weight, chunk_size=7)
    assert torch.allclose(out.double(), ref_entropy(hidden.double() @ weight.double().T), atol=1e-5)
