"""One PPO rollout batch (METHOD §5 steps 1-6): sample, score, shape rewards, GAE.

Forward passes per sample, after generation: the policy (old log-probs and entropy), the
reference pi_SFT (KL log-probs *and* the entropies that segment the sample: reference_pass), the
reward model, the critic; with ppo.reward_source = dpo (RTO) also the DPO policy, whose implicit
reward beta log pi_DPO/pi_SFT reuses the reference pass's log-probs. Nothing else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from segtool.config.modes import REWARD_MODES, TEXT_STRATEGIES
from segtool.core.adaptive import baselines, loss_mask, schmitt_states, value_token_rewards
from segtool.core.boundaries import FlatLayout, boundary_mask, mask_to_ends
from segtool.core.normalizer import Normaliser, normalize
from segtool.core.ppo import forking_mask, gae, interpolate, place_on_eos, shape_rewards, whiten
from segtool.core.rewards import aggregate, segment_rewards
from segtool.distributed import rank as process_rank
from segtool.errors import ConfigError
from segtool.models.entropy import reference_pass
from segtool.models.generation import HFGenerator, hash_seed
from segtool.models.policy import Packed, logprobs_entropy, pack, state_values, to_aligned
from segtool.pipeline.adaptive_rewards import TokenScorer


@dataclass(frozen=True)
class RewardSpec:
    """How rewards are read: the RM's own segmentation (for e(x, y)) and PPO's (for dense rewards)."""

    mode: str
    rm_strategy: str
    ppo_strategy: str
    c_ent: float  # of PPO's segmentation (entropy strategies)
    rm_c_ent: float
    n: int
    eos_in_last_segment: bool
    readout: str
    aggregation: str

    @property
    def dense(self) -> bool:
        return REWARD_MODES[self.mode].dense


def reward_spec(mode: str, ppo_c_ent: float, meta: dict) -> RewardSpec:
    """Check the reward mode against the reward model it reads, and say how to segment."""
    rm = meta["strategy"]
    reads = REWARD_MODES[mode]
    if rm in TEXT_STRATEGIES:  # every mode re-segments each sample for the RM's e(x, y), from its tokens alone
        raise ConfigError(f"the reward model was trained with segment.strategy = {rm!r}, which the segmentation of "
                          "sampled responses (PPO, held-out policy rewards) does not support",
                          "for PPO, train the reward model with the rule-based sentence splitter: segment.strategy=punct")
    if rm not in reads.rm_strategies:
        raise ConfigError(f"ppo.reward_mode = {mode!r} needs {reads.needs}, "
                          f"but the reward model was trained with strategy {rm!r}",
                          "train the matching reward model (e.g. --preset tiny-bandit) or change ppo.reward_mode")
    ppo_strategy, c_ent = rm, meta["c_ent"]
    if reads.placement == "entropy-segments":
        if ppo_c_ent <= 0:
            raise ConfigError(f"ppo.reward_mode = {mode!r} needs ppo.c_ent > 0",
                              "a bandit RM has no entropy cut-off of its own: set e.g. --set ppo.c_ent=1.75")
        ppo_strategy, c_ent = "entropy", ppo_c_ent
    elif ppo_c_ent > 0 and mode != "bandit":
        c_ent = ppo_c_ent
    return RewardSpec(mode, rm, ppo_strategy, c_ent, meta["c_ent"], meta["n"], meta["eos_in_last_segment"],
                      meta["readout"], meta["aggregation"])


@dataclass
class Scorer:
    """The frozen models and settings that turn samples into rewards."""

    ref: object  # pi_SFT causal LM
    rm: object  # SegmentRewardModel
    normaliser: Normaliser
    spec: RewardSpec
    punct_table: np.ndarray | None
    pad_id: int
    eos_id: int
    chunk_size: int
    interpolation: str = "even"
    pack_width: int = 0  # tokens per packed row in every backbone pass (models.packing); 0 = padded batches
    dpo: DPOReward | None = None  # ppo.reward_source = dpo (RTO): the token rewards' source


@dataclass(frozen=True)
class DPOReward:
    """RTO's per-token reward: scale * log pi_DPO/pi_SFT (clamped to +-clip when clip > 0), plus
    rm_weight times the reward model's reward as ppo.reward_mode places it."""

    scorer: TokenScorer  # the DPO policy (adaptive_rewards: the same implicit reward as adaptive segments)
    scale: float  # 0 = the DPO policy's own beta
    clip: float
    rm_weight: float

    def add(self, rm_score: torch.Tensor, batch: Packed, device, ref_logp: torch.Tensor) -> torch.Tensor:
        """Per-token scores [B, R] (CPU) from the RM's and pi_SFT's log-probs (flat, on ``device``)."""
        flat = self.scorer.implicit_rewards(batch.to(device), ref_logp, self.scale).float().cpu()
        implicit = to_aligned(flat, batch)  # zero past each row's end, as rm_score
        if self.clip:
            implicit = implicit.clamp(-self.clip, self.clip)
        return implicit + self.rm_weight * rm_score if self.rm_weight else implicit


@dataclass
class Rollout:
    """A rollout batch; [B, R] tensors are response-aligned on CPU, zero past each row's end."""

    prompt_ids: list[list[int]]
    responses: list[list[int]]
    truncated: torch.Tensor  # [B] bool
    mask: torch.Tensor  # [B, R] float
    logp: torch.Tensor
    ref_logp: torch.Tensor
    entropy: torch.Tensor  # policy entropy at each step
    values: torch.Tensor
    score: torch.Tensor  # per-token reward before clamp and KL
    rewards: torch.Tensor  # clamped + KL penalty: what GAE sees
    kl: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    seq_reward: torch.Tensor  # [B] raw e(x, y) under the RM's own segmentation and aggregation
    seg_ends: list[np.ndarray] = field(default_factory=list)  # PPO segmentation (dense modes)
    seg_raw: list[np.ndarray] = field(default_factory=list)
    seg_norm: list[np.ndarray] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)
    policy_mask: torch.Tensor | None = None  # tokens in the policy loss (APPO, forking); None = all of ``mask``
    first_forward: object = None  # ppo_train.FirstForward, for the first update to backpropagate through

    @property
    def size(self) -> int:
        return len(self.responses)


def _segments(strategy: str, c_ent: float, spec: RewardSpec, entropy, token_ids, lengths, punct_table):
    layout = FlatLayout.from_lengths(lengths)
    mask = boundary_mask(strategy, layout, entropy=entropy, token_ids=token_ids, c_ent=c_ent, n=spec.n,
                         punct_table=punct_table, eos_in_last_segment=spec.eos_in_last_segment)
    return mask_to_ends(mask, layout)


def _flat_rows(counts: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.repeat(np.arange(len(counts)), counts))


def score_batch(scorer: Scorer, batch: Packed, device) -> dict:
    """Reference pass + RM pass for one packed batch -> per-token scores [B, R] and diagnostics."""
    spec, B = scorer.spec, batch.input_ids.shape[0]
    ids, attn = batch.input_ids.to(device), batch.attention_mask.to(device)
    plan = batch.plan.to(device) if batch.plan is not None else None
    t0 = time.perf_counter()
    ref_logp, entropy = reference_pass(scorer.ref, ids, attn, batch.response_mask.to(device), scorer.chunk_size, plan)
    t1 = time.perf_counter()
    with torch.inference_mode():
        values, hidden = scorer.rm(ids, attn, plan)
    H = entropy.float().cpu().numpy()
    tokens = batch.targets.numpy()
    lengths = batch.lengths.numpy()
    prompt_last = (batch.prompt_lens - 1).to(device)

    def read(ends_in_row, counts):
        rows = _flat_rows(counts)
        absolute = torch.from_numpy(ends_in_row.astype(np.int64)) + batch.prompt_lens[rows]
        r = segment_rewards(values, absolute.to(device), rows.to(device), spec.readout, prompt_last)
        return r, rows, absolute

    # e(x, y): the RM's own segmentation and aggregation, exactly as in its training.
    rm_ends, rm_counts = _segments(spec.rm_strategy, spec.rm_c_ent, spec, H, tokens, lengths, scorer.punct_table)
    r_rm, rows_rm, abs_rm = read(rm_ends, rm_counts)
    with torch.inference_mode():
        scores = scorer.rm.segment_scores(hidden[rows_rm.to(device), abs_rm.to(device)]) if spec.aggregation == "attention" else None
    eos_pos = (batch.prompt_lens + batch.lengths - 1).to(device)
    last = values[torch.arange(B, device=device), eos_pos] if spec.aggregation == "last" else None
    e = aggregate(r_rm, rows_rm.to(device), B, spec.aggregation, scores=scores, last_values=last).float().cpu()

    shape = tuple(batch.aligned.shape)
    resp_values = to_aligned(values[batch.response_mask.to(device)].float().cpu(), batch)
    prompt_values = values[torch.arange(B, device=device), prompt_last].float().cpu()
    out = {"ref_logp": to_aligned(ref_logp.float().cpu(), batch), "seq_reward": e, "ends": [], "raw": [], "norm": [],
           "token_reward": value_token_rewards(resp_values, prompt_values) * batch.aligned,  # APPO: v_i - v_(i-1)
           "t_reference": t1 - t0}
    if spec.dense:
        if (spec.ppo_strategy, spec.c_ent) == (spec.rm_strategy, spec.rm_c_ent):
            ends, counts, r = rm_ends, rm_counts, r_rm
        else:
            ends, counts = _segments(spec.ppo_strategy, spec.c_ent, spec, H, tokens, lengths, scorer.punct_table)
            r = read(ends, counts)[0]
        rows = _flat_rows(counts)
        K = torch.from_numpy(counts)[rows]
        k = torch.arange(len(rows)) - torch.from_numpy(np.cumsum(counts) - counts)[rows]  # index within its row
        r_hat = normalize(r.float().cpu(), k, K, scorer.normaliser)  # p = (k + 1) / K, in segment units
        ends_t = torch.from_numpy(ends.astype(np.int64))
        out["score"] = interpolate(r_hat, ends_t, rows, shape, scorer.interpolation)
        splits = np.cumsum(counts)[:-1]
        out["ends"] = np.split(ends, splits)
        out["raw"] = np.split(r.float().cpu().numpy(), splits)
        out["norm"] = np.split(r_hat.numpy(), splits)
    else:  # bandit: the normalised sequence reward on each row's own EOS (p = 1: one segment of one)
        one = torch.ones(B)
        e_hat = normalize(e, torch.zeros(B), one, scorer.normaliser)
        out["score"] = place_on_eos(e_hat, batch.lengths - 1, shape)
        out["raw"] = [np.array([v], dtype=np.float32) for v in e.numpy()]
        out["norm"] = [np.array([v], dtype=np.float32) for v in e_hat.numpy()]
        out["ends"] = [np.array([n - 1], dtype=np.int32) for n in lengths]
    if scorer.dpo is not None:  # RTO: the DPO policy's implicit reward on every token
        out["score"] = scorer.dpo.add(out["score"], batch, device, ref_logp)
    out["t_reward"] = time.perf_counter() - t1
    return out


def collect(policy, critic, scorer: Scorer, prompts: list[list[int]], cfg, seed: int, iteration: int, device,
            autocast, beta: float, reduce=None, generator=None, first_forward=None) -> Rollout:
    """Sample one response per prompt with the policy (through ``generator``, holding the policy's
    current weights; hf by default) and turn them into PPO's training targets: the ids alone leave
    the generator, every log-prob comes from the scoring passes below. ``first_forward``
    (prompt ids, responses) -> ppo_train.FirstForward: the first update's first micro-batch, forwarded
    with gradients, whose log-probs, entropies and values replace the policy and critic passes of its rows."""
    c = cfg.ppo
    rank = process_rank()  # each data-parallel rank samples its own share with its own seed stream
    t0 = time.perf_counter()
    sample = generator or HFGenerator(policy)
    with autocast():
        gen = sample(prompts, eos_id=scorer.eos_id, pad_id=scorer.pad_id,
                       max_new_tokens=c.sampling.max_new_tokens, temperature=c.sampling.temperature,
                       top_p=c.sampling.top_p, min_new_tokens=2, batch_size=c.generate_batch,
                       seed=hash_seed(seed, iteration * 1000 + rank), force_eos=True)
    t1 = time.perf_counter()
    B = len(prompts)
    R = max(len(r) for r in gen.responses)
    t = {k: torch.zeros(B, R) for k in ("logp", "entropy", "values", "ref_logp", "score", "token_reward")}

    def put(name: str, rows, aligned: torch.Tensor) -> None:
        t[name][torch.as_tensor(rows), : aligned.shape[1]] = aligned

    seconds = {"first_forward": 0.0, "policy": 0.0, "score": 0.0, "reference": 0.0, "reward": 0.0, "critic": 0.0}
    first = first_forward(prompts, gen.responses) if first_forward is not None else None
    if first is not None:
        for name, flat in (("logp", first.logp), ("entropy", first.entropy), ("values", first.values)):
            put(name, first.rows, to_aligned(flat.detach().float().cpu(), first.batch))
        seconds["first_forward"] = time.perf_counter() - t1
    forwarded = set() if first is None else {int(i) for i in first.rows}
    order = sorted(range(B), key=lambda i: -(len(prompts[i]) + len(gen.responses[i])))  # little padding
    seq_reward = torch.zeros(B)
    ends, raw, norm = [None] * B, [None] * B, [None] * B
    for start in range(0, B, c.forward_batch):
        idx = order[start : start + c.forward_batch]
        batch = pack([prompts[i] for i in idx], [gen.responses[i] for i in idx], scorer.pad_id, scorer.pack_width)
        rest = [i for i in idx if i not in forwarded]  # rows the policy and the critic still have to see
        own = None  # their batch
        if rest:
            own = batch if len(rest) == len(idx) else pack([prompts[i] for i in rest], [gen.responses[i] for i in rest],
                                                           scorer.pad_id, scorer.pack_width)
            on_device = own.to(device)
        a = time.perf_counter()
        if own is not None:
            with autocast():
                logp, ent = logprobs_entropy(policy, on_device, scorer.chunk_size)
            put("logp", rest, to_aligned(logp.float().cpu(), own))
            put("entropy", rest, to_aligned(ent.float().cpu(), own))
        b = time.perf_counter()
        scored = score_batch(scorer, batch, device)
        d = time.perf_counter()
        if own is not None:
            with torch.inference_mode(), autocast():
                put("values", rest, to_aligned(state_values(critic, on_device).float().cpu(), own))
        seconds["policy"] += b - a
        seconds["score"] += d - b
        seconds["reference"] += scored["t_reference"]
        seconds["reward"] += scored["t_reward"]
        seconds["critic"] += time.perf_counter() - d
        for name in ("ref_logp", "score", "token_reward"):
            put(name, idx, scored[name])
        for j, i in enumerate(idx):
            seq_reward[i] = scored["seq_reward"][j]
            ends[i], raw[i], norm[i] = scored["ends"][j], scored["raw"][j], scored["norm"][j]
    mask = (torch.arange(R)[None, :] < torch.tensor([len(r) for r in gen.responses])[:, None]).float()
    truncated = torch.tensor(gen.truncated)
    score = t["score"]
    if c.missing_eos_penalty:
        eos = torch.tensor([len(r) - 1 for r in gen.responses])
        score[truncated, eos[truncated]] -= c.missing_eos_penalty
    t2 = time.perf_counter()
    rewards, kl = shape_rewards(score, t["logp"], t["ref_logp"], mask, beta, c.reward_clamp)
    adv, returns = gae(rewards, t["values"], mask, c.gamma, c.lam)
    if c.whiten_advantages:
        adv = whiten(adv, mask, reduce=reduce)  # over the whole rollout batch, all ranks
    policy_mask = mask
    if c.mask == "adaptive":  # APPO: the policy loss keeps good tokens of positive samples, bad of negative ones
        base = baselines(t["token_reward"], mask, c.adaptive_baseline)
        states = schmitt_states(t["token_reward"], base, c.adaptive_delta)
        positive = (adv * mask).sum(dim=1) > 0
        policy_mask = loss_mask(states, positive, mask).float()
    if c.forking_ratio:  # forking tokens: the highest-entropy share of what the policy loss keeps
        policy_mask = forking_mask(t["entropy"], policy_mask, c.forking_ratio)
    seconds.update(generate=t1 - t0, gae=time.perf_counter() - t2)
    return Rollout(prompts, gen.responses, truncated, mask, t["logp"], t["ref_logp"], t["entropy"], t["values"], score,
                   rewards, kl, adv, returns, seq_reward, ends, raw, norm, seconds, policy_mask, first)
