"""`segtool dpo`: DPO (METHOD §6) and ADPO, DPO with the adaptive loss mask (METHOD §7).

Trains pi_SFT on the run directory's preference pairs (tokens from its segment artifact) against
the frozen reference pi_SFT. ADPO (``dpo.mask = adaptive``) first segments the pairs with the
`adaptive` strategy (a parent segment artifact; token rewards from this run directory's reward
model, or from the plain DPO policy of the same config with ``segment.adaptive_source = dpo``) and
sums log-probs only over chosen tokens in good segments and rejected tokens in bad ones.

Pairs whose prompts PPO holds out (``dpo.eval_prompts``, same seeded split) are never trained on;
the held-out reward of pi_SFT and of the trained policy is measured on them with the run
directory's reward model. Outputs: ``policy/`` (transformers causal LM + tokenizer +
segtool_policy.json), ``metrics.parquet`` (one row per step), ``eval.json``. Resumable from
``checkpoint-NNNNNN/`` folders.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from segtool.artifacts.files import atomic_path, atomic_write_json
from segtool.artifacts.manifest import RunDir
from segtool.artifacts.tables import load_segments
from segtool.config.loader import identity_view
from segtool.config.schema import Config
from segtool.console import STDERR, progress
from segtool.core.batching import pair_micro_batches
from segtool.core.dpo import dpo_loss, masked_sums
from segtool.errors import ArtifactError, ConfigError
from segtool.models.policy import logprobs, pack
from segtool.models.precision import make_autocast
from segtool.pipeline import segment, train_rm
from segtool.pipeline.common import StageResult
from segtool.pipeline.policy_eval import HeldOut, eval_scorer, rm_folder_of, split_heldout, summary_of
from segtool.pipeline.runner import run_stage
from segtool.pipeline.stage import Context, Outcome, Plan, Stage
from segtool.training import checkpoints
from segtool.training.loading import compile_trainable, enable_gradient_checkpointing, load_policy_and_reference
from segtool.training.optim import build_optimiser
from segtool.training.steppers import LocalStepper

STAGE = "dpo"
SCHEMA_VERSION = 1


def _check(cfg: Config) -> None:
    if cfg.segment.strategy == "adaptive":
        raise ConfigError("dpo reads the reward model's segmentation from segment.strategy, which cannot be adaptive",
                          "keep the RM's strategy (e.g. entropy) and set dpo.mask = adaptive for ADPO; "
                          "the adaptive segments use segment.baseline / delta / adaptive_source")


def plain(cfg: Config) -> Config:
    """The same config without the mask: plain DPO (the source of ADPO's implicit token rewards)."""
    return dataclasses.replace(cfg, dpo=dataclasses.replace(cfg.dpo, mask="none"))


def adaptive_config(cfg: Config) -> Config:
    """The config of ADPO's mask segmentation: strategy adaptive, its source model made explicit."""
    rundir = RunDir(cfg.run.workdir)
    folder = cfg.segment.adaptive_model
    if not folder:
        if cfg.segment.adaptive_source == "rm":
            folder = str(rm_folder_of(rundir, train_rm.plan(cfg).art_id))
        else:
            record = rundir.get(plan(plain(cfg)).art_id)
            if record is None or record["status"] != "complete":
                raise ArtifactError("ADPO with segment.adaptive_source = dpo needs the plain DPO policy of this config",
                                    "run `segtool dpo --set dpo.mask=none` with the same settings first")
            folder = str(rundir.path_of(record, "policy"))
    return dataclasses.replace(cfg, segment=dataclasses.replace(cfg.segment, strategy="adaptive", adaptive_model=folder))


def plan(cfg: Config) -> Plan:
    _check(cfg)
    parents = [segment.plan(cfg).art_id, train_rm.plan(cfg).art_id]
    if cfg.dpo.mask == "adaptive":
        parents.append(segment.plan(adaptive_config(cfg)).art_id)
    ident = {**identity_view(cfg, ("dpo",)), "seed": cfg.run.seed}
    return Plan.of(STAGE, ident, parents, SCHEMA_VERSION)


def parents_for(cfg: Config):
    """train-rm (segmenting first); for ADPO then its adaptive segments, after the plain DPO policy they
    may take their token rewards from."""
    _check(cfg)  # before anything is trained for nothing
    yield "train-rm", cfg
    if cfg.dpo.mask == "adaptive":
        if cfg.segment.adaptive_source == "dpo" and not cfg.segment.adaptive_model:
            yield "dpo", plain(cfg)  # the implicit-reward source: plain DPO, same settings
        yield "segment", adaptive_config(cfg)


# -- data ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    prompt: list[int]
    response: list[int]
    keep: np.ndarray  # [n] float32 loss mask over response tokens (all ones for plain DPO)

    @property
    def length(self) -> int:
        return len(self.prompt) + len(self.response)


def pairs_from_table(table, adaptive: bool) -> tuple[np.ndarray, list[tuple[Side, Side]]]:
    """(row ids, [(chosen, rejected)]) sorted by row id; ADPO keeps chosen tokens in good segments
    (state +1) and rejected tokens in bad ones (state -1)."""
    cols = ["row_id", "side", "prompt_token_ids", "response_token_ids"] + (["state"] if adaptive else [])
    data = {c: table[c].to_pylist() for c in cols}
    by_row: dict[int, dict[str, Side]] = {}
    for i, row in enumerate(data["row_id"]):
        side = data["side"][i]
        n = len(data["response_token_ids"][i])
        if adaptive:
            wanted = 1 if side == "chosen" else -1
            keep = (np.asarray(data["state"][i]) == wanted).astype(np.float32)
        else:
            keep = np.ones(n, dtype=np.float32)
        by_row.setdefault(row, {})[side] = Side(data["prompt_token_ids"][i], data["response_token_ids"][i], keep)
    rows = np.array(sorted(by_row))
    return rows, [(by_row[r]["chosen"], by_row[r]["rejected"]) for r in rows]


def pair_loss(policy, ref, pairs, idx, c, pad_id: int, device: str, autocast, chunk: int, pack_width: int = 0) -> dict:
    """DPO loss of pairs ``idx`` (chosen and rejected in one forward pass of each model)."""
    sides = [pairs[i][0] for i in idx] + [pairs[i][1] for i in idx]
    batch = pack([s.prompt for s in sides], [s.response for s in sides], pad_id, pack_width).to(device)
    rows = torch.repeat_interleave(torch.arange(len(sides), device=device), batch.lengths)
    keep = torch.from_numpy(np.concatenate([s.keep for s in sides])).to(device)
    with autocast():
        logp = logprobs(policy, batch, chunk)
        with torch.no_grad():
            ref_logp = logprobs(ref, batch, chunk)
    pol = masked_sums(logp, rows, len(sides), keep)
    base = masked_sums(ref_logp, rows, len(sides), keep)
    p = len(idx)
    out = dpo_loss(pol[:p], pol[p:], base[:p], base[p:], c.beta, c.label_smoothing)
    out["tokens"] = int(batch.lengths.sum())
    return out


# -- the stage ----------------------------------------------------------------------------------


def compute(ctx: Context) -> Outcome:
    cfg, c, rundir = ctx.cfg, ctx.cfg.dpo, ctx.rundir
    seg_id = ctx.parents["segment"].artifact_id if c.mask == "adaptive" else segment.plan(cfg).art_id
    _, table = load_segments(rundir, art_id=seg_id)
    row_ids, pairs = pairs_from_table(table, c.mask == "adaptive")
    train_idx, eval_idx = split_heldout(len(pairs), c.eval_prompts, cfg.run.seed, "dpo.eval_prompts")
    train_idx = np.sort(train_idx)
    steps_per_epoch = math.ceil(len(train_idx) / c.global_batch)
    total = steps_per_epoch * c.epochs if not c.max_steps else min(c.max_steps, steps_per_epoch * c.epochs)
    rm_id, reference = ctx.parents["train-rm"].artifact_id, segment.plan(cfg).inputs["model"]
    policy, ref, tokenizer, scorer, autocast, stepper = build_trainer(cfg, rundir, rm_id, total, ctx.device)

    record = ctx.begin({"model": reference, "reward_model": rm_id, "pairs_from": seg_id,
                        "train_pairs": int(len(train_idx)), "eval_prompts": int(len(eval_idx))},
                       layout={"steps": total}, staged=("policy",))
    start, metrics = 0, []
    state = checkpoints.load_checkpoint(rundir, record, policy, stepper, checkpoints.POLICY_WEIGHTS) if ctx.resuming else None
    if state is not None:
        start, metrics = state["step"], state["metrics"]
        STDERR.print(f"resuming {STAGE} at step {start} of {total}")

    _train(policy, ref, pairs, train_idx, c, scorer, ctx.device, autocast, stepper, start, total,
           steps_per_epoch, cfg, metrics, rundir, ctx.plan.art_id, ctx.quiet)
    held_out = HeldOut(scorer, [pairs[i][0].prompt for i in eval_idx], c, cfg.run.seed, ctx.device, autocast)
    evaluation = held_out.before_after(ref, policy)
    meta = {"stage": STAGE, "beta": c.beta, "label_smoothing": c.label_smoothing, "mask": c.mask,
            "reference_model": reference, "reward_model": rm_id, "pairs_from": seg_id, "steps": total}
    _write_outputs(rundir, ctx.plan.art_id, policy, tokenizer, meta, metrics, evaluation)
    final = {"steps": total, "train_pairs": int(len(train_idx)),
             "loss_last": round(metrics[-1]["loss"], 6) if metrics else None,
             "accuracy_last": round(metrics[-1]["accuracy"], 4) if metrics else None,
             **kept_fractions(pairs, train_idx), "eval_prompts": int(len(eval_idx)),
             **summary_of(evaluation["before"], "before"), **summary_of(evaluation["after"], "after")}
    return Outcome({"pairs": len(pairs), "steps": total}, final)


DEFINITION = Stage(STAGE, plan, compute, parents_for=parents_for)


def run(cfg: Config, *, resume: bool = False, force: bool = False, quiet: bool = False) -> StageResult:
    return run_stage(DEFINITION, cfg, resume=resume, force=force, quiet=quiet)


def build_trainer(cfg: Config, rundir: RunDir, rm_id: str, total: int, device: str):
    """(policy, reference, tokenizer, held-out scorer, autocast, stepper): pi_SFT twice, the reward
    model that judges the held-out prompts, and the policy's optimiser."""
    c = cfg.dpo
    policy, ref, tokenizer, _ = load_policy_and_reference(cfg, device)
    if c.gradient_checkpointing:
        enable_gradient_checkpointing(policy)
    scorer, _ = eval_scorer(cfg, rm_folder_of(rundir, rm_id), ref, tokenizer, device, c.sampling.max_new_tokens,
                            "dpo.sampling.max_new_tokens", packing=(c, "dpo", {"policy": policy}))
    compile_trainable({"policy": policy}, c.compile, device, "dpo.compile")
    autocast = make_autocast(c.bf16, device, "dpo.bf16")
    torch.manual_seed(cfg.run.seed)
    settings = c.optim
    stepper = LocalStepper(policy, *build_optimiser(policy, settings, total), settings.grad_clip)
    return policy, ref, tokenizer, scorer, autocast, stepper


def kept_fractions(pairs, train_idx) -> dict:
    """Share of training response tokens the loss sees (1 for plain DPO) and its complement."""
    kept = {side: sum(float(pairs[i][k].keep.sum()) for i in train_idx) for k, side in enumerate(("chosen", "rejected"))}
    tokens = {side: sum(len(pairs[i][k].keep) for i in train_idx) for k, side in enumerate(("chosen", "rejected"))}
    total_kept, total = sum(kept.values()), sum(tokens.values())
    return {"masked_fraction": round(1 - total_kept / total, 4),
            "chosen_kept_fraction": round(kept["chosen"] / tokens["chosen"], 4),
            "rejected_kept_fraction": round(kept["rejected"] / tokens["rejected"], 4)}


def _train(policy, ref, pairs, train_idx, c, scorer, device, autocast, stepper, start, total, steps_per_epoch,
           cfg, metrics, rundir, art_id, quiet) -> None:
    chunk = cfg.segment.chunk_size
    policy.train()
    with progress(quiet, total, f"dpo ({c.mask})", unit="steps", done=start) as advance:
        for step_no in range(start, total):
            epoch, k = divmod(step_no, steps_per_epoch)
            order = train_idx[np.random.default_rng([cfg.run.seed, epoch]).permutation(len(train_idx))]
            batch_idx = order[k * c.global_batch : (k + 1) * c.global_batch]
            t0 = time.perf_counter()
            lr = stepper.lr()
            sums = dict.fromkeys(("loss", "accuracy", "chosen_reward", "rejected_reward"), 0.0)
            tokens = 0
            for idx in pair_micro_batches(pairs, batch_idx, c.micro_batch):
                out = pair_loss(policy, ref, pairs, idx, c, scorer.pad_id, device, autocast, chunk, scorer.pack_width)
                stepper.backward(out["loss"].mean(), len(idx) / len(batch_idx))
                for key in sums:
                    sums[key] += float(out[key].detach().sum())
                tokens += out["tokens"]
            grad_norm = stepper.step()
            seconds = time.perf_counter() - t0
            row = {"step": step_no + 1, **{key: v / len(batch_idx) for key, v in sums.items()}}
            row.update(margin=row["chosen_reward"] - row["rejected_reward"], lr=float(lr), grad_norm=grad_norm,
                       tokens=tokens, seconds=seconds, tokens_per_s=tokens / seconds)
            metrics.append(row)
            advance(1)
            if c.checkpoint_every and (step_no + 1) % c.checkpoint_every == 0 and step_no + 1 < total:
                checkpoints.save_checkpoint(rundir, art_id, step_no + 1, policy, stepper, {"metrics": metrics},
                                            checkpoints.POLICY_WEIGHTS)
    policy.eval()


def _write_outputs(rundir, art_id, policy, tokenizer, meta, metrics, evaluation) -> None:
    checkpoints.write_policy(rundir, art_id, policy, tokenizer, meta)
    record = rundir.get(art_id)
    with atomic_path(rundir.path_of(record, "metrics.parquet")) as tmp:
        pq.write_table(pa.Table.from_pylist(metrics), tmp)
    atomic_write_json(rundir.path_of(record, "eval.json"), evaluation)
    for name in ("metrics.parquet", "eval.json"):
        rundir.add_file(art_id, name)
    checkpoints.drop_checkpoints(rundir, art_id)  # the final policy supersedes them
