"""TRL 1.12 RewardTrainer timed on CPU, step by step: the peer side of `rm_vs_trl.py`.

Runs with the benchmark venv's python, never the project's: TRL is not a segtool dependency (see
`benchmarks/rm_vs_trl.py` for the install commands).

Input: a model folder (loaded by RewardTrainer itself from the path, as AutoModelForSequenceClassification
with num_labels=1 and TRL's default float32 weights) and a JSONL file of pre-tokenised pairs,
{"chosen_ids": [...], "rejected_ids": [...]} per line (prompt + response, EOS included), which
RewardTrainer uses as they are (no chat template, no EOS added, no re-tokenisation; max_length=None,
so nothing is filtered out).

    /work/cache/trl-venv/bin/python benchmarks/rm_trl_runner.py --model data/models/tinystories-656k \\
        --pairs trl-train-pairs.jsonl --steps 16 --batch 4 --lr 1e-5 --gradient-checkpointing on

Settings: per_device_train_batch_size = --batch pairs (chosen and rejected of a batch are one forward
pass of 2 x batch rows, right-padded to the longest), gradient_accumulation_steps 1, max_steps, AdamW
(transformers' default, `adamw_torch_fused`) at --lr with TRL's linear schedule, max_grad_norm 1.0,
bf16=True (on CPU: Accelerator native AMP, `torch.autocast("cpu", bfloat16)` around the model's
forward, float32 weights; `--bf16 off` for float32), gradient checkpointing per
--gradient-checkpointing (TRL's default is on), no evaluation, no saving, TRL's default logging.
The pad token is an existing non-EOS token (ppo_trl_runner.pick_pad), so the reward is read at the EOS.

Prints one JSON line on stdout (everything TRL prints goes to stderr): per step its wall time
(on_step_begin to on_step_end), non-pad tokens and padded tokens (rows x width of the collated batch);
the 2048^3 bf16 matmul FLOP/s measured before training; peak RSS; the dtype a linear layer produced in
training (`autocast_seen`: bfloat16 when autocast is on); the settings TRL ended up with.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ppo_trl_runner import pick_pad  # noqa: E402  (this directory is put on sys.path first)
from rm_vs_trl import matmul_flops, non_embedding_params, peak_rss_mib  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="time TRL 1.12 RewardTrainer on CPU, per step")
    ap.add_argument("--model", required=True, help="model folder (a causal LM; RewardTrainer adds the score head)")
    ap.add_argument("--pairs", required=True, help='JSONL with {"chosen_ids": [...], "rejected_ids": [...]} per line')
    ap.add_argument("--steps", type=int, required=True, help="optimiser steps (max_steps)")
    ap.add_argument("--batch", type=int, default=4, help="pairs per step (per_device_train_batch_size)")
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--bf16", choices=("on", "off"), default="on", help="bf16 mixed precision (TRL's default: on)")
    ap.add_argument("--gradient-checkpointing", choices=("on", "off"), default="on", help="TRL's default: on")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def read_pairs(path: str) -> list[dict]:
    with open(path) as fh:
        return [{k: json.loads(line)[k] for k in ("chosen_ids", "rejected_ids")} for line in fh if line.strip()]


def make_timer():
    """A TrainerCallback (transformers is imported late) that records each step's start and end."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.spans: list[list[float]] = []

        def on_step_begin(self, args, state, control, **kwargs):
            self.spans.append([time.perf_counter()])

        def on_step_end(self, args, state, control, **kwargs):
            self.spans[-1].append(time.perf_counter())

    return StepTimer()


def measured_trainer_class():
    """RewardTrainer recording, per loss computation, the collated batch's non-pad and padded tokens."""
    from trl import RewardTrainer

    class MeasuredRewardTrainer(RewardTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.batches: list[dict] = []

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if model.training:
                mask = inputs["attention_mask"]
                self.batches.append({"rows": mask.shape[0], "width": mask.shape[1], "tokens": int(mask.sum())})
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    return MeasuredRewardTrainer


def watch_linear_dtype(model) -> dict:
    """Record the dtype of the first output of the model's first nn.Linear (once, in training)."""
    import torch

    seen = {}
    linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))

    def hook(module, inputs, output):
        if module.training and "dtype" not in seen:
            seen["dtype"] = str(output.dtype).removeprefix("torch.")
            handle.remove()

    handle = linear.register_forward_hook(hook)
    return seen


def checkpointing_on(model) -> bool | None:
    """Whether the model really has activation checkpointing on (transformers 5 renamed the flag)."""
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):
        if hasattr(model, name):
            return bool(getattr(model, name))
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    real_stdout = sys.stdout
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("WANDB_DISABLED", "true")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

    with contextlib.redirect_stdout(sys.stderr):
        import torch
        import transformers
        import trl
        from datasets import Dataset
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging
        from trl import RewardConfig

        hf_logging.set_verbosity_error()
        peak_flops = matmul_flops()

        t_load = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        pick_pad(tokenizer)
        pairs = read_pairs(args.pairs)
        out_dir = tempfile.mkdtemp(prefix="trl-rm-bench-", dir=os.environ.get("TMPDIR"))
        config = RewardConfig(
            output_dir=out_dir,
            use_cpu=True,
            seed=args.seed,
            learning_rate=args.lr,
            per_device_train_batch_size=args.batch,
            gradient_accumulation_steps=1,
            max_steps=args.steps,
            max_grad_norm=1.0,
            bf16=args.bf16 == "on",
            gradient_checkpointing=args.gradient_checkpointing == "on",
            max_length=None,
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
            disable_tqdm=True,
            push_to_hub=False,
            dataloader_num_workers=0,
        )
        timer = make_timer()
        trainer = measured_trainer_class()(model=args.model, args=config, train_dataset=Dataset.from_list(pairs),
                                           processing_class=tokenizer, callbacks=[timer])
        model = trainer.model
        autocast_seen = watch_linear_dtype(model)
        load_seconds = time.perf_counter() - t_load

        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
    shutil.rmtree(out_dir, ignore_errors=True)

    batches = trainer.batches
    if len(batches) != len(timer.spans):
        raise SystemExit(f"{len(batches)} training batches for {len(timer.spans)} steps; expected one per step")
    steps = [{"seconds": end - begin, "tokens": b["tokens"], "padded_tokens": b["rows"] * b["width"],
              "rows": b["rows"], "width": b["width"]} for (begin, end), b in zip(timer.spans, batches)]
    result = {
        "framework": "trl",
        "trl_version": trl.__version__,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "steps": steps,
        "train_seconds": round(seconds, 3),
        "load_seconds": round(load_seconds, 3),
        "matmul_flops": peak_flops,
        "peak_rss_mib": peak_rss_mib(),
        "non_embedding_params": non_embedding_params(model),
        "autocast_seen": autocast_seen.get("dtype"),
        "config": {
            "model": args.model, "pairs": len(pairs), "batch": args.batch, "steps": args.steps, "lr": args.lr,
            "weights_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
            "mixed_precision": trainer.accelerator.mixed_precision, "bf16": config.bf16,
            "gradient_checkpointing": checkpointing_on(model),
            "optimizer": type(getattr(trainer.optimizer, "optimizer", trainer.optimizer)).__name__, "optim": str(config.optim),
            "threads": torch.get_num_threads(), "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
    }
    real_stdout.write(json.dumps(result) + "\n")
    real_stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
