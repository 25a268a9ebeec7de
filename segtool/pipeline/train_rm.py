"""`segtool train-rm`: the segment-level reward model (METHOD §3), and its baselines by configuration.

Consumes the run directory's segment artifact (computing it first when missing), holds out
``train_rm.eval_fraction`` of the pairs, and trains backbone + value head with the Bradley-Terry loss
on aggregated segment rewards. Chosen and rejected responses of a micro-batch share one forward pass.
Outputs: ``model/`` (transformers folder + tokenizer + segtool_rm.json), ``metrics.parquet`` (one row per
step), ``split.parquet`` (row_id -> train/eval). Resumable from ``checkpoint-NNNNNN/`` folders.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segtool.artifacts.manifest import RunDir, artifact_id
from segtool.artifacts.tables import load_segments
from segtool.config.loader import config_to_dict, identity_view
from segtool.config.schema import Config
from segtool.console import STDERR, progress
from segtool.errors import ConfigError
from segtool.models.precision import make_autocast
from segtool.models.precision import no_autocast as _no_autocast
from segtool.models.rm_batches import collate, micro_batches, pairs_from_segments, sequence_scores
from segtool.pipeline import segment
from segtool.pipeline.common import StageResult, already_complete, exclusive_stage

STAGE = "train-rm"
SCHEMA_VERSION = 1


@dataclass
class Plan:
    art_id: str
    identity_config: dict
    parent: str


def plan(cfg: Config) -> Plan:
    parent = segment.plan(cfg).art_id
    ident = {**identity_view(cfg, ("train_rm",)), "seed": cfg.run.seed}
    return Plan(artifact_id(STAGE, ident, [parent], SCHEMA_VERSION), ident, parent)


# -- data ---------------------------------------------------------------------------------------


def split_rows(n: int, eval_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (train, eval) positions, both sorted; at least one pair in each."""
    if n < 2:
        raise ConfigError(f"train-rm needs at least 2 preference pairs, got {n}", "give more data (data.max_rows)")
    perm = np.random.default_rng(seed).permutation(n)
    n_eval = min(max(1, round(eval_fraction * n)), n - 1)
    return np.sort(perm[n_eval:]), np.sort(perm[:n_eval])


# -- model math ---------------------------------------------------------------------------------


def pair_loss(rm, pairs, idx, cfg_rm, pad_id, device, autocast):
    """Bradley-Terry loss of pairs ``idx`` with chosen and rejected in one forward pass."""
    from segtool.core.rewards import bradley_terry

    batch = collate([pairs[i][0] for i in idx] + [pairs[i][1] for i in idx], pad_id)
    with autocast():
        e = sequence_scores(rm, batch, cfg_rm.readout, cfg_rm.aggregation, device)
    loss, acc, margin = bradley_terry(e[: len(idx)], e[len(idx) :], cfg_rm.margin)
    return loss, acc, margin, batch["tokens"]


def evaluate(rm, pairs, indices, cfg_rm, pad_id, device, autocast, micro: int) -> dict:
    """Pairwise accuracy, mean margin and loss over ``indices`` (no gradients)."""
    import torch

    rm.eval()
    totals = np.zeros(3)
    with torch.no_grad():
        for idx in micro_batches(pairs, np.asarray(indices), micro):
            loss, acc, margin, _ = pair_loss(rm, pairs, idx, cfg_rm, pad_id, device, autocast)
            totals += np.array([loss.item(), acc.item(), margin.item()]) * len(idx)
    loss, acc, margin = totals / max(len(indices), 1)
    return {"pairs": int(len(indices)), "accuracy": float(acc), "mean_margin": float(margin), "loss": float(loss)}


# -- optimisation backends ----------------------------------------------------------------------


class LocalBackend:
    """Single process: accumulate weighted micro-batch gradients, clip, step."""

    def __init__(self, rm, opt, sched, c):
        self.model, self.opt, self.sched, self.clip = rm, opt, sched, c.grad_clip
        self.rank, self.world = 0, 1

    def backward(self, loss, weight: float) -> None:
        (loss * weight).backward()

    def finish_step(self) -> float:
        import torch

        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip if self.clip > 0 else float("inf"))
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        return float(norm)

    def save(self, rundir, art_id, step, metrics) -> None:
        save_checkpoint(rundir, art_id, step, self.model, self.opt, self.sched, metrics)

    def load(self, rundir, record):
        return load_checkpoint(rundir, record, self.model, self.opt, self.sched)

    def full_weights(self):
        import contextlib

        return contextlib.nullcontext()


class DeepSpeedBackend:
    """Data parallel under a launcher: DeepSpeed averages gradients over accumulation steps and
    ranks (so each micro-batch passes its plain mean loss) and steps at the accumulation boundary."""

    def __init__(self, rm, opt, sched, c, bf16: bool):
        import deepspeed

        from segtool import distributed

        self.rank, self.world, self.stage = distributed.rank(), distributed.world(), c.zero_stage
        config = distributed.deepspeed_config(c, self.world, bf16)
        if c.zero_stage == 3 and config["gradient_accumulation_steps"] > 1 and distributed.is_main():
            STDERR.print(
                "[yellow]warning:[/] ZeRO-3 with gradient accumulation did not reproduce single-process gradients "
                "in segtool's tests (DeepSpeed 0.19, gloo: half the gradient norm; see DeepSpeed issue #1488); "
                "ZeRO-0/1/2 with accumulation, and ZeRO-3 without it, match. Check on your cluster, or pick "
                "micro_batch x processes = global_batch.", highlight=False)
        self.engine, self.opt, _, self.sched = deepspeed.initialize(model=rm, optimizer=opt, lr_scheduler=sched, config=config)
        self.model = self.engine.module

    def backward(self, loss, weight: float) -> None:
        self.engine.backward(loss)
        self.engine.step()

    def finish_step(self) -> float:
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    def save(self, rundir, art_id, step, metrics) -> None:
        from segtool import distributed

        name = f"checkpoint-{step:06d}"
        record = rundir.get(art_id)
        folder = rundir.path_of(record, name)
        self.engine.save_checkpoint(str(folder), tag="ds", client_state={"step": step, "metrics": metrics})
        distributed.barrier()
        if distributed.is_main():
            old = _checkpoint_names(rundir.get(art_id))
            for f in sorted(p for p in folder.rglob("*") if p.is_file()):
                rundir.add_file(art_id, f"{name}/{f.relative_to(folder).as_posix()}")
            _drop_checkpoints(rundir, art_id, [n for n in old if n != name])
        distributed.barrier()

    def load(self, rundir, record):
        names = _checkpoint_names(record)
        if not names:
            return 0, []
        _, state = self.engine.load_checkpoint(str(rundir.path_of(record, names[-1])), tag="ds")
        return state["step"], state["metrics"]

    def full_weights(self):
        """Every parameter materialised on every rank (ZeRO-3 shards them)."""
        import contextlib

        import deepspeed

        if self.stage < 3:
            return contextlib.nullcontext()
        return deepspeed.zero.GatheredParameters(list(self.model.parameters()), modifier_rank=None)


# -- checkpoints --------------------------------------------------------------------------------


def _checkpoint_names(record: dict) -> list[str]:
    return sorted({n.split("/")[0] for n in record["files"] if n.startswith("checkpoint-")})


def save_checkpoint(rundir: RunDir, art_id: str, step: int, rm, opt, sched, metrics: list[dict]) -> None:
    """Write checkpoint-<step>/ (model weights + optimiser/scheduler/RNG state), record it, then
    drop the previous one: a kill at any point leaves one intact, recorded checkpoint."""
    import torch
    from safetensors.torch import save_file

    from segtool.artifacts.files import atomic_path

    record = rundir.get(art_id)
    name = f"checkpoint-{step:06d}"
    folder = rundir.path_of(record, name)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in rm.state_dict().items()}, str(tmp))
    with atomic_path(folder / "state.pt") as tmp:
        torch.save({"step": step, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "metrics": metrics, "rng": torch.get_rng_state()}, tmp)
    for f in ("model.safetensors", "state.pt"):
        rundir.add_file(art_id, f"{name}/{f}")
    _drop_checkpoints(rundir, art_id, [n for n in _checkpoint_names(rundir.get(art_id)) if n != name])


def _drop_checkpoints(rundir: RunDir, art_id: str, names: list[str]) -> None:
    """Forget, then delete, whole checkpoint folders."""
    record = rundir.get(art_id)
    rundir.remove_files(art_id, [f for f in record["files"] if f.split("/")[0] in names])
    for n in names:
        shutil.rmtree(rundir.path_of(record, n), ignore_errors=True)


def load_checkpoint(rundir: RunDir, record: dict, rm, opt, sched) -> tuple[int, list[dict]]:
    import torch
    from safetensors.torch import load_file

    names = _checkpoint_names(record)
    if not names:
        return 0, []
    folder = rundir.path_of(record, names[-1])
    rm.load_state_dict(load_file(str(folder / "model.safetensors")))
    state = torch.load(folder / "state.pt", weights_only=True)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    return state["step"], state["metrics"]


# -- the stage ----------------------------------------------------------------------------------


@exclusive_stage(STAGE)
def run(cfg: Config, *, resume: bool = False, force: bool = False, quiet: bool = False) -> StageResult:
    import torch

    from segtool import distributed
    from segtool.core.schedule import warmup_cosine
    from segtool.models.loading import load_causal_lm, load_tokenizer, pick_device, resolve_model_source
    from segtool.models.reward import build_from_causal_lm

    started = time.perf_counter()
    parallel = distributed.launched()
    device = distributed.local_device(pick_device(cfg.model.device))
    if parallel:
        distributed.init(device)
    main = distributed.is_main()
    quiet = quiet or not main
    # Segments on the fly when missing (a no-op otherwise); only rank 0 writes the run directory.
    seg = segment.run(cfg, resume=True, quiet=quiet) if main else None
    distributed.barrier()
    seg = seg or segment.run(cfg, resume=True, quiet=True)  # other ranks: now an up-to-date no-op
    rundir = RunDir(cfg.run.workdir)
    the_plan = plan(cfg)
    full_config = config_to_dict(cfg)
    done = already_complete(rundir, STAGE, the_plan.art_id, full_config, force, main)
    if done:
        return done

    _, table = load_segments(rundir)
    row_ids, pairs = pairs_from_segments(table)
    train_idx, eval_idx = split_rows(len(pairs), cfg.train_rm.eval_fraction, cfg.run.seed)
    c = cfg.train_rm
    # DeepSpeed needs full global batches: there the last partial one of an epoch is dropped.
    steps_per_epoch = len(train_idx) // c.global_batch if parallel else math.ceil(len(train_idx) / c.global_batch)
    if steps_per_epoch == 0:
        raise ConfigError(f"{len(train_idx)} training pairs do not fill one global batch of {c.global_batch}",
                          "lower train_rm.global_batch or give more data")
    total = steps_per_epoch * c.epochs if not c.max_steps else min(c.max_steps, steps_per_epoch * c.epochs)

    source = resolve_model_source(cfg.model)
    tokenizer = load_tokenizer(source, cfg.model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    torch.manual_seed(cfg.run.seed)
    rm = build_from_causal_lm(load_causal_lm(source, cfg.model, device), pad_id,
                              attention=c.aggregation == "attention", seed=cfg.run.seed)
    if c.gradient_checkpointing:
        _enable_checkpointing(rm.hf)
    autocast = make_autocast(c, device)
    opt = torch.optim.AdamW(rm.parameters(), lr=c.lr, betas=(c.adam_beta1, c.adam_beta2), weight_decay=c.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, total, c.warmup_ratio, c.min_lr_ratio))
    if parallel:  # DeepSpeed handles bf16 itself (bf16 weights, fp32 master copy) instead of autocast
        backend = DeepSpeedBackend(rm, opt, sched, c, bf16=autocast is not _no_autocast)
        autocast = _no_autocast
    else:
        backend = LocalBackend(rm, opt, sched, c)

    prior = rundir.get(the_plan.art_id)
    resuming = resume and prior is not None and prior["status"] == "partial"
    if main:
        rundir.begin(
            STAGE, the_plan.art_id, config=full_config, identity_config=the_plan.identity_config, parents=[seg.artifact_id],
            schema_version=SCHEMA_VERSION, resume=resume, layout={"steps": total, "world_size": distributed.world()},
            inputs={"model": segment.plan(cfg).inputs["model"], "train_pairs": int(len(train_idx)), "eval_pairs": int(len(eval_idx))},
        )
    distributed.barrier()
    record = rundir.get(the_plan.art_id)
    start, metrics = 0, []
    if resuming:
        rundir.verify(record)
        start, metrics = backend.load(rundir, record)
        if main:
            STDERR.print(f"resuming {STAGE} at step {start} of {total}")

    _train(backend, pairs, train_idx, c, pad_id, device, autocast, start, total, steps_per_epoch,
           cfg.run.seed, metrics, rundir, the_plan.art_id, quiet)
    evaluation = evaluate(backend.model, pairs, eval_idx, c, pad_id, device, autocast, c.micro_batch)
    with backend.full_weights():
        if main:
            _write_outputs(rundir, the_plan.art_id, backend.model, tokenizer, cfg, seg, metrics, row_ids, train_idx)
    distributed.barrier()
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
    if main:
        rundir.complete(the_plan.art_id, rows={"pairs": len(pairs), "steps": total}, metrics=final,
                        seconds=time.perf_counter() - started)
    distributed.barrier()
    record = rundir.get(the_plan.art_id)
    return StageResult(STAGE, the_plan.art_id, "resumed" if resuming else "computed", str(rundir.root), record, final)


def _enable_checkpointing(hf_model) -> None:
    """Activation checkpointing (transformers >= 5 renamed it; older versions have the old name)."""
    if hasattr(hf_model, "activation_checkpointing_enable"):
        hf_model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        hf_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _train(backend, pairs, train_idx, c, pad_id, device, autocast, start, total, steps_per_epoch, seed,
           metrics, rundir, art_id, quiet):
    from segtool import distributed

    backend.model.train()
    with progress(quiet, total, "train-rm", unit="steps", done=start) as advance:
        for step in range(start, total):
            epoch, k = divmod(step, steps_per_epoch)
            order = train_idx[np.random.default_rng([seed, epoch]).permutation(len(train_idx))]  # fixed per epoch
            batch_idx = order[k * c.global_batch : (k + 1) * c.global_batch]
            t0 = time.perf_counter()
            sums = [0.0, 0.0, 0.0, 0.0]  # loss, accuracy, margin (pair-weighted), tokens
            lr = backend.opt.param_groups[0]["lr"]
            # Each rank takes every world-th micro-batch of the (length-grouped) global batch.
            for idx in micro_batches(pairs, batch_idx, c.micro_batch)[backend.rank :: backend.world]:
                loss, acc, margin, n_tok = pair_loss(backend.model, pairs, idx, c, pad_id, device, autocast)
                backend.backward(loss, len(idx) / len(batch_idx))
                for j, v in enumerate((loss.item(), acc.item(), margin.item())):
                    sums[j] += v * len(idx)
                sums[3] += n_tok
            grad_norm = backend.finish_step()
            loss_s, acc_s, margin_s, tokens = distributed.all_sum(sums)
            seconds = time.perf_counter() - t0
            metrics.append({"step": step + 1, "loss": loss_s / len(batch_idx), "accuracy": acc_s / len(batch_idx),
                            "margin": margin_s / len(batch_idx), "lr": float(lr), "grad_norm": grad_norm,
                            "tokens": int(tokens), "seconds": seconds, "tokens_per_s": tokens / seconds})
            advance(1)
            if c.checkpoint_every and (step + 1) % c.checkpoint_every == 0 and step + 1 < total:
                backend.save(rundir, art_id, step + 1, metrics)


def sft_source(model_cfg) -> dict:
    """The pi_SFT the RM was trained from, as ModelConfig keys: a local path made absolute."""
    from segtool.models.loading import resolve_model_source

    source = resolve_model_source(model_cfg)
    if source.kind == "hub":
        return {"path": source.location, "revision": source.revision, "gguf_file": source.gguf_file}
    return {"path": str(Path(source.location).resolve()), "revision": "main", "gguf_file": source.gguf_file}


def _write_outputs(rundir, art_id, rm, tokenizer, cfg, seg, metrics, row_ids, train_idx) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from segtool.artifacts.files import atomic_path
    from segtool.models.reward import save_reward_model

    record = rundir.get(art_id)
    seg_cfg = seg.record["config"]["segment"]
    metadata = {
        "segment_artifact": seg.artifact_id,
        "sft_model": segment.plan(cfg).inputs["model"],  # entropies for new text must come from this model
        "sft_model_source": sft_source(cfg.model),  # where to load it from (segtool.reward_model.load)
        "strategy": seg_cfg["strategy"], "c_ent": seg_cfg["c_ent"], "n": seg_cfg["n"],
        "eos_in_last_segment": seg_cfg["eos_in_last_segment"],
        "readout": cfg.train_rm.readout, "aggregation": cfg.train_rm.aggregation,
        "template": seg.record["inputs"]["tokenizer"]["template"],
        "max_len": cfg.tokenize.max_len, "max_prompt_len": cfg.tokenize.max_prompt_len,
    }
    staging = rundir.path_of(record, "model.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    save_reward_model(rm, tokenizer, staging, metadata)
    final = rundir.path_of(record, "model")
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    for f in sorted(p for p in final.rglob("*") if p.is_file()):
        rundir.add_file(art_id, f"model/{f.relative_to(final).as_posix()}")
    with atomic_path(rundir.path_of(record, "metrics.parquet")) as tmp:
        pq.write_table(pa.Table.from_pylist(metrics), tmp)
    train_rows = set(row_ids[train_idx].tolist())
    split = pa.table({"row_id": pa.array(row_ids, pa.int64()),
                      "split": pa.array(["train" if r in train_rows else "eval" for r in row_ids.tolist()])})
    with atomic_path(rundir.path_of(record, "split.parquet")) as tmp:
        pq.write_table(split, tmp)
    for name in ("metrics.parquet", "split.parquet"):
        rundir.add_file(art_id, name)
    _drop_checkpoints(rundir, art_id, _checkpoint_names(rundir.get(art_id)))  # the final model supersedes them
