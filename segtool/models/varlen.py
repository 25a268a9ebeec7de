"""Variable-length attention for packed rows without flash-attn: one causal SDPA call per sequence.

Under plain SDPA a packed row runs attention over the whole row with a block-diagonal mask, so its
cost grows with the square of the row (sum of lengths), most of it on masked-out blocks, and no
causal block skipping applies. Calling SDPA per sequence with ``is_causal=True`` costs the sum of
the squares of the lengths, halved. On this CPU the attention backward was a quarter of a packed
PPO update of SmolLM2-135M.

``enable_varlen`` switches a transformers model from "sdpa" to the attention registered here, which
behaves exactly as "sdpa" unless ``models.packing.backbone_hidden`` passes the packed layout
(``segtool_spans``): generation and padded passes are unchanged. Models on eager or flash attention
are left alone (flash attention already reads packing from the position ids). The name is internal
to the process: ``save_pretrained`` does not write it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

NAME = "segtool_varlen"
_registered = False


def varlen_sdpa(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """query [R, H, C, D], key/value [R, KV, C, D] -> ([R, C, H, D], None), as transformers expects."""
    spans = kwargs.pop("segtool_spans", None)
    if spans is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # grouped-query attention: each key/value head serves `groups` query heads
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    # unbind and split, not slicing: a slice's backward writes its gradient into a zero tensor of the
    # whole input, once per sequence; split's backward is one concatenation (train-rm on SmolLM2,
    # packed: 504 -> 538 tokens/s on a 2-core Intel Xeon)
    rows = [_attend_row(q, k, v, row, dropout, scaling)
            for q, k, v, row in zip(query.unbind(0), key.unbind(0), value.unbind(0), spans, strict=True)]
    return torch.stack(rows).transpose(1, 2).contiguous(), None


def _attend_row(q, k, v, spans, dropout, scale):
    """One packed row [H, C, D]: causal attention within each (start, length) span; zeros elsewhere
    (the row's padding tail, whose output is never read)."""
    sizes, attended, used = [], [], 0
    for start, length in spans:
        if start > used:
            sizes.append(start - used)
            attended.append(False)
        sizes.append(length)
        attended.append(True)
        used = start + length
    if used < q.shape[1]:
        sizes.append(q.shape[1] - used)
        attended.append(False)
    parts = [_attend(qs[None], ks[None], vs[None], dropout, scale)[0] if on else vs.new_zeros(vs.shape)
             for qs, ks, vs, on in zip(q.split(sizes, 1), k.split(sizes, 1), v.split(sizes, 1), attended)]
    return torch.cat(parts, dim=1)


# On CPU, with gradients, the explicit attention's forward + backward beats SDPA's up to about this many
# tokens per sequence (bf16, head size 64; 2-core AMD EPYC: 0.9 vs 1.7 ms at 90 tokens, 5.3 vs 5.7 at 250,
# 24 vs 17 at 500; 2-core Intel Xeon with AMX: 1.2 vs 1.9 ms at 128, 3.0 vs 3.0 at 250, 13.6 vs 7.2 at 500).
# Without gradients SDPA's causal kernel is never slower (equal at 120 tokens) and much faster on longer
# sequences (AMD: 5.3 vs 13.9 ms at 500, 12 vs 77 at 1000; 0.45 vs 2.1 ms for the tiny model's 245 tokens
# in head size 16, float32; Intel: 0.10 vs 0.33 ms at 128, 3.0 vs 37 at 1000).
EXPLICIT_MAX_TOKENS = 256


def _attend(q, k, v, dropout, scale):
    """Causal attention of one sequence [1, H, L, D] by the faster kernel for its case."""
    explicit = q.device.type == "cpu" and q.shape[2] <= EXPLICIT_MAX_TOKENS and torch.is_grad_enabled() and q.requires_grad
    return (_explicit_causal if explicit else _sdpa_causal)(q, k, v, dropout, scale)


def _sdpa_causal(q, k, v, dropout, scale):
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True, scale=scale)


def _explicit_causal(q, k, v, dropout, scale):
    """softmax(q k^T * scale + causal mask) v with the softmax in float32 (see EXPLICIT_MAX_TOKENS for
    when it beats SDPA); its [H, L, L] scores are a packed row's share only, never a whole row's."""
    L = q.shape[2]
    scale = scale if scale is not None else q.shape[-1] ** -0.5
    # one kernel for product, scale and mask; float32 scores, as SDPA accumulates
    scores = torch.baddbmm(_causal_bias(L, q.device), q[0].float(), k[0].float().transpose(-1, -2), alpha=scale)
    probs = torch.softmax(scores, dim=-1)
    if dropout:
        probs = F.dropout(probs, p=dropout)
    return (probs.to(v.dtype) @ v[0])[None]


_causal_biases: dict = {}  # device -> [n, n] float32 causal bias, n >= EXPLICIT_MAX_TOKENS; never written after


def _causal_bias(length: int, device) -> torch.Tensor:
    """[length, length] float32: 0 on and below the diagonal, -inf above (a view of a cached one)."""
    bias = _causal_biases.get(device)
    if bias is None or bias.shape[0] < length:
        n = max(length, EXPLICIT_MAX_TOKENS)
        bias = _causal_biases[device] = torch.full((n, n), float("-inf"), device=device).triu(1)
    return bias[:length, :length]


def _register() -> None:
    global _registered
    if not _registered:
        # lazy: transformers.masking_utils is new in 4.53 (pyproject allows 4.50); only enable_varlen needs it
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

        AttentionInterface.register(NAME, varlen_sdpa)
        AttentionMaskInterface.register(NAME, sdpa_mask)  # padded passes still get SDPA's masks
        _registered = True


def enable_varlen(model) -> bool:
    """Switch ``model`` (a transformers model) from SDPA to per-sequence SDPA on packed rows; True
    when it now uses it."""
    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    if current == NAME:
        return True
    if current != "sdpa" or not hasattr(model, "set_attn_implementation"):
        return False
    _register()
    model.set_attn_implementation(NAME)
    return True


def uses_varlen(backbone) -> bool:
    return getattr(getattr(backbone, "config", None), "_attn_implementation", None) == NAME
