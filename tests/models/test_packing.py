"""Packed backbone passes (models.packing) give the padded batch's values, gradients included: up to
float32 rounding, measured against a float64 run of the same model and inputs (conftest)."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from segtool.models.packing import backbone_hidden, bins, packing_error, packing_width, plan_packing, supports_packing
from segtool.models.policy import logprobs, pack

TINY = Path(__file__).resolve().parents[2] / "data" / "models" / "tinystories-656k"


@pytest.fixture(scope="module")
def model():
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(TINY, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def model64(model):
    """The same model in float64: the reference both float32 passes are measured against."""
    return copy.deepcopy(model).double()


def test_bins_balance_rows_longest_first():
    # total 16, cap 8 -> 2 rows; longest first to the emptiest row: 5|4, 4+3, 5+3, 7+1 -> totals 8 and 8
    assert bins([5, 4, 3, 3, 1], 8) == [[0, 3], [1, 2, 4]]
    # 15 tokens fit 2 rows of 8 by count, but no split of three 5s does: one row each
    assert bins([5, 5, 5], 8) == [[0], [1], [2]]
    # a sequence longer than the width gets a row of its own, and the others still share one
    assert bins([12, 2, 3], 8) == [[0], [2, 1]]
    assert bins([], 8) == []


def test_plan_lays_out_sequences_with_their_own_positions():
    ids = torch.tensor([[11, 12, 13, 0], [21, 22, 0, 0], [31, 32, 33, 34]])
    plan = plan_packing(ids, torch.tensor([3, 2, 4]), width=6, pad_id=0)
    # 9 tokens, cap 6 -> 2 rows; longest first to the emptiest row: 4 -> A, 3 -> B, 2 -> B (3 < 4).
    # Rows are padded to the fuller one (5); each row's tail restarts its positions.
    assert plan.input_ids.tolist() == [[31, 32, 33, 34, 0], [11, 12, 13, 21, 22]]
    assert plan.position_ids.tolist() == [[0, 1, 2, 3, 0], [0, 1, 2, 0, 1]]
    zero = 2 * 5  # the appended zero row
    assert plan.gather.tolist() == [5, 6, 7, zero, 8, 9, zero, zero, 0, 1, 2, 3]
    assert plan.shape == (3, 4)


def padded_batch(lengths, seed=0):
    gen = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    for r, n in enumerate(lengths):
        ids[r, :n] = torch.randint(3, 2048, (n,), generator=gen)
    attn = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    return ids, attn


@pytest.mark.parametrize("width", [1, 40, 512])  # one sequence per row, some shared, all in one row
def test_packed_hidden_states_equal_padded(model, model64, width, assert_same_up_to_rounding):
    lengths = [37, 12, 25, 30, 5]
    ids, attn = padded_batch(lengths)
    plan = plan_packing(ids, torch.tensor(lengths), width, pad_id=0)
    with torch.no_grad():
        exact = backbone_hidden(model64.model, ids, attn)
        padded = backbone_hidden(model.model, ids, attn)
        packed = backbone_hidden(model.model, ids, attn, plan)
    assert packed.shape == padded.shape
    keep = attn.bool()
    assert_same_up_to_rounding(packed[keep], padded[keep], exact[keep], "hidden states")
    assert torch.all(packed[~keep] == 0)
    if width == 512:
        assert plan.input_ids.shape == (1, sum(lengths))


def logprobs_and_gradients(model, batch) -> dict[str, torch.Tensor]:
    """Response log-probs ("logprobs") and the gradient of a weighted sum of them for every parameter."""
    model.zero_grad(set_to_none=True)
    lp = logprobs(model, batch)
    (lp * torch.linspace(-1, 1, lp.numel(), dtype=lp.dtype)).sum().backward()
    return {"logprobs": lp.detach(), **{n: p.grad.clone() for n, p in model.named_parameters()}}


def test_packed_logprobs_and_gradients_equal_padded(model, model64, assert_same_up_to_rounding):
    gen = torch.Generator().manual_seed(3)
    prompts = [torch.randint(3, 2048, (n,), generator=gen).tolist() for n in (20, 7, 13)]
    responses = [torch.randint(3, 2048, (n,), generator=gen).tolist() for n in (5, 11, 8)]
    exact = logprobs_and_gradients(model64, pack(prompts, responses, 0))
    padded = logprobs_and_gradients(model, pack(prompts, responses, 0))
    packed = logprobs_and_gradients(model, pack(prompts, responses, 0, 64))
    assert_same_up_to_rounding(packed, padded, exact, "packed")


class IgnoresPositions(torch.nn.Module):
    """A backbone whose attention spans the whole row: packed sequences see each other."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=False):
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        return self.inner(input_ids=input_ids, attention_mask=mask, use_cache=False)


def test_probe_accepts_llama_and_rejects_a_backbone_that_ignores_position_resets(model):
    # a relative L2 norm over all positions: ~4e-7 (a few float32 ulps) on every kernel path tried, not
    # at the mercy of single elements; a backbone that ignores position resets is > 0.1 off
    assert packing_error(model.model, model.config.vocab_size, "cpu") < 1e-5
    assert supports_packing(model.model, model.config.vocab_size, "cpu")
    broken = IgnoresPositions(model.model)
    assert packing_error(broken, model.config.vocab_size, "cpu") > 0.1
    assert not supports_packing(broken, model.config.vocab_size, "cpu")


def test_packing_setting_auto_on_off(model):
    from segtool.errors import ConfigError

    vocab = model.config.vocab_size
    good = {"policy": model.model}
    bad = {"policy": model.model, "critic": IgnoresPositions(model.model)}
    assert packing_width("auto", 300, good, vocab, "cpu", "ppo.packing") == (300, "")
    assert packing_width("off", 300, bad, vocab, "cpu", "ppo.packing") == (0, "")
    width, note = packing_width("auto", 300, bad, vocab, "cpu", "ppo.packing")
    assert width == 0 and "critic" in note and "padded" in note
    with pytest.raises(ConfigError, match="critic") as err:
        packing_width("on", 300, bad, vocab, "cpu", "train_rm.packing")
    assert "train_rm.packing" in err.value.hint


@pytest.fixture
def varlen_model():
    """A fresh tiny model on per-sequence attention (models.varlen); it has grouped-query attention
    (8 query heads, 4 key/value heads), so the head repetition is exercised."""
    from transformers import AutoModelForCausalLM

    from segtool.models.varlen import enable_varlen, uses_varlen

    m = AutoModelForCausalLM.from_pretrained(TINY, dtype=torch.float32).eval()
    assert m.config.num_key_value_heads < m.config.num_attention_heads
    assert enable_varlen(m.model) and uses_varlen(m.model)
    return m


def test_varlen_attention_equals_padded_sdpa_values_and_gradients(model, model64, varlen_model, assert_same_up_to_rounding):
    gen = torch.Generator().manual_seed(5)
    prompts = [torch.randint(3, 2048, (n,), generator=gen).tolist() for n in (20, 7, 13, 30)]
    responses = [torch.randint(3, 2048, (n,), generator=gen).tolist() for n in (5, 11, 8, 2)]
    packed = pack(prompts, responses, 0, 64)
    assert any(len(row) > 1 for row in packed.plan.spans)  # sequences do share rows
    exact = logprobs_and_gradients(model64, pack(prompts, responses, 0))
    padded = logprobs_and_gradients(model, pack(prompts, responses, 0))  # plain SDPA
    fallback = logprobs_and_gradients(varlen_model, pack(prompts, responses, 0))
    assert_same_up_to_rounding(fallback, padded, exact, "padded batch on the varlen model")
    assert_same_up_to_rounding(logprobs_and_gradients(varlen_model, packed), padded, exact, "varlen")


def test_varlen_model_generates_as_before(model, varlen_model):
    """Generation (KV cache, left padding, no spans) takes the plain SDPA path."""
    ids = torch.tensor([[0, 0, 5, 6, 7], [8, 9, 10, 11, 12]])
    attn = (ids != 0).long()
    outs = []
    for m in (model, varlen_model):
        torch.manual_seed(0)
        outs.append(m.generate(input_ids=ids, attention_mask=attn, max_new_tokens=6, do_sample=True, top_k=0, pad_token_id=0))
    assert torch.equal(outs[0], outs[1])


def test_models_off_sdpa_are_left_alone():
    from transformers import AutoModelForCausalLM

    from segtool.models.varlen import enable_varlen

    m = AutoModelForCausalLM.from_pretrained(TINY, dtype=torch.float32, attn_implementation="eager")
    assert not enable_varlen(m.model)
    assert m.config._attn_implementation == "eager"


def rm_scores_and_gradients(rm, examples, pack_width: int, aggregation: str) -> dict[str, torch.Tensor]:
    """e(x, y) of every example and the gradient of the pairs' Bradley-Terry loss (first half chosen)."""
    from segtool.core.rewards import bradley_terry
    from segtool.models.rm_batches import collate, sequence_scores

    rm.zero_grad(set_to_none=True)
    batch = collate(examples, 0, pack_width)
    e = sequence_scores(rm, batch, "end", aggregation, "cpu")
    half = len(examples) // 2
    bradley_terry(e[:half], e[half:], 0.0)[0].backward()
    return {"scores": e.detach(), **{n: p.grad.clone() for n, p in rm.named_parameters() if p.grad is not None}}


@pytest.mark.parametrize("aggregation", ["avg", "last", "attention"])
def test_reward_model_passes_packed_equal_padded(model, aggregation, assert_same_up_to_rounding):
    """train-rm's loss path (collate + sequence_scores) packed with per-sequence attention gives the
    padded batch's scores and gradients, with and without gradient checkpointing."""
    from segtool.models.reward import build_from_causal_lm
    from segtool.models.rm_batches import Example, collate
    from segtool.models.varlen import enable_varlen
    from segtool.training.loading import enable_gradient_checkpointing

    gen = torch.Generator().manual_seed(11)
    examples = []
    for n_prompt, n_resp in ((20, 9), (7, 14), (13, 6), (30, 3)):
        resp = torch.randint(3, 2048, (n_resp,), generator=gen).numpy()
        ends = torch.unique(torch.randint(0, n_resp, (3,), generator=gen)).numpy()
        ends[-1] = n_resp - 1  # the last segment ends at EOS
        examples.append(Example(torch.randint(3, 2048, (n_prompt,), generator=gen).numpy(), resp, ends))
    assert any(len(row) > 1 for row in collate(examples, 0, 64)["plan"].spans)  # sequences do share rows
    attention = aggregation == "attention"
    rm = build_from_causal_lm(model, 0, attention=attention, seed=0).train()
    rm64 = copy.deepcopy(rm).double()
    exact = rm_scores_and_gradients(rm64, examples, 0, aggregation)
    padded = rm_scores_and_gradients(rm, examples, 0, aggregation)
    assert enable_varlen(rm.backbone)
    packed = rm_scores_and_gradients(rm, examples, 64, aggregation)
    assert_same_up_to_rounding(packed, padded, exact, "packed reward model")
    enable_gradient_checkpointing(rm.hf)
    assert_same_up_to_rounding(rm_scores_and_gradients(rm, examples, 64, aggregation), padded, exact,
                               "packed reward model, gradient checkpointing")


def test_collate_counts_the_tokens_the_backbone_runs():
    from segtool.models.rm_batches import Example, collate

    examples = [Example(torch.arange(3, 3 + n).numpy(), torch.arange(5, 9).numpy(), torch.tensor([1, 3]).numpy())
                for n in (10, 2, 4)]  # lengths 14, 6, 8
    padded, packed = collate(examples, 0), collate(examples, 0, 16)
    assert padded["tokens"] == packed["tokens"] == 28
    assert padded["computed"] == 3 * 14 and padded["plan"] is None
    assert packed["computed"] == 2 * 14  # rows [14] and [8 + 6]


def test_entropy_passes_packed_equal_padded(model, model64, assert_same_up_to_rounding):
    """The segment stage's entropies (compute_entropies) packed with per-sequence attention equal the
    padded batches' up to rounding, and the packed batches fill the token budget by real tokens."""
    from segtool.config.schema import Config
    from segtool.models.segmentation import Sequence, compute_entropies, entropy_pack_width

    gen = torch.Generator().manual_seed(2)
    seqs = [Sequence(k, "chosen", torch.randint(3, 2048, (p,), generator=gen).tolist(),
                     torch.randint(3, 2048, (r,), generator=gen).tolist()) for k, (p, r) in
            enumerate(((20, 9), (7, 14), (13, 6), (30, 3), (5, 25)))]
    cfg = Config()
    assert entropy_pack_width(copy.deepcopy(model), cfg, "cpu") == cfg.segment.pack_width  # Llama: the probe passes
    assert any(len(row) > 1 for row in bins([len(s.prompt) + len(s.response) for s in seqs], 40))  # rows are shared

    def flat(entropies):
        return torch.from_numpy(np.concatenate(entropies))

    exact = flat(compute_entropies(model64, seqs, cfg, "cpu"))
    padded = flat(compute_entropies(model, seqs, cfg, "cpu"))
    varlen = copy.deepcopy(model)
    from segtool.models.varlen import enable_varlen

    assert enable_varlen(varlen.model)
    packed = flat(compute_entropies(varlen, seqs, cfg, "cpu", pack_width=40))
    assert_same_up_to_rounding(packed, padded, exact.double(), "packed entropies")


@pytest.mark.parametrize("length", [12, 300])
def test_both_attention_kernels_give_the_same_values_and_gradients(length):
    """models.varlen's CPU operator runs a span by the explicit kernel (up to ``explicit_max`` tokens)
    or SDPA's flash kernel; both give causal SDPA's values and gradients on either side of the switch,
    and the operator's fake (compile) and autograd registrations pass torch's own checks."""
    import torch.nn.functional as F

    from segtool.models.varlen import EXPLICIT_MAX_TOKENS, varlen_attention

    assert 12 <= EXPLICIT_MAX_TOKENS < 300
    gen = torch.Generator().manual_seed(length)
    q, k, v = (torch.randn(1, 3, length, 8, generator=gen, requires_grad=True) for _ in range(3))
    grad_out = torch.randn(1, 3, length, 8, generator=gen)
    spans = torch.tensor([[0, 0, length]])
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    expected = (want.detach(), *torch.autograd.grad(want, (q, k, v), grad_out))
    for explicit_max in (0, EXPLICIT_MAX_TOKENS, 10_000):
        out = varlen_attention(q, k, v, spans, 8**-0.5, explicit_max)[0]
        for a, b in zip((out.detach(), *torch.autograd.grad(out, (q, k, v), grad_out)), expected):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    if length < 100:  # opcheck runs the operator many times
        torch.library.opcheck(varlen_attention, (q, k, v, spans, 8**-0.5, 10_000))
        torch.library.opcheck(varlen_attention, (q, k, v, spans, 8**-0.5, 0))


def test_varlen_attention_of_spans_with_gaps_and_tails():
    """Rows of (start, length) spans, GQA included: each span attends causally within itself, gaps and
    row tails come out zero and get no gradient; values and gradients equal per-span SDPA."""
    import torch.nn.functional as F

    from segtool.models.varlen import varlen_sdpa

    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, 11, 8, generator=gen, requires_grad=True)
    k, v = (torch.randn(2, 2, 11, 8, generator=gen, requires_grad=True) for _ in range(2))
    spans = [[(0, 3), (5, 4)], [(0, 11)]]  # row 0: a gap at 3-4 and a tail at 9-10
    table = torch.tensor([(r, start, n) for r, row in enumerate(spans) for start, n in row])
    out, _ = varlen_sdpa(None, q, k, v, None, segtool_spans=table)
    grad_out = torch.randn(out.shape, generator=gen)
    grads = torch.autograd.grad(out, (q, k, v), grad_out)
    expected = torch.zeros(2, 11, 4, 8)
    for r, row in enumerate(spans):
        for start, n in row:
            s = slice(start, start + n)
            kv = [t[r : r + 1, :, s].repeat_interleave(2, dim=1) for t in (k, v)]
            expected[r, s] = F.scaled_dot_product_attention(q[r : r + 1, :, s], *kv, is_causal=True)[0].transpose(0, 1)
    expected_grads = torch.autograd.grad(expected, (q, k, v), grad_out)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
    assert out[0, 3:5].abs().max() == 0 and out[0, 9:].abs().max() == 0
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert grads[0][0, :, 3:5].abs().max() == 0


def test_a_batch_is_packed_only_when_it_has_enough_padding():
    """plan_if_padded: packing adds an attention call per sequence, so a batch with little padding runs
    padded; at MIN_PADDING of padding or more it is packed; width 0 (packing off) never packs."""
    from segtool.models.packing import MIN_PADDING, plan_if_padded

    ids = torch.zeros(4, 100, dtype=torch.long)
    enough = torch.tensor([100, 100, 100, round(100 - 400 * MIN_PADDING)])  # exactly MIN_PADDING padding
    little = enough + torch.tensor([0, 0, 0, 1])
    plan = plan_if_padded(ids, enough, 400, 0)
    assert plan is not None and plan.tokens == int(enough.sum())  # one row, no padding
    assert plan_if_padded(ids, little, 400, 0) is None
    assert plan_if_padded(ids, torch.tensor([10, 10, 10, 10]), 0, 0) is None
