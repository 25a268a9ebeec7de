"""DPO vs ADPO and RS vs ARS on the tiny preset: held-out reward of the resulting policies and the
share of tokens the adaptive mask removes, over several seeds, with a larger re-evaluation than the
stages' own (one sample per held-out prompt).

Per seed (``run.seed``: the RM's split and init, the held-out prompts, data order and sampling):
train-rm, then the presets tiny-dpo, tiny-adpo, tiny-rs and tiny-ars in one run directory; then
pi_SFT and each trained policy answer every held-out prompt ``--samples`` times (seeded, the same
seeds for every policy) and the run directory's reward model scores the answers (its own
segmentation and aggregation). Prints one row per method and seed, and the mean over seeds.

    OMP_NUM_THREADS=1 python benchmarks/align_tiny.py --seeds 0 1 2 --samples 8
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

METHODS = (("DPO", "dpo", "tiny-dpo"), ("ADPO", "dpo", "tiny-adpo"), ("RS", "rs", "tiny-rs"), ("ARS", "rs", "tiny-ars"))


def heldout_prompts(cfg, meta, tokenizer):
    from segtool.inputs.formatting import Encoder
    from segtool.inputs.prompts import read_prompts
    from segtool.pipeline.policy_eval import split_heldout

    encoder = Encoder.create(tokenizer, meta["max_len"], meta["max_prompt_len"], "auto" if meta["template"] == "chat" else "plain")
    rows, _ = read_prompts(cfg.data.path, max_rows=cfg.data.max_rows)
    _, eval_idx = split_heldout(len(rows), cfg.dpo.eval_prompts, cfg.run.seed, "dpo.eval_prompts")
    return [encoder.encode_prompt(rows[i].messages) for i in eval_idx]


def evaluate(model, scorer, prompts, samples: int, seed: int, max_new_tokens: int) -> np.ndarray:
    """Rewards of ``samples`` answers per prompt (prompt-major), one array."""
    import torch

    from segtool.models.generation import generate, hash_seed
    from segtool.models.policy import pack
    from segtool.pipeline.ppo_rollout import score_batch

    repeated = [p for p in prompts for _ in range(samples)]
    gen = generate(model, repeated, eos_id=scorer.eos_id, pad_id=scorer.pad_id, max_new_tokens=max_new_tokens,
                   temperature=1.0, top_p=1.0, min_new_tokens=2, batch_size=64, seed=hash_seed(seed, 10_000),
                   force_eos=True)
    out = torch.zeros(len(repeated))
    for s in range(0, len(repeated), 32):
        idx = list(range(s, min(s + 32, len(repeated))))
        batch = pack([repeated[i] for i in idx], [gen.responses[i] for i in idx], scorer.pad_id)
        out[idx] = score_batch(scorer, batch, "cpu")["seq_reward"]
    return out.numpy().reshape(len(prompts), samples)


def stats(r: np.ndarray) -> dict:
    """Mean reward and its standard error over prompts (answers to one prompt are not independent)."""
    per_prompt = r.mean(axis=1)
    return {"reward": float(r.mean()), "se": float(per_prompt.std(ddof=1) / math.sqrt(per_prompt.size)), "n": int(r.size)}


def one_seed(seed: int, samples: int, root: Path) -> list[dict]:
    from transformers import AutoModelForCausalLM

    from segtool.artifacts.manifest import RunDir
    from segtool.config.loader import load_config
    from segtool.pipeline import dpo, rs, train_rm
    from segtool.pipeline.policy_eval import eval_scorer, rm_folder_of
    from segtool.training.loading import load_policy_and_reference

    workdir = root / f"seed-{seed}"

    def cfg_of(preset):
        return load_config(preset=preset, overrides=[f"run.seed={seed}"], workdir=str(workdir))[0]

    train_rm.run(cfg_of("tiny"), resume=True, quiet=True)
    results = {}
    for name, stage, preset in METHODS:
        t0 = time.perf_counter()
        module = dpo if stage == "dpo" else rs
        results[name] = (module.run(cfg_of(preset), resume=True, quiet=True), time.perf_counter() - t0)
    cfg = cfg_of("tiny-dpo")
    rundir = RunDir(workdir)
    policy, ref, tokenizer, _ = load_policy_and_reference(cfg, "cpu")
    scorer, meta = eval_scorer(cfg, rm_folder_of(rundir, train_rm.plan(cfg).art_id), ref, tokenizer, "cpu",
                               cfg.dpo.sampling.max_new_tokens, "dpo.sampling.max_new_tokens")
    prompts = heldout_prompts(cfg, meta, tokenizer)
    rows = []
    sft = evaluate(ref, scorer, prompts, samples, seed, cfg.dpo.sampling.max_new_tokens)
    rows.append({"seed": seed, "method": "pi_SFT", "masked": 0.0, "stage_after": results["DPO"][0].record["metrics"]["before_reward"],
                 **stats(sft), "kl": 0.0, "seconds": 0.0})
    for name, (result, seconds) in results.items():
        model = AutoModelForCausalLM.from_pretrained(rundir.path_of(result.record, "policy")).eval()
        r = evaluate(model, scorer, prompts, samples, seed, cfg.dpo.sampling.max_new_tokens)
        m = result.record["metrics"]
        rows.append({"seed": seed, "method": name, "masked": m["masked_fraction"], "stage_after": m["after_reward"],
                     **stats(r), "kl": m["after_kl"], "seconds": seconds})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--samples", type=int, default=8, help="answers per held-out prompt in the re-evaluation")
    parser.add_argument("--root", type=Path, default=Path("runs/align-bench"))
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    rows = [r for seed in args.seeds for r in one_seed(seed, args.samples, args.root)]
    print(f"{'seed':>4} {'method':<7} {'masked':>7} {'stage reward (1/prompt)':>24} "
          f"{'re-eval reward ± SE':>22} {'n':>5} {'KL':>6} {'train s':>8}")
    for r in rows:
        print(f"{r['seed']:>4} {r['method']:<7} {r['masked']:>7.3f} {r['stage_after']:>24.4f} "
              f"{r['reward']:>13.4f} ± {r['se']:.4f} {r['n']:>5} {r['kl']:>6.3f} {r['seconds']:>8.1f}")
    print("\nmean over seeds (re-evaluation):")
    for name in ["pi_SFT", *(m[0] for m in METHODS)]:
        vals = [r["reward"] for r in rows if r["method"] == name]
        masked = [r["masked"] for r in rows if r["method"] == name]
        spread = f" (seed std {np.std(vals, ddof=1):.4f})" if len(vals) > 1 else ""
        print(f"  {name:<7} reward {np.mean(vals):.4f}{spread}, masked {np.mean(masked):.3f}")
    for a, b in (("ADPO", "DPO"), ("ARS", "RS")):
        diffs = [ra["reward"] - rb["reward"] for ra in rows for rb in rows
                 if ra["method"] == a and rb["method"] == b and ra["seed"] == rb["seed"]]
        print(f"  {a} - {b}: per seed {', '.join(f'{d:+.4f}' for d in diffs)}")
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
