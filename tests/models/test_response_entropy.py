"""Chunked entropy on the real tiny model equals a float64 brute force over full logits."""

from pathlib import Path

import pytest
import torch

from segtool.models.entropy import response_entropy, split_causal_lm

TINY = Path(__file__).resolve().parents[2] / "data" / "models" / "tinystories-656k"


@pytest.fixture(scope="module")
def model():
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(TINY, dtype=torch.float32).eval()


def float64_entropy(logits):
    logp = torch.log_softmax(logits.double(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def brute_force(model, ids, prompt_len):
    """float64 entropies of full logits at response positions of one unpadded sequence."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    return float64_entropy(logits)[prompt_len:]


@pytest.mark.parametrize("chunk_size", [1, 7, 256])
def test_matches_float64_reference_on_padded_batch(model, chunk_size):
    gen = torch.Generator().manual_seed(0)
    # Three sequences of different lengths, right-padded into one batch.
    seqs = [torch.randint(3, 2048, (n,), generator=gen).tolist() for n in (40, 23, 31)]
    prompt_lens = [10, 5, 12]
    width = max(map(len, seqs))
    ids = torch.zeros(3, width, dtype=torch.long)
    attn = torch.zeros_like(ids)
    resp = torch.zeros(3, width, dtype=torch.bool)
    for r, (s, p) in enumerate(zip(seqs, prompt_lens)):
        ids[r, : len(s)] = torch.tensor(s)
        attn[r, : len(s)] = 1
        resp[r, p : len(s)] = True
    got = response_entropy(model, ids, attn, resp, chunk_size=chunk_size)
    ref = torch.cat([brute_force(model, s, p) for s, p in zip(seqs, prompt_lens)])
    assert got.dtype == torch.float32
    assert got.shape == ref.shape == (30 + 18 + 19,)
    assert torch.max(torch.abs(got.double() - ref)).item() < 1e-4


def test_reference_pass_gives_token_logprobs_and_the_segment_entropies(model, assert_same_up_to_rounding):
    """PPO's single reference pass: entropies equal `segment`'s, log-probs equal a float64 brute force."""
    from segtool.models.entropy import reference_pass

    gen = torch.Generator().manual_seed(1)
    seqs = [torch.randint(3, 2048, (n,), generator=gen).tolist() for n in (30, 17, 25)]
    prompt_lens = [9, 4, 11]
    width = max(map(len, seqs))
    ids = torch.zeros(3, width, dtype=torch.long)
    attn, resp = torch.zeros_like(ids), torch.zeros(3, width, dtype=torch.bool)
    for r, (s, p) in enumerate(zip(seqs, prompt_lens)):
        ids[r, : len(s)], attn[r, : len(s)], resp[r, p : len(s)] = torch.tensor(s), 1, True
    logp, ent = reference_pass(model, ids, attn, resp, chunk_size=5)
    # Equal up to float32 rounding of the LM head (the extra position per row shifts chunk boundaries,
    # so the matmul groups differently): both against the head in float64 on the same hidden states.
    backbone, head = split_causal_lm(model)
    with torch.no_grad():
        hidden = backbone(input_ids=ids, attention_mask=attn, use_cache=False).last_hidden_state[resp]
    exact = float64_entropy(hidden.double() @ head.weight.double().T)
    assert_same_up_to_rounding(ent, response_entropy(model, ids, attn, resp, chunk_size=5), exact, "entropies")
    ref = []
    for s, p in zip(seqs, prompt_lens):
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([s])).logits[0].double(), -1)
        ref += [lp[j - 1, s[j]].item() for j in range(p, len(s))]  # log pi(y_j | x, y_<j)
    assert logp.shape == (len(ref),) and torch.max(torch.abs(logp.double() - torch.tensor(ref))).item() < 1e-4
