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

from segtool.artifacts.manifest import RunDir, artifact_id
from segtool.artifacts.tables import load_segments
from segtool.config.loader import config_to_dict, identity_view
from segtool.config.schema import Config
from segtool.console import STDERR, progress
from segtool.errors import ArtifactError, ConfigError
from segtool.pipeline import policy_train as pt
from segtool.pipeline import segment, train_rm
from segtool.pipeline.common import StageResult, already_complete, exclusive_stage

STAGE = "dpo"
SCHEMA_VERSION = 1


@dataclass
class Plan:
    art_id: str
    identity_config: dict
    parents: list[str]


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
            folder = str(pt.rm_folder_of(rundir, train_rm.plan(cfg).art_id))
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
    return Plan(artifact_id(STAGE, ident, parents, SCHEMA_VERSION), ident, parents)


# -- data ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    prompt: list[int]
    response: list[int]
    keep: np.ndarray  # [n] float32 loss mask over response tokens (all ones for plain DPO)


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


def micro_batches(pairs, indices: np.ndarray, size: int) -> list[np.ndarray]:
    lengths = np.array([max(len(p[0].prompt) + len(p[0].response), len(p[1].prompt) + len(p[1].response)) for p in
                        (pairs[i] for i in indices)])
    ordered = indices[np.argsort(-lengths, kind="stable")]
    return [ordered[k : k + size] for k in range(0, len(ordered), size)]


def pair_loss(policy, ref, pairs, idx, c, pad_id: int, device: str, autocast, chunk: int) -> dict:
    """DPO loss of pairs ``idx`` (chosen and rejected in one forward pass of each model)."""
    import torch

    from segtool.core.dpo import dpo_loss, masked_sums
    from segtool.models.policy import logprobs, pack

    sides = [pairs[i][0] for i in idx] + [pairs[i][1] for i in idx]
    batch = pack([s.prompt for s in sides], [s.response for s in sides], pad_id).to(device)
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


@exclusive_stage(STAGE)
def run(cfg: Config, *, resume: bool = False, force: bool = False, quiet: bool = False) -> StageResult:
    import torch

    from segtool.models.loading import pick_device

    started = time.perf_counter()
    _check(cfg)
    c = cfg.dpo
    train_rm.run(cfg, resume=True, quiet=quiet)  # segments and trains the reward model first when missing
    seg_id = segment.plan(cfg).art_id
    if c.mask == "adaptive":
        if cfg.segment.adaptive_source == "dpo" and not cfg.segment.adaptive_model:
            run(plain(cfg), resume=True, quiet=quiet)  # the implicit-reward source: plain DPO, same settings
        seg_id = segment.run(adaptive_config(cfg), resume=True, quiet=quiet).artifact_id
    rundir = RunDir(cfg.run.workdir)
    the_plan = plan(cfg)
    full_config = config_to_dict(cfg)
    done = already_complete(rundir, STAGE, the_plan.art_id, full_config, force)
    if done:
        return done

    _, table = load_segments(rundir, art_id=seg_id)
    row_ids, pairs = pairs_from_table(table, c.mask == "adaptive")
    train_idx, eval_idx = pt.split_heldout(len(pairs), c.eval_prompts, cfg.run.seed, "dpo.eval_prompts")
    train_idx = np.sort(train_idx)
    steps_per_epoch = math.ceil(len(train_idx) / c.global_batch)
    total = steps_per_epoch * c.epochs if not c.max_steps else min(c.max_steps, steps_per_epoch * c.epochs)

    device = pick_device(cfg.model.device)
    policy, ref, tokenizer, _ = pt.load_models(cfg, device)
    if c.gradient_checkpointing:
        train_rm._enable_checkpointing(policy)
    rm_id = train_rm.plan(cfg).art_id
    scorer, _ = pt.eval_scorer(cfg, pt.rm_folder_of(rundir, rm_id), ref, tokenizer, device, c.max_new_tokens,
                               "dpo.max_new_tokens")
    autocast = pt.make_autocast(c, device)
    torch.manual_seed(cfg.run.seed)
    opt, sched = pt.optimiser(policy, c, total)

    prior = rundir.get(the_plan.art_id)
    resuming = resume and prior is not None and prior["status"] == "partial"
    record = rundir.begin(
        STAGE, the_plan.art_id, config=full_config, identity_config=the_plan.identity_config, parents=the_plan.parents,
        schema_version=SCHEMA_VERSION, resume=resume, layout={"steps": total},
        inputs={"model": segment.plan(cfg).inputs["model"], "reward_model": rm_id, "pairs_from": seg_id,
                "train_pairs": int(len(train_idx)), "eval_prompts": int(len(eval_idx))},
    )
    pt.clean_unrecorded(rundir, record)
    start, metrics = 0, []
    state = pt.load_checkpoint(rundir, record, policy, opt, sched) if resuming else None
    if state is not None:
        start, metrics = state["step"], state["metrics"]
        STDERR.print(f"resuming {STAGE} at step {start} of {total}")

    pad_id = pt.pad_id_of(tokenizer)
    _train(policy, ref, pairs, train_idx, c, pad_id, device, autocast, opt, sched, start, total, steps_per_epoch,
           cfg, metrics, rundir, the_plan.art_id, quiet)
    evaluation = _evaluate(policy, ref, scorer, [pairs[i][0].prompt for i in eval_idx], c, cfg.run.seed, device, autocast)
    mask_stats = kept_fractions(pairs, train_idx)
    meta = {"stage": STAGE, "beta": c.beta, "label_smoothing": c.label_smoothing, "mask": c.mask,
            "reference_model": segment.plan(cfg).inputs["model"], "reward_model": rm_id, "pairs_from": seg_id,
            "steps": total}
    _write_outputs(rundir, the_plan.art_id, policy, tokenizer, meta, metrics, evaluation)
    final = {"steps": total, "train_pairs": int(len(train_idx)),
             "loss_last": round(metrics[-1]["loss"], 6) if metrics else None,
             "accuracy_last": round(metrics[-1]["accuracy"], 4) if metrics else None,
             **mask_stats, "eval_prompts": int(len(eval_idx)),
             **pt.summary_of(evaluation["before"], "before"), **pt.summary_of(evaluation["after"], "after")}
    rundir.complete(the_plan.art_id, rows={"pairs": len(pairs), "steps": total}, metrics=final,
                    seconds=time.perf_counter() - started)
    record = rundir.get(the_plan.art_id)
    return StageResult(STAGE, the_plan.art_id, "resumed" if resuming else "computed", str(rundir.root), record, final)


def kept_fractions(pairs, train_idx) -> dict:
    """Share of training response tokens the loss sees (1 for plain DPO) and its complement."""
    kept = {side: sum(float(pairs[i][k].keep.sum()) for i in train_idx) for k, side in enumerate(("chosen", "rejected"))}
    tokens = {side: sum(len(pairs[i][k].keep) for i in train_idx) for k, side in enumerate(("chosen", "rejected"))}
    total_kept, total = sum(kept.values()), sum(tokens.values())
    return {"masked_fraction": round(1 - total_kept / total, 4),
            "chosen_kept_fraction": round(kept["chosen"] / tokens["chosen"], 4),
            "rejected_kept_fraction": round(kept["rejected"] / tokens["rejected"], 4)}


def _train(policy, ref, pairs, train_idx, c, pad_id, device, autocast, opt, sched, start, total, steps_per_epoch,
           cfg, metrics, rundir, art_id, quiet) -> None:
    chunk = cfg.segment.chunk_size
    policy.train()
    with progress(quiet, total, f"dpo ({c.mask})", unit="steps", done=start) as advance:
        for step_no in range(start, total):
            epoch, k = divmod(step_no, steps_per_epoch)
            order = train_idx[np.random.default_rng([cfg.run.seed, epoch]).permutation(len(train_idx))]
            batch_idx = order[k * c.global_batch : (k + 1) * c.global_batch]
            t0 = time.perf_counter()
            lr = opt.param_groups[0]["lr"]
            sums = dict.fromkeys(("loss", "accuracy", "chosen_reward", "rejected_reward"), 0.0)
            tokens = 0
            for idx in micro_batches(pairs, batch_idx, c.micro_batch):
                out = pair_loss(policy, ref, pairs, idx, c, pad_id, device, autocast, chunk)
                (out["loss"].mean() * (len(idx) / len(batch_idx))).backward()
                for key in sums:
                    sums[key] += float(out[key].detach().sum())
                tokens += out["tokens"]
            grad_norm = pt.step(policy, opt, sched, c.grad_clip)
            seconds = time.perf_counter() - t0
            row = {"step": step_no + 1, **{key: v / len(batch_idx) for key, v in sums.items()}}
            row.update(margin=row["chosen_reward"] - row["rejected_reward"], lr=float(lr), grad_norm=grad_norm,
                       tokens=tokens, seconds=seconds, tokens_per_s=tokens / seconds)
            metrics.append(row)
            advance(1)
            if c.checkpoint_every and (step_no + 1) % c.checkpoint_every == 0 and step_no + 1 < total:
                pt.save_checkpoint(rundir, art_id, step_no + 1, policy, opt, sched, {"metrics": metrics})
    policy.eval()


def _evaluate(policy, ref, scorer, prompts, c, seed, device, autocast) -> dict:
    """Held-out reward of pi_SFT (the reference) and of the trained policy, same prompts and seeds."""
    from segtool.pipeline.policy_eval import heldout_reward

    def of(model):
        return heldout_reward(model, scorer, prompts, max_new_tokens=c.max_new_tokens, temperature=c.temperature,
                              top_p=c.top_p, seed=seed, device=device, autocast=autocast,
                              generate_batch=c.generate_batch, forward_batch=c.forward_batch)

    return {"before": of(ref), "after": of(policy)}


def _write_outputs(rundir, art_id, policy, tokenizer, meta, metrics, evaluation) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from segtool.artifacts.files import atomic_path, atomic_write_json

    pt.write_policy(rundir, art_id, policy, tokenizer, meta)
    record = rundir.get(art_id)
    with atomic_path(rundir.path_of(record, "metrics.parquet")) as tmp:
        pq.write_table(pa.Table.from_pylist(metrics), tmp)
    atomic_write_json(rundir.path_of(record, "eval.json"), evaluation)
    for name in ("metrics.parquet", "eval.json"):
        rundir.add_file(art_id, name)
    pt.drop_checkpoints(rundir, art_id)  # the final policy supersedes them
