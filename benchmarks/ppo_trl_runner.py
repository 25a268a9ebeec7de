"""TRL 1.12 PPO (`trl.experimental.ppo.PPOTrainer`) timed on CPU: the peer side of `ppo_vs_trl.py`.

Runs with the benchmark venv's python, never the project's: TRL is not a segtool dependency.

Benchmark venv (outside the repo; torch pinned through a constraints file so nothing pulls a CUDA torch;
transformers pinned to the project venv's version, which trl 1.12.0 accepts):

    python3 -m venv /work/cache/trl-venv
    printf 'torch==2.13.0\\ntransformers==5.23.0\\n' > /work/cache/trl-constraints.txt
    /work/cache/trl-venv/bin/pip install -c /work/cache/trl-constraints.txt \\
        torch==2.13.0 trl==1.12.0 transformers==5.23.0 accelerate datasets
    # resolved here: torch 2.13.0+cpu, trl 1.12.0, transformers 5.23.0, accelerate 1.15.0, datasets 5.2.0

Inputs: the policy/SFT folder (AutoModelForCausalLM), a reward-model folder
(AutoModelForSequenceClassification, num_labels=1: what `segtool train-rm` writes), and a JSONL file of
tokenised prompts ({"input_ids": [...]} per line; `benchmarks/ppo_prompts.py` writes it). The value
model is TRL's usual one: AutoModelForSequenceClassification from the SFT folder, num_labels=1, a
fresh randomly initialised `score` head. The reference policy is TRL's own copy of the policy.

    /work/cache/trl-venv/bin/python benchmarks/ppo_trl_runner.py --policy data/models/tinystories-656k \\
        --reward <rm folder> --prompts prompts.jsonl --response-length 48 --batch 16 --mini-batch 8 \\
        --iterations 3

Prints one JSON line on stdout (everything TRL prints goes to stderr):
{"episodes", "seconds" (wall time of trainer.train() only), "episodes_per_s", "iterations",
"load_seconds" (models, dataset and PPOTrainer construction), ...plus the config and a few of TRL's
own logged metrics of the last update}.

How B (episodes per update) and M (PPO mini-batch, one optimiser step each) map onto TRL 1.12
(read from trl/experimental/ppo/ppo_trainer.py, single process so world_size = 1):

* TRL's rollout batch is `local_batch_size = per_device_train_batch_size * gradient_accumulation_steps`
  and its mini-batch is `local_batch_size / num_mini_batches`; inside a mini-batch it runs
  forward/backward on micro-batches of `per_device_train_batch_size` rows under
  `accelerator.accumulate`, where the Accelerator steps the optimiser every
  `gradient_accumulation_steps` micro-batches (counted across mini-batches, not per mini-batch).
* So: per_device_train_batch_size = B, gradient_accumulation_steps = 1, num_mini_batches = B / M.
  Then local_batch_size = B, each mini-batch of M rows is ONE forward/backward (its micro-batch slice
  `[0:B]` takes all M rows) and, with accumulation 1, one optimiser step: B / M steps per update and
  num_ppo_epochs = 1. (The other mapping, per_device = M with accumulation B / M, makes the same
  forward/backward passes but only ONE optimiser step per update, because the accumulation counter
  runs across mini-batches.) The JSON's `optimizer_steps` counts real steps to confirm it.
* local_rollout_forward_batch_size (generation, reference, value and reward forwards of the rollout)
  defaults to B: one generate() call over the whole rollout batch (`--rollout-forward-batch` changes it).
* total_episodes = iterations * B, so num_total_batches = iterations.
* Fixed here: temperature 1.0 (TRL always samples with top_k=0, top_p=1.0: no truncation),
  kl_coef 0.01 (k1 estimator), cliprange 0.2, cliprange_value 0.2, vf_coef 0.1 (TRL default),
  gamma 1.0, lam 0.95, whiten_rewards False, advantages whitened (TRL always does), num_ppo_epochs 1,
  missing_eos_penalty None, stop_token "eos", num_sample_generations 0 (no sample/eval generations),
  no eval dataset, save_strategy "no", report_to "none", gradient_checkpointing off (TRL's PPO never
  enables it on the model anyway; `--gradient-checkpointing` turns it on for policy and value).
* Precision: `--dtype` is the weights' dtype of the trained models (policy, value), `--frozen-dtype`
  that of the frozen ones (reference policy, reward model; default: the same). When they are the same
  TRL makes the reference as its own copy of the policy; otherwise it is loaded separately in
  `--frozen-dtype` and passed as `ref_model`. `--autocast`: `none`; `train` = TRL's own bf16 path
  (Accelerator mixed precision: only the training forward of policy+value is autocast; note that
  PPOConfig's bf16=True default does not reach the Accelerator PPOTrainer builds with transformers
  5.x, so TRL's default is effectively fp32, and this option sets ACCELERATE_MIXED_PRECISION=bf16);
  `all` = `torch.autocast("cpu", bfloat16)` around `trainer.train()`: generation and every rollout and
  training forward, like segtool's `ppo.bf16` (fp32 trained weights, bf16 compute, bf16 frozen models
  when model.dtype is bfloat16).

Padding: TRL masks every token equal to pad_token_id (in prompts and responses). When the tokenizer
has no pad token, or pad == eos (SmolLM2-Instruct: both `<|im_end|>`, which also ends every chat turn
in the prompt), another existing special token that is not EOS is used as pad (`unk`, else `bos`), so
no embedding resize is needed; prompts containing the pad id are refused. Prompts are left-padded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="time TRL 1.12 PPOTrainer on CPU")
    ap.add_argument("--policy", required=True, help="SFT/policy model folder (AutoModelForCausalLM)")
    ap.add_argument("--reward", required=True, help="reward model folder (AutoModelForSequenceClassification, num_labels=1)")
    ap.add_argument("--prompts", required=True, help='JSONL with {"input_ids": [...]} per line')
    ap.add_argument("--response-length", "-L", type=int, required=True, help="max new tokens per response (L)")
    ap.add_argument("--batch", "-B", type=int, required=True, help="episodes per PPO update (rollout batch B)")
    ap.add_argument("--mini-batch", "-M", type=int, required=True, help="PPO mini-batch M (one optimiser step each)")
    ap.add_argument("--iterations", "-K", type=int, required=True, help="PPO updates; total_episodes = K * B")
    ap.add_argument("--rollout-forward-batch", type=int, default=0, help="local_rollout_forward_batch_size (0 = B)")
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="weights of policy and value (trained)")
    ap.add_argument("--frozen-dtype", choices=("same", "float32", "bfloat16"), default="same", help="weights of reference and reward model")
    ap.add_argument("--autocast", choices=("none", "train", "all"), default="none",
                    help="bf16 autocast: none, train (TRL/Accelerator mixed precision: training forward only), all (around train())")
    ap.add_argument("--gradient-checkpointing", action="store_true", help="enable it on policy and value backbones")
    ap.add_argument("--lr", type=float, default=1e-6, help="AdamW learning rate (speed does not depend on it)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = torch default)")
    ap.add_argument("--max-prompts", type=int, default=0, help="use only the first N prompts (0 = all)")
    args = ap.parse_args(argv)
    if args.batch % args.mini_batch:
        ap.error(f"--batch ({args.batch}) must be a multiple of --mini-batch ({args.mini_batch})")
    return args


def read_prompts(path: str, limit: int) -> list[list[int]]:
    prompts = []
    with open(path) as fh:
        for line in fh:
            if line.strip():
                prompts.append(json.loads(line)["input_ids"])
                if limit and len(prompts) >= limit:
                    break
    return prompts


def pick_pad(tokenizer) -> None:
    """Give the tokenizer a pad token that is an existing, non-EOS token (TRL masks pad ids everywhere)."""
    eos = tokenizer.eos_token_id
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != eos:
        return
    for name in ("unk_token", "bos_token"):
        tok = getattr(tokenizer, name)
        tid = getattr(tokenizer, name + "_id")
        if tok is not None and tid is not None and tid != eos:
            tokenizer.pad_token = tok
            return
    raise SystemExit("the tokenizer has no pad, unk or bos token distinct from EOS; add one to the model folder")


class _Recorder:
    """A TrainerCallback (built lazily, transformers is imported late) recording step times and logs."""

    @staticmethod
    def make():
        from transformers import TrainerCallback

        class Recorder(TrainerCallback):
            def __init__(self):
                self.step_times: list[float] = []
                self.last_logs: dict = {}

            def on_step_end(self, args, state, control, **kwargs):
                self.step_times.append(time.perf_counter())

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs:
                    self.last_logs = dict(logs)

        return Recorder()


def instrument_generation(eos_id: int) -> dict:
    """Time TRL's rollout generation and record response lengths (to the first EOS, inclusive).

    Wraps the module-level `batch_generation` that PPOTrainer.train() calls; measurement only."""
    import torch
    from trl.experimental.ppo import ppo_trainer

    stats = {"seconds": 0.0, "lengths": [], "widths": [], "prompt_widths": []}
    original = ppo_trainer.batch_generation

    def timed(model, queries, *args, **kwargs):
        t = time.perf_counter()
        query_responses, logits = original(model, queries, *args, **kwargs)
        stats["seconds"] += time.perf_counter() - t
        responses = query_responses[:, queries.shape[1] :]
        is_eos = responses == eos_id
        width = responses.shape[1]
        first = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, torch.full_like(is_eos[:, 0], width, dtype=torch.long))
        stats["lengths"].extend(first.tolist())
        stats["widths"].append(width)
        stats["prompt_widths"].append(queries.shape[1])
        return query_responses, logits

    ppo_trainer.batch_generation = timed
    return stats


def main(argv=None) -> int:
    args = parse_args(argv)
    real_stdout = sys.stdout
    if args.autocast == "train":
        os.environ["ACCELERATE_MIXED_PRECISION"] = "bf16"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("WANDB_DISABLED", "true")

    with contextlib.redirect_stdout(sys.stderr):
        import torch
        import trl
        from datasets import Dataset
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging
        from trl.experimental.ppo import PPOConfig, PPOTrainer

        hf_logging.set_verbosity_error()
        if args.threads:
            torch.set_num_threads(args.threads)
        torch.manual_seed(args.seed)
        dtype = getattr(torch, args.dtype)
        frozen_name = args.dtype if args.frozen_dtype == "same" else args.frozen_dtype
        frozen_dtype = getattr(torch, frozen_name)

        t_load = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(args.policy, padding_side="left")
        pick_pad(tokenizer)
        prompts = read_prompts(args.prompts, args.max_prompts)
        if len(prompts) < args.batch:
            raise SystemExit(f"{len(prompts)} prompts < batch {args.batch} (TRL drops the last partial batch)")
        bad = sum(tokenizer.pad_token_id in p for p in prompts)
        if bad:
            raise SystemExit(f"{bad} prompts contain the pad id {tokenizer.pad_token_id}; TRL would mask those tokens")
        dataset = Dataset.from_dict({"input_ids": prompts})

        policy = AutoModelForCausalLM.from_pretrained(args.policy, dtype=dtype)
        value = AutoModelForSequenceClassification.from_pretrained(args.policy, num_labels=1, dtype=dtype)
        reward = AutoModelForSequenceClassification.from_pretrained(args.reward, num_labels=1, dtype=frozen_dtype)
        # None: TRL deep-copies the policy (its usual setup); a separate load only for another dtype.
        ref = None if frozen_dtype == dtype else AutoModelForCausalLM.from_pretrained(args.policy, dtype=frozen_dtype)
        for m in (policy, value, reward) + ((ref,) if ref is not None else ()):
            m.config.pad_token_id = tokenizer.pad_token_id
        if args.gradient_checkpointing:
            policy.gradient_checkpointing_enable()
            value.gradient_checkpointing_enable()

        out_dir = tempfile.mkdtemp(prefix="trl-ppo-bench-", dir=os.environ.get("TMPDIR"))
        config = PPOConfig(
            output_dir=out_dir,
            use_cpu=True,
            seed=args.seed,
            learning_rate=args.lr,
            per_device_train_batch_size=args.batch,
            gradient_accumulation_steps=1,
            num_mini_batches=args.batch // args.mini_batch,
            local_rollout_forward_batch_size=args.rollout_forward_batch or args.batch,
            total_episodes=args.iterations * args.batch,
            num_ppo_epochs=1,
            response_length=args.response_length,
            temperature=1.0,
            stop_token="eos",
            missing_eos_penalty=None,
            kl_coef=0.01,
            kl_estimator="k1",
            cliprange=0.2,
            cliprange_value=0.2,
            gamma=1.0,
            lam=0.95,
            whiten_rewards=False,
            num_sample_generations=0,
            bf16=args.autocast == "train",
            gradient_checkpointing=False,
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
            logging_steps=1,
            disable_tqdm=True,
            push_to_hub=False,
            dataloader_num_workers=0,
        )
        recorder = _Recorder.make()
        trainer = PPOTrainer(
            args=config,
            processing_class=tokenizer,
            model=policy,
            ref_model=ref,
            reward_model=reward,
            train_dataset=dataset,
            value_model=value,
            callbacks=[recorder],
        )
        gen_stats = instrument_generation(tokenizer.eos_token_id)
        steps = {"n": 0}
        inner = trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
        inner.register_step_post_hook(lambda *a, **k: steps.__setitem__("n", steps["n"] + 1))
        load_seconds = time.perf_counter() - t_load

        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if args.autocast == "all" else contextlib.nullcontext()
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        with autocast:
            trainer.train()
        seconds = time.perf_counter() - t0

    episodes = config.num_total_batches * config.batch_size
    marks = [t0] + recorder.step_times
    logs = recorder.last_logs
    result = {
        "framework": "trl",
        "trl_version": trl.__version__,
        "torch_version": torch.__version__,
        "episodes": episodes,
        "seconds": round(seconds, 3),
        "episodes_per_s": round(episodes / seconds, 4),
        "iterations": config.num_total_batches,
        "loadavg_1m_before": round(load_before, 2),
        "load_seconds": round(load_seconds, 3),
        "iteration_seconds": [round(b - a, 3) for a, b in zip(marks, marks[1:])],
        # without the first update (one-off costs such as AdamW's state allocation); None for one update
        "episodes_per_s_after_first": (round(config.batch_size * (len(marks) - 2) / (marks[-1] - marks[1]), 4)
                                       if len(marks) > 2 else None),
        "optimizer_steps": steps["n"],
        "generate_seconds": round(gen_stats["seconds"], 3),
        "mean_response_len": round(sum(gen_stats["lengths"]) / max(len(gen_stats["lengths"]), 1), 2),
        "generated_widths": gen_stats["widths"],
        "prompt_widths": gen_stats["prompt_widths"],
        "optimizer": type(inner).__name__,
        "config": {
            "policy": args.policy, "reward": args.reward, "prompts": args.prompts, "n_prompts": len(prompts),
            "response_length": args.response_length, "B": args.batch, "M": args.mini_batch,
            "per_device_train_batch_size": config.per_device_train_batch_size,
            "gradient_accumulation_steps": config.gradient_accumulation_steps,
            "num_mini_batches": config.num_mini_batches, "local_mini_batch_size": config.local_mini_batch_size,
            "local_rollout_forward_batch_size": config.local_rollout_forward_batch_size,
            "dtype": args.dtype, "frozen_dtype": frozen_name, "autocast": args.autocast,
            "mixed_precision": trainer.accelerator.mixed_precision,
            "gradient_checkpointing": args.gradient_checkpointing,
            "threads": torch.get_num_threads(), "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        "last_update": {k: logs.get(k) for k in ("objective/scores", "objective/kl", "val/num_eos_tokens", "loss/policy_avg", "loss/value_avg", "eps") if k in logs},
    }
    real_stdout.write(json.dumps(result) + "\n")
    real_stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
