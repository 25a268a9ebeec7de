"""(prompt, response) batches for PPO's forward passes, and the per-token quantities read from them.

Layout: right-padded [B, W] with each row = prompt + response. Response token j of row i sits at
position P_i + j; the distribution that produced it (log-prob, entropy, and the critic's value of
that state) is read at position P_i + j - 1. Flat tensors list response tokens row-major; "aligned"
tensors are [B, R] (R = longest response), zero past each row's end.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from segtool.core.entropy import chunked_logp_entropy
from segtool.core.kl import token_logprobs_and_kl
from segtool.core.logprobs import token_logprobs
from segtool.models.entropy import split_causal_lm
from segtool.models.packing import PackPlan, backbone_hidden, plan_if_padded


@dataclass
class Packed:
    input_ids: torch.Tensor  # [B, W]
    attention_mask: torch.Tensor  # [B, W]
    response_mask: torch.Tensor  # [B, W] bool, response tokens (EOS included)
    state_mask: torch.Tensor  # [B, W] bool, positions whose next token is a response token
    targets: torch.Tensor  # [N] response token ids, flat
    prompt_lens: torch.Tensor  # [B]
    lengths: torch.Tensor  # [B] response lengths
    aligned: torch.Tensor  # [B, R] bool, j < length
    plan: PackPlan | None = None  # backbone passes run packed (models.packing) when set

    def to(self, device) -> Packed:
        return Packed(*(None if getattr(self, f) is None else getattr(self, f).to(device) for f in self.__dataclass_fields__))


def pack(prompts: list[list[int]], responses: list[list[int]], pad_id: int, pack_width: int = 0) -> Packed:
    """The padded batch; with ``pack_width`` > 0 also its packed layout (rows of up to that many
    tokens) for the backbone passes."""
    prompt_lens = torch.tensor([len(p) for p in prompts])
    lengths = torch.tensor([len(r) for r in responses])
    width = int((prompt_lens + lengths).max())
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    resp = torch.zeros(ids.shape, dtype=torch.bool)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        ids[i, : len(p) + len(r)] = torch.tensor(p + r)
        attn[i, : len(p) + len(r)] = 1
        resp[i, len(p) : len(p) + len(r)] = True
    state = torch.zeros_like(resp)
    state[:, :-1] = resp[:, 1:]
    aligned = torch.arange(int(lengths.max()))[None, :] < lengths[:, None]
    plan = plan_if_padded(ids, prompt_lens + lengths, pack_width, pad_id)
    return Packed(ids, attn, resp, state, ids[resp], prompt_lens, lengths, aligned, plan)


def to_aligned(flat: torch.Tensor, batch: Packed) -> torch.Tensor:
    out = torch.zeros(batch.aligned.shape, dtype=flat.dtype, device=flat.device)
    out[batch.aligned] = flat
    return out


def _hidden(lm, batch: Packed) -> torch.Tensor:
    backbone, _ = split_causal_lm(lm)
    return backbone_hidden(backbone, batch.input_ids, batch.attention_mask, batch.plan)


def _head(lm):
    head = lm.get_output_embeddings()
    return head.weight, getattr(head, "bias", None), getattr(lm.config, "final_logit_softcapping", None)


def logprobs(lm, batch: Packed, chunk_size: int = 512) -> torch.Tensor:
    """log pi(y_j | x, y_<j) of every response token, flat [N] float32, differentiable."""
    weight, bias, softcap = _head(lm)
    return token_logprobs(_hidden(lm, batch)[batch.state_mask], weight, batch.targets, chunk_size, softcap, bias)


def logprobs_with_entropy(lm, batch: Packed, chunk_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(``logprobs``, differentiable; the entropy of pi(. | x, y_<j), no gradient) from one backbone
    pass: a training forward that also stands in for the rollout pass."""
    weight, bias, softcap = _head(lm)
    hidden = _hidden(lm, batch)[batch.state_mask]
    logp = token_logprobs(hidden, weight, batch.targets, chunk_size, softcap, bias)
    with torch.no_grad():
        _, entropy = chunked_logp_entropy(hidden.detach(), weight.detach(), batch.targets, chunk_size, softcap=softcap,
                                          bias=None if bias is None else bias.detach())
    return logp, entropy


def logprobs_and_kl(policy, ref, batch: Packed, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(log pi(y_j) [N], exact KL(pi || pi_ref) at the state before y_j [N]) for every response token,
    float32, differentiable in the policy only."""
    with torch.no_grad():
        ref_hidden = _hidden(ref, batch)[batch.state_mask]
    weight, bias, softcap = _head(policy)
    ref_weight, ref_bias, _ = _head(ref)
    return token_logprobs_and_kl(_hidden(policy, batch)[batch.state_mask], weight, batch.targets, ref_hidden, ref_weight,
                                 chunk_size, softcap, bias, ref_bias)


@torch.inference_mode()
def logprobs_entropy(lm, batch: Packed, chunk_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(log pi(y_j), entropy of pi(. | x, y_<j)) flat [N] float32, no gradients: the rollout pass."""
    weight, bias, softcap = _head(lm)
    return chunked_logp_entropy(_hidden(lm, batch)[batch.state_mask], weight, batch.targets, chunk_size,
                                softcap=softcap, bias=bias)


def state_values(critic, batch: Packed) -> torch.Tensor:
    """V(x, y_<j) for every response token j, flat [N] float32 (``critic`` is a SegmentRewardModel)."""
    values, _ = critic(batch.input_ids, batch.attention_mask, batch.plan)
    return values[batch.state_mask]
