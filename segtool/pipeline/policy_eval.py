"""Reward of a policy on held-out prompts: sample (seeded), score with the reward model, measure
length and KL to pi_SFT. Used for PPO's before/after report (and by other policy stages)."""

from __future__ import annotations

import numpy as np

from segtool.eval.answering import without_special_strings
from segtool.models.generation import generate, hash_seed
from segtool.models.policy import logprobs_entropy, pack

EVAL_STREAM = -1  # hash_seed index of the evaluation samples (training iterations use 0, 1, ...)


def gold_rewards(gold, tokenizer, responses: list[list[int]]) -> list[float]:
    """Gold reward (segtool.credit.gold) of each response, read as a judge reads it: special tokens,
    and their strings spelled out with ordinary tokens, removed."""
    texts = tokenizer.batch_decode(responses, skip_special_tokens=True)
    return [gold.reward(without_special_strings(text, tokenizer)) for text in texts]


def heldout_reward(policy, scorer, prompts: list[list[int]], *, max_new_tokens: int, temperature: float, top_p: float,
                   seed: int, device, autocast, generate_batch: int = 32, forward_batch: int = 16, gold=None) -> dict:
    """Mean raw reward e(x, y) (the RM's own segmentation and aggregation), the normalised reward PPO
    optimises (sum of per-token scores, when the scorer has a normaliser), response length, sequence
    KL to pi_SFT, and share of responses cut at max_new_tokens, over one sample per prompt; with
    ``gold(responses) -> rewards``, also the mean gold reward."""
    from segtool.pipeline.ppo_rollout import score_batch

    if not prompts:
        return {}
    with autocast():
        gen = generate(policy, prompts, eos_id=scorer.eos_id, pad_id=scorer.pad_id, max_new_tokens=max_new_tokens,
                       temperature=temperature, top_p=top_p, min_new_tokens=2, batch_size=generate_batch,
                       seed=hash_seed(seed, EVAL_STREAM), force_eos=True)
    rewards, kls, normalised = [], [], []
    for start in range(0, len(prompts), forward_batch):
        idx = list(range(start, min(start + forward_batch, len(prompts))))
        batch = pack([prompts[i] for i in idx], [gen.responses[i] for i in idx], scorer.pad_id, scorer.pack_width)
        with autocast():
            logp, _ = logprobs_entropy(policy, batch.to(device), scorer.chunk_size)
        scored = score_batch(scorer, batch, device)
        flat_ref = scored["ref_logp"][batch.aligned]
        diff = (logp.float().cpu() - flat_ref).split(batch.lengths.tolist())
        kls.extend(float(d.sum()) for d in diff)
        rewards.extend(scored["seq_reward"].tolist())
        if "score" in scored:
            normalised.extend(scored["score"].sum(dim=1).tolist())
    lengths = np.array([len(r) for r in gen.responses])
    return {"prompts": len(prompts), "reward": float(np.mean(rewards)), "reward_std": float(np.std(rewards)),
            "length": float(lengths.mean()), "kl": float(np.mean(kls)), "truncated": float(np.mean(gen.truncated)),
            **({"norm_reward": float(np.mean(normalised))} if normalised else {}),
            **({"gold": float(np.mean(gold(gen.responses)))} if gold is not None else {})}

