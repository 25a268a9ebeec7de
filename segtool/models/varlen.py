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
    """query [R, H, C, D], key/value [R, KV, C, D] -> ([R, C, H, D], None), as transformers expects;
    ``segtool_spans`` is the packed layout, an int64 [N, 3] table of (row, start, length) per sequence
    (``PackPlan.span_table``): a tensor, so a compiled layer takes a new layout without recompiling."""
    spans = kwargs.pop("segtool_spans", None)
    if spans is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # grouped-query attention: each key/value head serves `groups` query heads
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    if torch.compiler.is_compiling() and query.device.type == "cpu" and not dropout:
        explicit_max = EXPLICIT_MAX_TOKENS if torch.is_grad_enabled() and query.requires_grad else 0
        out = torch.ops.segtool.varlen_attention(query, key, value, spans, scale, explicit_max)[0]
    else:
        out = _attend_rows(query, key, value, spans, dropout, scale)
    return out.transpose(1, 2).contiguous(), None


def _attend_rows(query, key, value, spans, dropout, scale):
    """Per-sequence attention under autograd (eager passes): faster eager than the compiled path's
    operator, whose backward recomputes what autograd keeps (SmolLM2 train-rm step, 2-core Intel Xeon:
    2-3%). Each row is ``split`` at the span boundaries, not sliced: a slice's backward writes its
    gradient into a zero tensor of the whole input, once per sequence; split's is one concatenation."""
    out = []
    for q, k, v, parts in zip(query.unbind(0), key.unbind(0), value.unbind(0), _row_parts(spans.tolist(), query),
                              strict=True):
        sizes = [size for _, size, _ in parts]
        out.append(torch.cat([_attend(qs, ks, vs, dropout, scale) if on else vs.new_zeros(vs.shape)
                              for qs, ks, vs, (_, _, on) in zip(q.split(sizes, 1), k.split(sizes, 1), v.split(sizes, 1),
                                                                parts)], dim=1))
    return torch.stack(out)


def _row_parts(span_list: list, t: torch.Tensor) -> list[list[tuple[int, int, bool]]]:
    """Per row of ``t`` [R, H, C, ...], its consecutive parts (start, size, attended): the (row, start,
    length) spans of ``span_list``, and the gaps and the tail between them (not attended)."""
    rows: list[list[tuple[int, int, bool]]] = [[] for _ in range(t.shape[0])]
    used = [0] * t.shape[0]
    for r, start, length in sorted(span_list):
        if start > used[r]:
            rows[r].append((used[r], start - used[r], False))
        rows[r].append((start, length, True))
        used[r] = start + length
    for r, end in enumerate(used):
        if end < t.shape[2]:
            rows[r].append((end, t.shape[2] - end, False))
    return rows


def _attend(q, k, v, dropout, scale):
    """Causal attention of one sequence [H, L, D] by the faster kernel for its case (EXPLICIT_MAX_TOKENS)."""
    if (q.device.type == "cpu" and q.shape[1] <= EXPLICIT_MAX_TOKENS and not dropout and torch.is_grad_enabled()
            and q.requires_grad):
        c = v.dtype
        return _causal_softmax(q.to(c), k.to(c), scale).to(c) @ v
    return F.scaled_dot_product_attention(q[None], k[None], v[None], dropout_p=dropout, is_causal=True, scale=scale)[0]


# On CPU, with gradients, the explicit attention's forward + backward beats SDPA's up to about this many
# tokens per sequence (bf16, head size 64; 2-core AMD EPYC: 0.9 vs 1.7 ms at 90 tokens, 5.3 vs 5.7 at 250,
# 24 vs 17 at 500; 2-core Intel Xeon with AMX: 1.2 vs 1.9 ms at 128, 3.0 vs 3.0 at 250, 13.6 vs 7.2 at 500).
# Without gradients SDPA's causal kernel is never slower (equal at 120 tokens) and much faster on longer
# sequences (AMD: 5.3 vs 13.9 ms at 500, 12 vs 77 at 1000; 0.45 vs 2.1 ms for the tiny model's 245 tokens
# in head size 16, float32; Intel: 0.10 vs 0.33 ms at 128, 3.0 vs 37 at 1000).
EXPLICIT_MAX_TOKENS = 256


# Compiled layers (``compile`` knobs) on CPU call attention as a custom operator, opaque to torch.compile:
# the layer traces whole, without a graph break, so gradient checkpointing's recomputation compiles too.
@torch.library.custom_op("segtool::varlen_attention", mutates_args=())
def varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spans: torch.Tensor, scale: float,
                     explicit_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal attention within each (row, start, length) span of ``spans`` over q/k/v [R, H, C, D]
    (key/value heads already repeated); output [R, H, C, D] in v's dtype, zero outside the spans, and
    the log-sum-exp [R, H, C] float32 of spans run by SDPA's kernel (for its backward). Products run in
    v's dtype (bf16 under autocast, as autocast would run them), softmax in float32. Spans of at most
    ``explicit_max`` tokens take the explicit kernel, the rest SDPA's flash kernel."""
    # empty, not zeros: the spans cover most of a row, and zero-filling whole fresh tensors was 8% of a
    # compiled train-rm step; only the gaps and row tails are zeroed. q and k are cast once, not per span.
    c = v.dtype
    q, k, span_list = q.to(c), k.to(c), spans.tolist()
    out = _zero_outside(v.new_empty(q.shape), span_list)
    lse = q.new_zeros(q.shape[:3], dtype=torch.float32)  # small; zeros keep the output deterministic
    with torch.autocast("cpu", enabled=False):
        for r, start, length in span_list:
            s = slice(start, start + length)
            qs, ks, vs = q[r, :, s], k[r, :, s], v[r, :, s]
            if length <= explicit_max:
                out[r, :, s] = _causal_softmax(qs, ks, scale).to(c) @ vs
            else:
                o, lse[r, :, s] = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                    qs[None], ks[None], vs[None], 0.0, True, scale=scale)
                out[r, :, s] = o[0]
    return out, lse


def _zero_outside(t: torch.Tensor, span_list: list) -> torch.Tensor:
    """``t`` [R, H, C, D] with zeros at every position of each row outside its (row, start, length) spans."""
    for r, parts in enumerate(_row_parts(span_list, t)):
        for start, size, attended in parts:
            if not attended:
                t[r, :, start : start + size].zero_()
    return t


def _causal_softmax(q, k, scale):
    """softmax(q k^T * scale + causal mask) in float32, [H, L, L], the product in q's dtype; one
    kernel for product, scale and mask."""
    bias = _causal_bias(q.shape[1], q.device, q.dtype)
    return torch.softmax(torch.baddbmm(bias, q, k.transpose(-1, -2), alpha=scale), dim=-1, dtype=torch.float32)


@varlen_attention.register_fake
def _(q, k, v, spans, scale, explicit_max):
    return q.new_empty(q.shape, dtype=v.dtype), q.new_empty(q.shape[:3], dtype=torch.float32)


@torch.library.custom_op("segtool::varlen_attention_backward", mutates_args=())
def varlen_attention_backward(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                              spans: torch.Tensor, out: torch.Tensor, lse: torch.Tensor, scale: float,
                              explicit_max: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of q, k, v. Per span: the explicit kernel recomputes its probabilities (nothing [L, L]
    is kept between forward and backward); SDPA's spans take its flash backward from the saved output
    and log-sum-exp. An operator of its own, so compiled backward graphs do not trace into its loop."""
    c = v.dtype
    span_list = spans.tolist()
    qc, kc, do_c = q.to(c), k.to(c), grad_out.to(c)
    dq, dk, dv = (_zero_outside(torch.empty_like(t), span_list) for t in (qc, kc, v))
    with torch.autocast("cpu", enabled=False):
        for r, start, length in span_list:
            s = slice(start, start + length)
            qs, ks, vs, do = qc[r, :, s], kc[r, :, s], v[r, :, s], do_c[r, :, s]
            if length <= explicit_max:
                probs = _causal_softmax(qs, ks, scale)
                dv[r, :, s] = probs.to(c).transpose(-1, -2) @ do
                dprobs = (do @ vs.transpose(-1, -2)).float()
                dscores = (probs * (dprobs - (dprobs * probs).sum(-1, keepdim=True)) * scale).to(c)
                dq[r, :, s] = dscores @ ks
                dk[r, :, s] = dscores.transpose(-1, -2) @ qs
            else:
                g = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
                    do[None], qs[None], ks[None], vs[None], out[r, :, s][None], lse[r, :, s][None], 0.0, True,
                    scale=scale)
                dq[r, :, s], dk[r, :, s], dv[r, :, s] = g[0][0], g[1][0], g[2][0]
    return dq.to(q.dtype), dk.to(k.dtype), dv


@varlen_attention_backward.register_fake
def _(grad_out, q, k, v, spans, out, lse, scale, explicit_max):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _setup_context(ctx, inputs, output):
    q, k, v, spans, ctx.scale, ctx.explicit_max = inputs
    ctx.save_for_backward(q, k, v, spans, *output)


def _backward(ctx, grad_out, _grad_lse):
    q, k, v, spans, out, lse = ctx.saved_tensors
    grads = torch.ops.segtool.varlen_attention_backward(grad_out, q, k, v, spans, out, lse, ctx.scale, ctx.explicit_max)
    return *grads, None, None, None


varlen_attention.register_autograd(_backward, setup_context=_setup_context)


_causal_biases: dict = {}  # (device, dtype) -> [n, n] causal bias, n >= EXPLICIT_MAX_TOKENS; never written after


def _causal_bias(length: int, device, dtype) -> torch.Tensor:
    """[length, length]: 0 on and below the diagonal, -inf above (a view of a cached one)."""
    bias = _causal_biases.get((device, dtype))
    if bias is None or bias.shape[0] < length:
        n = max(length, EXPLICIT_MAX_TOKENS)
        bias = _causal_biases[device, dtype] = torch.full((n, n), float("-inf"), device=device, dtype=dtype).triu(1)
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
