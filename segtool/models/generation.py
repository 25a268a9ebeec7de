"""Batched sampling from a causal LM with the KV cache (transformers ``generate``), shared by PPO,
rejection sampling and the benchmark answers.

Prompts are token ids (already formatted by ``inputs.formatting.Encoder``). Batches are built from
length-sorted prompts so left padding stays small, and every batch is seeded from (seed, batch
index): the same call gives the same samples whatever ran before it, which is what makes PPO's
--resume reproduce an uninterrupted run.

A *generator* is what a stage samples with: ``gen.load(model)`` makes it sample from that model's
current weights, ``gen(prompts, **generate_kwargs)`` returns ``Generated``, ``gen.close()`` frees it.
``HFGenerator`` (here) and ``models.vllm_engine.VLLMGenerator`` are the two; ``models.generators``
picks one by the ``generator`` knob.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from transformers import GenerationConfig


@dataclass
class Generated:
    responses: list[list[int]]  # generated ids up to and including the first EOS (see ``force_eos``)
    truncated: list[bool]  # no EOS within max_new_tokens
    new_tokens: int  # generated tokens (up to each row's EOS), for throughput


def generation_config(eos_id: int, pad_id: int, max_new_tokens: int, temperature: float, top_p: float,
                      min_new_tokens: int):
    """A complete GenerationConfig, so nothing leaks in from the model's own generation_config.json
    (e.g. an instruct model's temperature 0.2 / top_p 0.9, or transformers' top_k = 50 default)."""
    sampling = temperature > 0
    return GenerationConfig(
        do_sample=sampling, temperature=temperature if sampling else None, top_p=top_p if sampling else None,
        top_k=0 if sampling else None, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
        eos_token_id=eos_id, pad_token_id=pad_id, use_cache=True,
    )


def length_sorted_order(lengths: list[int]) -> list[int]:
    return sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))


# no_grad, not inference_mode: under inference_mode autocast does not cache its bf16 casts of float32
# weights, so every decode step re-cast the whole policy (55% of SmolLM2's generation time on CPU).
@torch.no_grad()
def generate(
    model,
    prompts: list[list[int]],
    *,
    eos_id: int,
    pad_id: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    min_new_tokens: int = 0,
    batch_size: int = 16,
    seed: int = 0,
    force_eos: bool = True,
    advance=None,
) -> Generated:
    """Sample one response per prompt (temperature 0 = greedy).

    With ``force_eos`` a response that hits max_new_tokens without EOS gets its last token replaced
    by EOS (as OpenRLHF, which the paper's code builds on, does), so every response ends in EOS and
    is scored like a finished one; ``truncated`` says which. Without it, such responses stay as
    generated (benchmark answers).
    """
    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be >= 1")
    config = generation_config(eos_id, pad_id, max_new_tokens, temperature, top_p, min_new_tokens)
    device = next(model.parameters()).device
    order = length_sorted_order([len(p) for p in prompts])
    responses: list[list[int]] = [None] * len(prompts)
    truncated = [False] * len(prompts)
    new_tokens = 0
    was_training = model.training
    model.eval()
    for b, start in enumerate(range(0, len(order), batch_size)):
        idx = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        attn = torch.zeros_like(ids)
        for r, i in enumerate(idx):  # left padding: every prompt ends where generation starts
            ids[r, width - len(prompts[i]) :] = torch.tensor(prompts[i])
            attn[r, width - len(prompts[i]) :] = 1
        torch.manual_seed(hash_seed(seed, b))
        out = model.generate(input_ids=ids.to(device), attention_mask=attn.to(device), generation_config=config)
        for i, new in zip(idx, out[:, width:].cpu().tolist()):
            responses[i], truncated[i] = finish_response(new, eos_id, force_eos)
            new_tokens += len(responses[i])
        if advance is not None:
            advance(len(idx))
    model.train(was_training)
    return Generated(responses, truncated, new_tokens)


def finish_response(new: list[int], eos_id: int, force_eos: bool) -> tuple[list[int], bool]:
    """(response, truncated): the generated ids up to and including the first EOS; without one the
    response is truncated and, with ``force_eos``, its last token becomes EOS. Every generator ends its
    samples here, so truncation and EOS handling cannot differ between them."""
    if eos_id in new:
        return new[: new.index(eos_id) + 1], False
    return (new[:-1] + [eos_id] if force_eos and new else list(new)), True


class HFGenerator:
    """The ``hf`` generator: transformers ``generate`` on the live model (``load`` only points at it)."""

    def __init__(self, model=None):
        self.model = model

    def load(self, model) -> None:
        self.model = model

    def __call__(self, prompts: list[list[int]], **kwargs) -> Generated:
        return generate(self.model, prompts, **kwargs)

    def close(self) -> None:
        self.model = None


def hash_seed(seed: int, index: int) -> int:
    """A 63-bit seed from (seed, index), stable across processes (Python's hash() is salted)."""
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
