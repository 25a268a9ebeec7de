"""Reward of a policy on held-out prompts: sample (seeded), score with the reward model, measure
length and KL to pi_SFT. The before/after report of the policy stages (ppo, dpo, rs): which prompts
they hold out, the scorer, and the measurement itself."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch

from segtool.artifacts.manifest import RunDir
from segtool.config.schema import Config
from segtool.console import STDERR
from segtool.core.normalizer import Normaliser
from segtool.core.splits import heldout_split
from segtool.errors import ArtifactError, ConfigError
from segtool.eval.answering import without_special_strings
from segtool.models.entropy import split_causal_lm
from segtool.models.generation import HFGenerator, hash_seed
from segtool.models.loading import DTYPES, pad_id_of, resolve_model_source
from segtool.models.packing import packing_width
from segtool.models.policy import logprobs_entropy, pack
from segtool.models.reward import METADATA, load_reward_model
from segtool.pipeline.ppo_rollout import Scorer, reward_spec, score_batch
from segtool.pipeline.segment import punct_table

EVAL_STREAM = -1  # hash_seed index of the evaluation samples (training iterations use 0, 1, ...)


def gold_rewards(gold, tokenizer, responses: list[list[int]]) -> list[float]:
    """Gold reward (segtool.credit.gold) of each response, read as a judge reads it: special tokens,
    and their strings spelled out with ordinary tokens, removed."""
    texts = tokenizer.batch_decode(responses, skip_special_tokens=True)
    return [gold.reward(without_special_strings(text, tokenizer)) for text in texts]


def heldout_reward(policy, scorer, prompts: list[list[int]], *, max_new_tokens: int, temperature: float, top_p: float,
                   seed: int, device, autocast, generate_batch: int = 32, forward_batch: int = 16, gold=None,
                   generator=None) -> dict:
    """Mean raw reward e(x, y) (the RM's own segmentation and aggregation), the normalised reward PPO
    optimises (sum of per-token scores, when the scorer has a normaliser), response length, sequence
    KL to pi_SFT, and share of responses cut at max_new_tokens, over one sample per prompt; with
    ``gold(responses) -> rewards``, also the mean gold reward."""
    if not prompts:
        return {}
    sample = generator or HFGenerator(policy)  # holding ``policy``'s weights
    with autocast():
        gen = sample(prompts, eos_id=scorer.eos_id, pad_id=scorer.pad_id, max_new_tokens=max_new_tokens,
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



@dataclass(frozen=True)
class HeldOut:
    """A policy stage's held-out measurement: ``heldout_reward`` on fixed prompts with the stage's
    sampling knobs (``section``: a ppo/rs/dpo config section, its ``sampling`` table and batch sizes)."""

    scorer: object
    prompts: list
    section: object
    seed: int
    device: str
    autocast: object
    gold: object = None  # gold(responses) -> rewards, or None
    generator: object = None  # the stage's generator (models.generators); None = hf

    def __call__(self, policy) -> dict:
        s, c = self.section.sampling, self.section
        generator = self.generator or HFGenerator()
        generator.load(policy)
        return heldout_reward(policy, self.scorer, self.prompts, max_new_tokens=s.max_new_tokens,
                              temperature=s.temperature, top_p=s.top_p, seed=self.seed, device=self.device,
                              autocast=self.autocast, generate_batch=c.generate_batch, forward_batch=c.forward_batch,
                              gold=self.gold, generator=generator)

    def before_after(self, reference, policy) -> dict:
        """pi_SFT (the reference) and the trained policy on the same prompts and seeds."""
        return {"before": self(reference), "after": self(policy)}


def summary_of(evaluation: dict, prefix: str) -> dict:
    keys = ("reward", "reward_std", "length", "kl", "truncated")
    return {f"{prefix}_{k}": round(float(evaluation[k]), 4) for k in keys if k in evaluation}


def split_heldout(n: int, n_eval: int, seed: int, key: str):
    """(train, held-out) positions: the same seeded split as PPO's, so every policy stage is
    evaluated on the same prompts."""
    if n_eval >= n:
        raise ConfigError(f"{key} ({n_eval}) leaves no training rows out of {n}", f"lower {key} or give more data")
    return heldout_split(n, n_eval, seed)


def rm_folder_of(rundir: RunDir, rm_id: str):
    record = rundir.get(rm_id)
    if record is None or record["status"] != "complete":
        raise ArtifactError(f"the train-rm artifact {rm_id[:12]} is missing in {rundir.root}",
                            f"run `segtool train-rm --workdir {rundir.root}` first")
    return rundir.path_of(record, "model")


def eval_scorer(cfg: Config, rm_folder, ref, tokenizer, device: str, max_new_tokens: int, key: str,
                packing=None):
    """A PPO ``Scorer`` that reads only the raw sequence reward e(x, y) (RM's own segmentation and
    aggregation, no normaliser) and the reference log-probs: what ``heldout_reward`` needs.
    ``packing``: (stage section with packing / pack_width, its name, {name: extra backbone}) packs
    every pass of the stage when all its backbones pass the probe (``Scorer.pack_width``)."""
    meta = json.loads((rm_folder / METADATA).read_text())
    if resolve_model_source(cfg.model).fingerprint() != meta["sft_model"]:
        raise ConfigError("model.path is not the pi_SFT the reward model was trained from",
                          "the reference model and the RM's entropy segments must be that model: fix model.path")
    if meta["max_prompt_len"] + max_new_tokens > meta["max_len"]:
        raise ConfigError(f"max_prompt_len ({meta['max_prompt_len']}) + {key} ({max_new_tokens}) exceeds the reward "
                          f"model's max_len ({meta['max_len']})", f"lower {key} or raise tokenize.max_len")
    mode = "bandit" if meta["strategy"] == "bandit" else "segment-as-bandit"  # sequence reward only
    spec = reward_spec(mode, 0.0, meta)
    rm, _ = load_reward_model(rm_folder, getattr(torch, DTYPES[cfg.model.dtype]), device)
    table = punct_table(tokenizer) if meta["strategy"] == "punct" else None
    width = 0
    if packing is not None:
        section, name, others = packing
        backbones = {"reference": split_causal_lm(ref)[0], "reward model": rm.backbone,
                     **{k: split_causal_lm(m)[0] for k, m in others.items()}}
        width, note = packing_width(section.packing, section.pack_width, backbones, ref.config.vocab_size, device,
                                    f"{name}.packing")
        if note:
            STDERR.print(f"[yellow]note:[/] {note}", highlight=False)
    return Scorer(ref, rm, Normaliser("none"), spec, table, pad_id_of(tokenizer), tokenizer.eos_token_id,
                  cfg.segment.chunk_size, pack_width=width), meta
