"""Entropies of a causal LM at chosen positions: one backbone pass, the LM head in chunks."""

from __future__ import annotations

import torch

from segtool.core.entropy import chunked_entropy


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
) -> torch.Tensor:
    """Entropy H_j at every True position of ``response_mask``, flat in row-major order.

    input_ids, attention_mask, response_mask: [B, T] (right padding). The distribution at
    position t predicts token t + 1, so response_mask marks the positions of y_0 .. y_{n-1}.
    Returns [N] float32 on the model's device.
    """
    backbone, head = split_causal_lm(model)
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    hidden = hidden.last_hidden_state if hasattr(hidden, "last_hidden_state") else hidden[0]
    softcap = getattr(model.config, "final_logit_softcapping", None)
    return chunked_entropy(
        hidden[response_mask.bool()], head.weight, chunk_size, softcap=softcap, bias=getattr(head, "bias", None)
    )
