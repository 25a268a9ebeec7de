"""`segtool rs`: online rejection sampling (METHOD §6) and ARS, its adaptive-mask variant (METHOD §7).

Per iteration: ``rs.rollout_batch`` training prompts, ``rs.k`` samples each from the current policy
(seeded from (seed, iteration)), the sequence reward e(x, y) of every sample from the run
directory's reward model, the best sample of each prompt kept; then ``rs.updates`` passes of
NLL + beta KL(pi || pi_SFT) over the kept samples. ARS (``rs.mask = adaptive``) computes the kept
sample's token rewards (value differences of the same RM), runs the Schmitt trigger with the
[segment] baseline and delta, and trains only the tokens in good segments.

Prompts PPO holds out (``rs.eval_prompts``, same seeded split) are never trained on; the held-out
reward before and after is measured on them. Outputs: ``policy/``, ``metrics.parquet`` (one row per
iteration), ``eval.json``. A checkpoint every ``checkpoint_every`` iterations makes --resume
continue with results identical to an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from segtool.artifacts.files import atomic_path, atomic_write_json
from segtool.artifacts.manifest import RunDir
from segtool.config.loader import identity_view
from segtool.config.schema import Config
from segtool.console import STDERR, progress
from segtool.core.rs import best_of_k, rs_loss
from segtool.core.schedule import iteration_prompts
from segtool.errors import ConfigError
from segtool.inputs.formatting import Encoder
from segtool.inputs.prompts import read_prompts
from segtool.models.generation import HFGenerator, hash_seed
from segtool.models.generators import make_generator
from segtool.models.loading import pad_id_of
from segtool.models.policy import logprobs_and_kl, pack
from segtool.models.precision import compute_dtype, make_autocast
from segtool.pipeline import segment, train_rm
from segtool.pipeline.adaptive_rewards import TokenScorer
from segtool.pipeline.common import StageResult, total_iterations
from segtool.pipeline.policy_eval import HeldOut, eval_scorer, rm_folder_of, split_heldout, summary_of
from segtool.pipeline.ppo_rollout import score_batch
from segtool.pipeline.runner import run_stage
from segtool.pipeline.stage import Context, Outcome, Plan, Stage
from segtool.training import checkpoints
from segtool.training.loading import compile_trainable, load_policy_and_reference
from segtool.training.optim import build_optimiser
from segtool.training.steppers import LocalStepper

STAGE = "rs"
SCHEMA_VERSION = 1
ADAPTIVE_KEYS = ("baseline", "delta", "td_alpha")  # the [segment] knobs ARS reads


def prompts_path(cfg: Config) -> str:
    return cfg.rs.prompts or cfg.data.path


def plan(cfg: Config) -> Plan:
    if cfg.rs.mask == "adaptive" and cfg.segment.adaptive_source != "rm":
        raise ConfigError("ARS scores its own samples with the reward model: segment.adaptive_source must be rm",
                          "set segment.adaptive_source = rm (or rs.mask = none)")
    parents = [train_rm.plan(cfg).art_id]
    prompts_cfg = dataclasses.replace(cfg.data, path=prompts_path(cfg))
    ident = {**identity_view(cfg, ("rs",)), "seed": cfg.run.seed,
             "prompts": segment.data_identity(dataclasses.replace(cfg, data=prompts_cfg)),
             "prompt_rows": {"max_rows": cfg.data.max_rows, "name": cfg.data.name, "split": cfg.data.split}}
    ident["rs"].pop("prompts")  # enters by content hash above, not by path
    if cfg.rs.mask == "adaptive":
        ident["adaptive"] = {k: getattr(cfg.segment, k) for k in ADAPTIVE_KEYS}
    return Plan.of(STAGE, ident, parents, SCHEMA_VERSION)


# -- one iteration ------------------------------------------------------------------------------


def sample_and_select(policy, scorer, prompts: list[list[int]], c, seed: int, iteration: int, device, autocast,
                      token_scorer=None, generator=None) -> dict:
    """k samples per prompt (from ``generator``, holding the policy's weights; hf by default), their
    rewards, the best of each prompt, and its loss mask."""
    repeated = [p for p in prompts for _ in range(c.k)]  # prompt-major: sample j of prompt i at i * k + j
    sample = generator or HFGenerator(policy)
    with autocast():
        gen = sample(repeated, eos_id=scorer.eos_id, pad_id=scorer.pad_id, max_new_tokens=c.sampling.max_new_tokens,
                       temperature=c.sampling.temperature, top_p=c.sampling.top_p, min_new_tokens=2, batch_size=c.generate_batch,
                       seed=hash_seed(seed, iteration), force_eos=True)
    rewards = torch.zeros(len(repeated))
    for start in range(0, len(repeated), c.forward_batch):
        idx = list(range(start, min(start + c.forward_batch, len(repeated))))
        batch = pack([repeated[i] for i in idx], [gen.responses[i] for i in idx], scorer.pad_id, scorer.pack_width)
        rewards[idx] = score_batch(scorer, batch, device)["seq_reward"]
    best = best_of_k(rewards, c.k).tolist()
    kept = [gen.responses[i] for i in best]
    if token_scorer is None:
        masks = [np.ones(len(r), dtype=np.float32) for r in kept]
    else:  # ARS: the kept samples are the chosen ones; keep their good-segment tokens
        masks = []
        for start in range(0, len(kept), c.forward_batch):
            scores = token_scorer.score(prompts[start : start + c.forward_batch], kept[start : start + c.forward_batch])
            masks.extend(s.state.astype(np.float32) for s in scores)
    return {"prompts": prompts, "responses": kept, "masks": masks, "rewards": rewards.numpy(),
            "best_rewards": rewards[best].numpy(), "truncated": float(np.mean(gen.truncated))}


def train_on(policy, ref, sel: dict, c, pad_id: int, device, autocast, stepper, rng_seed, chunk: int,
             pack_width: int = 0) -> dict:
    """``updates`` passes of masked NLL + beta KL over the kept samples, train_batch per step."""
    policy.train()
    n = len(sel["responses"])
    sums = {"loss": 0.0, "nll": 0.0, "kl": 0.0}
    kept_tokens, grad_norms = 0.0, []
    for u in range(c.updates):
        perm = np.random.default_rng([*rng_seed, u]).permutation(n)
        for s in range(0, n, c.train_batch):
            idx = perm[s : s + c.train_batch]
            denom = float(sum(sel["masks"][i].sum() for i in idx))  # token mean over the whole step
            for k in range(0, len(idx), c.micro_batch):
                mb = idx[k : k + c.micro_batch]
                batch = pack([sel["prompts"][i] for i in mb], [sel["responses"][i] for i in mb], pad_id,
                             pack_width).to(device)
                m = torch.from_numpy(np.concatenate([sel["masks"][i] for i in mb])).to(device)
                with autocast():
                    logp, kl = logprobs_and_kl(policy, ref, batch, chunk)
                loss = rs_loss(logp, kl, m, c.beta, normaliser=denom)
                stepper.backward(loss)
                with torch.no_grad():
                    sums["loss"] += float(loss) * max(denom, 1.0)
                    sums["nll"] += float((-logp.float() * m).sum())
                    sums["kl"] += float((kl.float() * m).sum())
                kept_tokens += float(m.sum())
            grad_norms.append(stepper.step())
    policy.eval()
    grad_norm = float(np.mean(grad_norms)) if grad_norms else float("nan")
    return {k: v / max(kept_tokens, 1.0) for k, v in sums.items()} | {"grad_norm": grad_norm}


# -- the stage ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Models:
    policy: object
    ref: object  # pi_SFT, frozen: the KL term's reference
    tokenizer: object
    encoder: object
    scorer: object  # the reward model's sequence rewards (ppo_rollout.Scorer)
    token_scorer: object  # ARS: the kept samples' token rewards and trigger states; None for RS


def compute(ctx: Context) -> Outcome:
    cfg, c, rundir, rm_id = ctx.cfg, ctx.cfg.rs, ctx.rundir, ctx.plan.parents[0]
    models = load_models(cfg, rundir, rm_id, ctx.device)
    rows, skipped = read_prompts(prompts_path(cfg), name=cfg.data.name, split=cfg.data.split,
                                 max_rows=cfg.data.max_rows, skip_invalid=cfg.data.skip_invalid)
    prompt_ids = [models.encoder.encode_prompt(r.messages) for r in rows]
    train_idx, eval_idx = split_heldout(len(rows), c.eval_prompts, cfg.run.seed, "rs.eval_prompts")
    total = total_iterations(c, "rs", len(train_idx))
    autocast = make_autocast(c.bf16, ctx.device, "rs.bf16")
    torch.manual_seed(cfg.run.seed)
    settings = c.optim
    steps_total = total * c.updates * (c.rollout_batch // c.train_batch)
    stepper = LocalStepper(models.policy, *build_optimiser(models.policy, settings, steps_total), settings.grad_clip)

    record = ctx.begin({"model": segment.plan(cfg).inputs["model"], "reward_model": rm_id,
                        "prompts": ctx.plan.identity_config["prompts"], "train_prompts": int(len(train_idx)),
                        "eval_prompts": int(len(eval_idx)), "skipped_prompt_rows": skipped},
                       layout={"iterations": total}, staged=("policy",))
    start, metrics = 0, []
    state = (checkpoints.load_checkpoint(rundir, record, models.policy, stepper, checkpoints.POLICY_WEIGHTS)
             if ctx.resuming else None)
    if state is not None:
        start, metrics = state["step"], state["metrics"]
        STDERR.print(f"resuming {STAGE} after iteration {start} of {total}")

    # built once, from the policy as resumed; _iterate pushes every update into it
    generator = make_generator(c.generator, models.policy, max_model_len=models.encoder.max_prompt_len + c.sampling.max_new_tokens,
                               max_batch=c.generate_batch, seed=cfg.run.seed, knob="rs.generator",
                               dtype=compute_dtype(autocast, next(models.policy.parameters()).dtype))
    try:
        _iterate(ctx, models, stepper, autocast, prompt_ids, train_idx, range(start, total), metrics, generator)
        held_out = HeldOut(models.scorer, [prompt_ids[i] for i in eval_idx], c, cfg.run.seed, ctx.device, autocast,
                           generator=generator)
        evaluation = held_out.before_after(models.ref, models.policy)
    finally:
        generator.close()
    _write_outputs(ctx, models, metrics, evaluation, total)
    kept_all = sum(m["tokens"] * (1 - m["masked_fraction"]) for m in metrics)
    final = {"iterations": total, "train_prompts": int(len(train_idx)), "k": c.k,
             "reward_mean_first": round(metrics[0]["reward_mean"], 4) if metrics else None,
             "reward_mean_last": round(metrics[-1]["reward_mean"], 4) if metrics else None,
             "reward_best_last": round(metrics[-1]["reward_best"], 4) if metrics else None,
             "loss_last": round(metrics[-1]["loss"], 6) if metrics else None,
             "masked_fraction": round(1 - kept_all / max(sum(m["tokens"] for m in metrics), 1), 4),
             "eval_prompts": int(len(eval_idx)),
             **summary_of(evaluation["before"], "before"), **summary_of(evaluation["after"], "after")}
    return Outcome({"prompts": len(rows), "iterations": total}, final)


DEFINITION = Stage(STAGE, plan, compute, parents=("train-rm",))


def run(cfg: Config, *, resume: bool = False, force: bool = False, quiet: bool = False) -> StageResult:
    return run_stage(DEFINITION, cfg, resume=resume, force=force, quiet=quiet)


def load_models(cfg: Config, rundir: RunDir, rm_id: str, device: str) -> Models:
    policy, ref, tokenizer, _ = load_policy_and_reference(cfg, device)
    scorer, meta = eval_scorer(cfg, rm_folder_of(rundir, rm_id), ref, tokenizer, device, cfg.rs.sampling.max_new_tokens,
                               "rs.sampling.max_new_tokens", packing=(cfg.rs, "rs", {"policy": policy}))
    compile_trainable({"policy": policy}, cfg.rs.compile, device, "rs.compile")
    token_scorer = TokenScorer.from_rm(cfg, scorer.rm, device) if cfg.rs.mask == "adaptive" else None
    encoder = Encoder.create(tokenizer, meta["max_len"], meta["max_prompt_len"], "auto" if meta["template"] == "chat" else "plain")
    return Models(policy, ref, tokenizer, encoder, scorer, token_scorer)


def _iterate(ctx: Context, models: Models, stepper, autocast, prompt_ids: list, train_idx, iterations: range,
             metrics: list, generator) -> None:
    """Sample, select and train in each iteration; a checkpoint every rs.checkpoint_every."""
    cfg, c = ctx.cfg, ctx.cfg.rs
    pad_id = pad_id_of(models.tokenizer)
    with progress(ctx.quiet, iterations.stop, f"rs ({c.mask})", unit="iterations", done=iterations.start) as advance:
        for it in iterations:
            t0 = time.perf_counter()
            lr = stepper.lr()
            picked = iteration_prompts(train_idx, it, c.rollout_batch, cfg.run.seed)
            sel = sample_and_select(models.policy, models.scorer, [prompt_ids[i] for i in picked], c, cfg.run.seed, it,
                                    ctx.device, autocast, models.token_scorer, generator)
            t1 = time.perf_counter()
            losses = train_on(models.policy, models.ref, sel, c, pad_id, ctx.device, autocast, stepper, (cfg.run.seed, it),
                              cfg.segment.chunk_size, models.scorer.pack_width)
            generator.load(models.policy)  # the next iteration samples from the updated weights
            tokens = sum(len(r) for r in sel["responses"])
            kept = float(sum(m.sum() for m in sel["masks"]))
            metrics.append({"iteration": it + 1, "reward_mean": float(sel["rewards"].mean()),
                            "reward_best": float(sel["best_rewards"].mean()), "truncated": sel["truncated"],
                            **losses, "masked_fraction": 1 - kept / tokens, "tokens": tokens, "lr": float(lr),
                            "seconds_sample": t1 - t0, "seconds": time.perf_counter() - t0})
            advance(1)
            if (it + 1) % c.checkpoint_every == 0 and it + 1 < iterations.stop:
                checkpoints.save_checkpoint(ctx.rundir, ctx.plan.art_id, it + 1, models.policy, stepper,
                                            {"metrics": metrics}, checkpoints.POLICY_WEIGHTS)


def _write_outputs(ctx: Context, models: Models, metrics: list, evaluation: dict, total: int) -> None:
    c, rundir, art_id = ctx.cfg.rs, ctx.rundir, ctx.plan.art_id
    checkpoints.write_policy(rundir, art_id, models.policy, models.tokenizer,
                             {"stage": STAGE, "beta": c.beta, "mask": c.mask, "k": c.k, "iterations": total,
                              "reference_model": segment.plan(ctx.cfg).inputs["model"], "reward_model": ctx.plan.parents[0]})
    with atomic_path(rundir.path_of(ctx.record, "metrics.parquet")) as tmp:
        pq.write_table(pa.Table.from_pylist(metrics), tmp)
    atomic_write_json(rundir.path_of(ctx.record, "eval.json"), evaluation)
    for name in ("metrics.parquet", "eval.json"):
        rundir.add_file(art_id, name)
    checkpoints.drop_checkpoints(rundir, art_id)
