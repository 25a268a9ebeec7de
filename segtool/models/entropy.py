"""Entropies of a causal LM at chosen positions: one backbone pass, the LM head in chunks."""

from __future__ import annotations

import torch

from segtool.core.entropy import chunked_entropy, chunked_logp_entropy
from segtool.models.packing import backbone_hidden


def split_causal_lm(model) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(backbone returning final hidden states, LM head) of a transformers causal LM."""
    head = model.get_output_embeddings()
    backbone = getattr(model, getattr(model, "base_model_prefix", "model"), None)
    if head is None or backbone is None:
        raise TypeError(f"{type(model).__name__} does not expose a backbone and an LM head")
    return backbone, head


@torch.inference_mode()
def response_entropy(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    chunk_size: int = 256,
    plan=None,
) -> torch.Tensor:
    """Entropy H_j at every True position of ``response_mask``, flat in row-major order (``plan``:
    the backbone runs packed, models.packing).

    input_ids, attention_mask, response_mask: [B, T] (right padding). The distribution at
    position t predicts token t + 1, so response_mask marks the positions of y_0 .. y_{n-1}.
    Returns [N] float32 on the model's device.
    """

    backbone, head = split_causal_lm(model)
    hidden = backbone_hidden(backbone, input_ids, attention_mask, plan)
    softcap = getattr(model.config, "final_logit_softcapping", None)
    return chunked_entropy(
        hidden[response_mask.bool()], head.weight, chunk_size, softcap=softcap, bias=getattr(head, "bias", None)
    )


@torch.inference_mode()
def reference_pass(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    chunk_size: int = 256,
    plan=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass of pi_ref giving, flat over response positions (row-major):
    log pi_ref(y_j | x, y_<j) for the KL term, and H_j (the entropy after y_j) for segmentation.

    The log-prob of y_j comes from position j - 1 (the last prompt token for j = 0) and H_j from
    position j, so the LM head runs once over the response positions plus the token before them.
    ``plan`` runs the backbone packed (models.packing).
    """
    backbone, head = split_causal_lm(model)
    hidden = backbone_hidden(backbone, input_ids, attention_mask, plan)
    resp = response_mask.bool()
    before = torch.zeros_like(resp)
    before[:, :-1] = resp[:, 1:] & ~resp[:, :-1]  # the token just before each response
    wanted = resp | before
    nxt = torch.zeros_like(input_ids)
    nxt[:, :-1] = input_ids[:, 1:]  # the token each position predicts
    logp, ent = chunked_logp_entropy(hidden[wanted], head.weight, nxt[wanted], chunk_size,
                                     softcap=getattr(model.config, "final_logit_softcapping", None),
                                     bias=getattr(head, "bias", None))
    # Within each row the wanted positions are (before, y_0 .. y_{n-1}): log-probs drop the last,
    # entropies drop the first.
    is_before = before[wanted]
    is_last = torch.zeros_like(is_before)
    is_last[:-1] = is_before[1:]
    is_last[-1] = True
    return logp[~is_last], ent[~is_before]
