"""What the offline/online policy stages `dpo` and `rs` share: pi_SFT as the trained policy and as
the frozen reference, AdamW with warm-up + cosine, resumable checkpoints, the final policy folder,
held-out prompts (the same ones as PPO's) and the reward-model scorer for the held-out reward.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np

from segtool.artifacts.files import write_errors
from segtool.artifacts.manifest import RunDir
from segtool.config.schema import Config
from segtool.errors import ArtifactError, ConfigError
from segtool.pipeline.adaptive_rewards import POLICY_METADATA


def load_models(cfg: Config, device: str):
    """(trainable policy in float32, frozen reference in model.dtype, tokenizer, model source).

    The policy keeps float32 weights (bf16 is autocast only): small updates vanish in bf16 weights.
    """
    from segtool.models.loading import load_causal_lm, load_tokenizer, resolve_model_source

    source = resolve_model_source(cfg.model)
    tokenizer = load_tokenizer(source, cfg.model)
    ref = load_causal_lm(source, cfg.model, device)
    policy = load_causal_lm(source, dataclasses.replace(cfg.model, dtype="float32"), device)
    for p in ref.parameters():
        p.requires_grad_(False)
    return policy, ref, tokenizer, source


def pad_id_of(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def optimiser(model, c, total_steps: int):
    """AdamW (0.9, 0.95) and a LambdaLR warm-up + cosine to min_lr_ratio * lr over ``total_steps``."""
    import torch

    from segtool.core.schedule import warmup_cosine

    opt = torch.optim.AdamW(model.parameters(), lr=c.lr, betas=(0.9, 0.95), weight_decay=c.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, total_steps, c.warmup_ratio, c.min_lr_ratio))
    return opt, sched


def make_autocast(c, device: str):
    from segtool.models.precision import make_autocast as rm_autocast

    return rm_autocast(c, device)  # reads only c.bf16


def step(model, opt, sched, grad_clip: float) -> float:
    import torch

    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip > 0 else float("inf"))
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    return float(norm)


# -- per-token log-probs with the exact KL to the reference -------------------------------------


def _hidden(lm, batch):
    from segtool.models.entropy import split_causal_lm

    backbone, _ = split_causal_lm(lm)
    out = backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
    return (out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0])[batch.state_mask]


def logprobs_and_kl(policy, ref, batch, chunk_size: int):
    """(log pi(y_j) [N], KL(pi || pi_ref) at the state before y_j [N]) for every response token of a
    ``models.policy.Packed`` batch; differentiable in the policy only."""
    import torch

    from segtool.core.kl import token_logprobs_and_kl

    with torch.no_grad():
        ref_hidden = _hidden(ref, batch)
    head, ref_head = policy.get_output_embeddings(), ref.get_output_embeddings()
    return token_logprobs_and_kl(_hidden(policy, batch), head.weight, batch.targets, ref_hidden, ref_head.weight,
                                 chunk_size, getattr(policy.config, "final_logit_softcapping", None),
                                 getattr(head, "bias", None), getattr(ref_head, "bias", None))


# -- checkpoints --------------------------------------------------------------------------------


def checkpoint_names(record: dict) -> list[str]:
    return sorted({n.split("/")[0] for n in record["files"] if n.startswith("checkpoint-")})


def drop_checkpoints(rundir: RunDir, art_id: str, keep: str | None = None) -> None:
    """Forget, then delete, every checkpoint folder but ``keep``."""
    record = rundir.get(art_id)
    names = [n for n in checkpoint_names(record) if n != keep]
    rundir.remove_files(art_id, [f for f in record["files"] if f.split("/")[0] in names])
    for n in names:
        shutil.rmtree(rundir.path_of(record, n), ignore_errors=True)


def save_checkpoint(rundir: RunDir, art_id: str, step_no: int, policy, opt, sched, state: dict) -> None:
    """checkpoint-<step>/: policy weights (tied ones once), optimiser, scheduler, RNG and ``state``;
    recorded before the previous one is dropped, so one intact checkpoint always exists."""
    import torch
    from safetensors.torch import save_model

    from segtool.artifacts.files import atomic_path

    record = rundir.get(art_id)
    name = f"checkpoint-{step_no:06d}"
    folder = rundir.path_of(record, name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with atomic_path(folder / "policy.safetensors") as tmp:
        save_model(policy, str(tmp))
    with atomic_path(folder / "state.pt") as tmp:
        torch.save({"step": step_no, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "rng": torch.get_rng_state(), **state}, tmp)
    for f in ("policy.safetensors", "state.pt"):
        rundir.add_file(art_id, f"{name}/{f}")
    drop_checkpoints(rundir, art_id, keep=name)


def load_checkpoint(rundir: RunDir, record: dict, policy, opt, sched) -> dict | None:
    import torch
    from safetensors.torch import load_model

    names = checkpoint_names(record)
    if not names:
        return None
    folder = rundir.path_of(record, names[-1])
    load_model(policy, str(folder / "policy.safetensors"))
    state = torch.load(folder / "state.pt", weights_only=False)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    return state


def write_policy(rundir: RunDir, art_id: str, policy, tokenizer, metadata: dict) -> None:
    """policy/: a transformers causal-LM folder with the tokenizer and segtool_policy.json, staged
    then renamed so a kill never leaves a half-written policy/ recorded."""
    record = rundir.get(art_id)
    staging = rundir.path_of(record, "policy.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    with write_errors(staging):
        staging.mkdir(parents=True)
        policy.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / POLICY_METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
    final = rundir.path_of(record, "policy")
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    for f in sorted(p for p in final.rglob("*") if p.is_file()):
        rundir.add_file(art_id, f"policy/{f.relative_to(final).as_posix()}")


def clean_unrecorded(rundir: RunDir, record: dict) -> None:
    """Checkpoint folders and policy staging left by a kill mid-write (not in the record)."""
    root = rundir.path_of(record)
    for sub in [*root.glob("checkpoint-*"), root / "policy.tmp", root / "policy"]:
        if sub.is_dir() and not any(f.startswith(sub.name + "/") for f in record["files"]):
            shutil.rmtree(sub, ignore_errors=True)
        elif sub.is_dir():
            for p in sub.rglob("*"):
                if p.is_file() and p.relative_to(root).as_posix() not in record["files"]:
                    p.unlink()


# -- held-out prompts and their reward ----------------------------------------------------------


def split_heldout(n: int, n_eval: int, seed: int, key: str):
    """(train, held-out) positions: the same seeded split as PPO's, so every policy stage is
    evaluated on the same prompts."""
    from segtool.pipeline.ppo import split_prompts

    if n_eval >= n:
        raise ConfigError(f"{key} ({n_eval}) leaves no training rows out of {n}", f"lower {key} or give more data")
    return split_prompts(n, n_eval, seed)


def eval_scorer(cfg: Config, rm_folder, ref, tokenizer, device: str, max_new_tokens: int, key: str):
    """A PPO ``Scorer`` that reads only the raw sequence reward e(x, y) (RM's own segmentation and
    aggregation, no normaliser) and the reference log-probs: what ``policy_eval.heldout_reward`` needs."""
    import torch

    from segtool.core.boundaries import punct_table
    from segtool.core.normalizer import Normaliser
    from segtool.models.loading import DTYPES, resolve_model_source
    from segtool.models.reward import METADATA, load_reward_model
    from segtool.pipeline.ppo_rollout import Scorer, reward_spec

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
    return Scorer(ref, rm, Normaliser("none"), spec, table, pad_id_of(tokenizer), tokenizer.eos_token_id,
                  cfg.segment.chunk_size), meta


def rm_folder_of(rundir: RunDir, rm_id: str):
    record = rundir.get(rm_id)
    if record is None or record["status"] != "complete":
        raise ArtifactError(f"the train-rm artifact {rm_id[:12]} is missing in {rundir.root}",
                            f"run `segtool train-rm --workdir {rundir.root}` first")
    return rundir.path_of(record, "model")


def summary_of(evaluation: dict, prefix: str) -> dict:
    keys = ("reward", "reward_std", "length", "kl", "truncated")
    return {f"{prefix}_{k}": round(float(evaluation[k]), 4) for k in keys if k in evaluation}


def mean(values) -> float:
    return float(np.mean(values)) if len(values) else float("nan")
