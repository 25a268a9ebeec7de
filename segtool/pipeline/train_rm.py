"""`segtool train-rm`: the segment-level reward model (METHOD §3), and its baselines by configuration.

Consumes the run directory's segment artifact (computing it first when missing), holds out
``train_rm.eval_fraction`` of the pairs, and trains backbone + value head with the Bradley-Terry loss
on aggregated segment rewards. Chosen and rejected responses of a micro-batch share one forward pass.
Outputs: ``model/`` (transformers folder + tokenizer + segtool_rm.json), ``metrics.parquet`` (one row per
step), ``split.parquet`` (row_id -> train/eval). Resumable from ``checkpoint-NNNNNN/`` folders.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from segtool import distributed
from segtool.artifacts.files import atomic_path
from segtool.artifacts.tables import load_segments
from segtool.config.loader import identity_view
from segtool.config.schema import Config, OptimConfig
from segtool.console import STDERR, progress
from segtool.core.batching import pair_micro_batches
from segtool.core.rewards import bradley_terry
from segtool.core.splits import fraction_split
from segtool.errors import ConfigError
from segtool.models.loading import load_causal_lm, load_tokenizer, pad_id_of, resolve_model_source
from segtool.models.precision import make_autocast, no_autocast
from segtool.models.reward import build_from_causal_lm, save_reward_model
from segtool.models.rm_batches import collate, pairs_from_segments, sequence_scores
from segtool.models.rm_scoring import rm_pack_width
from segtool.pipeline import segment
from segtool.pipeline.common import StageResult
from segtool.pipeline.runner import run_stage
from segtool.pipeline.stage import Context, Outcome, Plan, Stage
from segtool.training import checkpoints
from segtool.training.loading import compile_trainable, enable_gradient_checkpointing
from segtool.training.optim import build_optimiser
from segtool.training.steppers import DeepSpeedStepper, LocalStepper, deepspeed_config

STAGE = "train-rm"
SCHEMA_VERSION = 1
WEIGHTS = "model.safetensors"  # the reward model's tensors in a checkpoint


def plan(cfg: Config) -> Plan:
    parent = segment.plan(cfg).art_id
    ident = {**identity_view(cfg, ("train_rm",)), "seed": cfg.run.seed}
    return Plan.of(STAGE, ident, [parent], SCHEMA_VERSION)


# -- data ---------------------------------------------------------------------------------------


def split_rows(n: int, eval_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (train, eval) positions, both sorted; at least one pair in each."""
    if n < 2:
        raise ConfigError(f"train-rm needs at least 2 preference pairs, got {n}", "give more data (data.max_rows)")
    return fraction_split(n, eval_fraction, seed)


# -- model math ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Passes:
    """How the reward model's forward passes run."""
    pad_id: int
    pack_width: int  # tokens per packed row (models.packing); 0 = padded batches
    device: str
    autocast: object  # a context-manager factory (models.precision)
def pair_loss(rm, pairs, idx, cfg_rm, passes: Passes):
    """Bradley-Terry loss, accuracy and margin (tensors) of pairs ``idx`` with chosen and rejected in
    one forward pass, and the batch's (non-pad tokens, tokens the backbone ran)."""
    batch = collate([pairs[i][0] for i in idx] + [pairs[i][1] for i in idx], passes.pad_id, passes.pack_width)
    with passes.autocast():
        e = sequence_scores(rm, batch, cfg_rm.readout, cfg_rm.aggregation, passes.device)
    loss, acc, margin = bradley_terry(e[: len(idx)], e[len(idx) :], cfg_rm.margin)
    return loss, acc, margin, (batch["tokens"], batch["computed"])


def evaluate(rm, pairs, indices, cfg_rm, passes: Passes, micro: int) -> dict:
    """Pairwise accuracy, mean margin and loss over ``indices`` (no gradients)."""
    rm.eval()
    totals = torch.zeros(3)
    with torch.no_grad():
        for idx in pair_micro_batches(pairs, np.asarray(indices), micro):
            loss, acc, margin, _ = pair_loss(rm, pairs, idx, cfg_rm, passes)
            totals += torch.stack([loss, acc, margin]).float().cpu() * len(idx)
    loss, acc, margin = (totals / max(len(indices), 1)).tolist()
    return {"pairs": int(len(indices)), "accuracy": float(acc), "mean_margin": float(margin), "loss": float(loss)}


# -- the stage ----------------------------------------------------------------------------------


def compute(ctx: Context) -> Outcome:
    cfg, c = ctx.cfg, ctx.cfg.train_rm
    _, table = load_segments(ctx.rundir)
    row_ids, pairs = pairs_from_segments(table)
    train_idx, eval_idx = split_rows(len(pairs), c.eval_fraction, cfg.run.seed)
    steps_per_epoch, total = schedule(c, len(train_idx), distributed.launched())
    stepper, passes, tokenizer = build_trainer(cfg, total, ctx.device)
    inputs = {"model": segment.plan(cfg).inputs["model"], "train_pairs": int(len(train_idx)), "eval_pairs": int(len(eval_idx))}
    record = ctx.begin(inputs, layout={"steps": total, "world_size": distributed.world()}, staged=("model",))
    start, metrics = 0, []
    if ctx.resuming:
        state = checkpoints.load_checkpoint(ctx.rundir, record, stepper.model, stepper, WEIGHTS)
        if state is not None:
            start, metrics = state["step"], state["metrics"]
        if ctx.main:
            STDERR.print(f"resuming {STAGE} at step {start} of {total}")

    _train(stepper, pairs, train_idx, c, passes, start, total, steps_per_epoch, cfg.run.seed, metrics, ctx.rundir,
           ctx.plan.art_id, ctx.quiet)
    evaluation = evaluate(stepper.model, pairs, eval_idx, c, passes, c.micro_batch)
    with stepper.full_weights():
        if ctx.main:
            _write_outputs(ctx.rundir, ctx.plan.art_id, stepper.model, tokenizer, cfg, ctx.parents["segment"], metrics,
                           row_ids, train_idx)
    ctx.sync()
    final = {
        "steps": total,
        "train_pairs": int(len(train_idx)),
        "train_loss_last": round(metrics[-1]["loss"], 6) if metrics else None,
        "eval_pairs": evaluation["pairs"],
        "eval_accuracy": round(evaluation["accuracy"], 4),
        "eval_mean_margin": round(evaluation["mean_margin"], 4),
        "eval_loss": round(evaluation["loss"], 4),
        "tokens_per_s": round(sum(m["tokens"] for m in metrics) / max(sum(m["seconds"] for m in metrics), 1e-9), 1),
        "world_size": distributed.world(),
    }
    return Outcome({"pairs": len(pairs), "steps": total}, final)


DEFINITION = Stage(STAGE, plan, compute, parents=("segment",), data_parallel=True)


def run(cfg: Config, *, resume: bool = False, force: bool = False, quiet: bool = False) -> StageResult:
    return run_stage(DEFINITION, cfg, resume=resume, force=force, quiet=quiet)


def schedule(c, n_train: int, parallel: bool) -> tuple[int, int]:
    """(steps per epoch, total steps) over ``n_train`` training pairs."""
    # DeepSpeed needs full global batches: there the last partial one of an epoch is dropped.
    steps_per_epoch = n_train // c.global_batch if parallel else math.ceil(n_train / c.global_batch)
    if steps_per_epoch == 0:
        raise ConfigError(f"{n_train} training pairs do not fill one global batch of {c.global_batch}",
                          "lower train_rm.global_batch or give more data")
    total = steps_per_epoch * c.epochs if not c.max_steps else min(c.max_steps, steps_per_epoch * c.epochs)
    return steps_per_epoch, total


def build_trainer(cfg: Config, total: int, device: str):
    """(stepper, passes, tokenizer): pi_SFT's backbone with a value head and its optimiser, on one
    process or data-parallel under a launcher, and how its forward passes run."""
    c = cfg.train_rm
    source = resolve_model_source(cfg.model)
    tokenizer = load_tokenizer(source, cfg.model)
    pad_id = pad_id_of(tokenizer)
    torch.manual_seed(cfg.run.seed)
    rm = build_from_causal_lm(load_causal_lm(source, cfg.model, device), pad_id,
                              attention=c.aggregation == "attention", seed=cfg.run.seed)
    if c.gradient_checkpointing:
        enable_gradient_checkpointing(rm.hf)
    width = rm_pack_width(rm, cfg, device)
    compile_trainable({"reward model": rm.backbone}, c.compile, device, "train_rm.compile")
    autocast = make_autocast(c.bf16, device, "train_rm.bf16")
    settings = c.optim
    opt, sched = build_optimiser(rm, settings, total)
    if distributed.launched():  # DeepSpeed handles bf16 itself (bf16 weights, fp32 master copy) instead of autocast
        stepper = deepspeed_stepper(rm, opt, sched, c, settings, bf16=autocast is not no_autocast)
        return stepper, Passes(pad_id, width, device, no_autocast), tokenizer
    return LocalStepper(rm, opt, sched, settings.grad_clip), Passes(pad_id, width, device, autocast), tokenizer


def deepspeed_stepper(rm, opt, sched, c, settings: OptimConfig, bf16: bool) -> DeepSpeedStepper:
    """Data parallel under a launcher: the global batch split into micro-batches over accumulation steps and ranks."""
    world = distributed.world()
    if c.global_batch % (c.micro_batch * world):
        raise ConfigError(
            f"train_rm.global_batch ({c.global_batch}) is not a multiple of micro_batch ({c.micro_batch}) x world size ({world})",
            "choose micro_batch and the number of processes so that they divide global_batch",
        )
    config = deepspeed_config(c.global_batch, c.micro_batch, settings.grad_clip, c.zero_stage, bf16)
    if c.zero_stage == 3 and config["gradient_accumulation_steps"] > 1 and distributed.is_main():
        STDERR.print(
            "[yellow]warning:[/] ZeRO-3 with gradient accumulation did not reproduce single-process gradients "
            "in segtool's tests (DeepSpeed 0.19, gloo: half the gradient norm; see DeepSpeed issue #1488); "
            "ZeRO-0/1/2 with accumulation, and ZeRO-3 without it, match. Check on your cluster, or pick "
            "micro_batch x processes = global_batch.", highlight=False)
    # Every rank's micro-batches are full and equal, so DeepSpeed's own averaging weights them.
    return DeepSpeedStepper(rm, opt, sched, config, mean_losses=True)


def _train(stepper, pairs, train_idx, c, passes: Passes, start, total, steps_per_epoch, seed, metrics, rundir, art_id,
           quiet):
    rank, world = (distributed.rank(), distributed.world()) if isinstance(stepper, DeepSpeedStepper) else (0, 1)
    stepper.model.train()
    with progress(quiet, total, "train-rm", unit="steps", done=start) as advance:
        for step in range(start, total):
            epoch, k = divmod(step, steps_per_epoch)
            order = train_idx[np.random.default_rng([seed, epoch]).permutation(len(train_idx))]  # fixed per epoch
            batch_idx = order[k * c.global_batch : (k + 1) * c.global_batch]
            t0 = time.perf_counter()
            sums = torch.zeros(3)  # loss, accuracy, margin (pair-weighted): read once per step, no host sync per pass
            tokens = computed = 0
            lr = stepper.lr()
            # Each rank takes every world-th micro-batch of the (length-grouped) global batch.
            for idx in pair_micro_batches(pairs, batch_idx, c.micro_batch)[rank::world]:
                loss, acc, margin, (n_tok, n_ran) = pair_loss(stepper.model, pairs, idx, c, passes)
                stepper.backward(loss, len(idx) / len(batch_idx))
                sums += torch.stack([loss.detach(), acc, margin]).float().cpu() * len(idx)
                tokens, computed = tokens + n_tok, computed + n_ran
            grad_norm = stepper.step()
            loss_s, acc_s, margin_s, tokens, computed = distributed.all_sum([*sums.tolist(), tokens, computed])
            seconds = time.perf_counter() - t0
            metrics.append({"step": step + 1, "loss": loss_s / len(batch_idx), "accuracy": acc_s / len(batch_idx),
                            "margin": margin_s / len(batch_idx), "lr": float(lr), "grad_norm": grad_norm,
                            "tokens": int(tokens), "computed_tokens": int(computed), "seconds": seconds,
                            "tokens_per_s": tokens / seconds})
            advance(1)
            if c.checkpoint_every and (step + 1) % c.checkpoint_every == 0 and step + 1 < total:
                checkpoints.save_checkpoint(rundir, art_id, step + 1, stepper.model, stepper, {"metrics": metrics},
                                            WEIGHTS)


def sft_source(model_cfg) -> dict:
    """The pi_SFT the RM was trained from, as ModelConfig keys: a local path made absolute."""
    source = resolve_model_source(model_cfg)
    if source.kind == "hub":
        return {"path": source.location, "revision": source.revision, "gguf_file": source.gguf_file}
    return {"path": str(Path(source.location).resolve()), "revision": "main", "gguf_file": source.gguf_file}


def _write_outputs(rundir, art_id, rm, tokenizer, cfg, seg, metrics, row_ids, train_idx) -> None:
    seg_cfg = seg.record["config"]["segment"]
    metadata = {
        "segment_artifact": seg.artifact_id,
        "sft_model": segment.plan(cfg).inputs["model"],  # entropies for new text must come from this model
        "sft_model_source": sft_source(cfg.model),  # where to load it from (segtool.reward_model.load)
        "strategy": seg_cfg["strategy"], "c_ent": seg_cfg["c_ent"], "n": seg_cfg["n"],
        "eos_in_last_segment": seg_cfg["eos_in_last_segment"],
        **({"sat_model": seg_cfg["sat_model"]} if seg_cfg["strategy"] == "sat" else {}),  # new text is split by it
        "readout": cfg.train_rm.readout, "aggregation": cfg.train_rm.aggregation,
        "template": seg.record["inputs"]["tokenizer"]["template"],
        "max_len": cfg.tokenize.max_len, "max_prompt_len": cfg.tokenize.max_prompt_len,
    }
    checkpoints.write_staged(rundir, art_id, "model", lambda folder: save_reward_model(rm, tokenizer, folder, metadata))
    record = rundir.get(art_id)
    with atomic_path(rundir.path_of(record, "metrics.parquet")) as tmp:
        pq.write_table(pa.Table.from_pylist(metrics), tmp)
    train_rows = set(row_ids[train_idx].tolist())
    split = pa.table({"row_id": pa.array(row_ids, pa.int64()),
                      "split": pa.array(["train" if r in train_rows else "eval" for r in row_ids.tolist()])})
    with atomic_path(rundir.path_of(record, "split.parquet")) as tmp:
        pq.write_table(split, tmp)
    for name in ("metrics.parquet", "split.parquet"):
        rundir.add_file(art_id, name)
    checkpoints.drop_checkpoints(rundir, art_id)  # the final model supersedes them
