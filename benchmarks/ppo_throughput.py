"""PPO rollout/training cost on this machine: per-iteration time split, forward passes per sample,
and generation speed against plain transformers ``generate`` on the same batch.

    python benchmarks/ppo_throughput.py                 # tiny and SmolLM2 (if prepared)
    python benchmarks/ppo_throughput.py --models tiny
    python benchmarks/ppo_throughput.py --packing auto    # only the default (packed) setting

By default each model runs twice on the same upstream artifacts and prompts, padded
(`ppo.packing = "off"`) and packed (`"auto"`), so the tables show before and after side by side.
SmolLM2 needs `python benchmarks/prepare_smollm2.py` once. Each model's upstream stages (segment,
train-rm on a few steps, fit-normalizer) run first in a scratch run directory; they are not timed.
Forward passes are counted with hooks on every model's backbone, outside generation: the target is
one each for policy, reference, reward and critic per sample.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PRESETS = {
    "tiny": ("tiny", ["ppo.rollout_batch=32", "ppo.train_batch=16", "ppo.sampling.max_new_tokens=48"]),
    "smollm2": ("smollm2", ["data.max_rows=48", "train_rm.max_steps=2", "train_rm.global_batch=8", "train_rm.micro_batch=4",
                            "normalizer.rows=\"all\"", "tokenize.max_len=1024", "tokenize.max_prompt_len=512",
                            "ppo.rollout_batch=8", "ppo.train_batch=8", "ppo.micro_batch=4", "ppo.forward_batch=8",
                            "ppo.sampling.max_new_tokens=32", "ppo.eval_prompts=8", "ppo.actor.lr=1e-6",
                            "ppo.critic.lr=1e-5"]),
}


def upstream(preset: str, sets: list[str], workdir: Path):
    from segtool.config.loader import load_config
    from segtool.pipeline import fit_normalizer

    cfg, _ = load_config(preset=preset, overrides=sets, workdir=str(workdir))
    fit_normalizer.run(cfg, resume=True, quiet=True)
    return cfg


class PassCounter:
    """Sequences pushed through each model's backbone (outside generation). A padded batch holds one
    per row; a packed one (position ids, no attention mask) one per position-id block that is not
    pure padding (a row's tail)."""

    def __init__(self, models: dict, pad_id: int):
        self.rows = dict.fromkeys(models, 0)
        self.active = True
        self.pad_id = pad_id
        self.handles = [self._hook(name, m) for name, m in models.items()]

    def sequences(self, ids, kwargs) -> int:
        pos = kwargs.get("position_ids")
        if pos is None or kwargs.get("attention_mask") is not None:
            return ids.shape[0]
        block = torch.cumsum(pos == 0, dim=1)  # block number of each position within its row
        tokens = torch.zeros(ids.shape[0], int(block.max()) + 1, dtype=torch.long)  # non-pad tokens per block
        tokens.index_put_((torch.arange(ids.shape[0])[:, None].expand_as(ids), block), (ids != self.pad_id).long(),
                          accumulate=True)
        return int((tokens > 0).sum())

    def _hook(self, name, backbone):
        def count(module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            if self.active and ids is not None:
                self.rows[name] += self.sequences(ids, kwargs)

        return backbone.register_forward_pre_hook(count, with_kwargs=True)

    def close(self):
        for h in self.handles:
            h.remove()


def bench_model(name: str, iterations: int, packings: list[str]) -> list[dict]:
    """One result per ppo.packing setting, on the same upstream artifacts and prompts."""
    preset, sets = PRESETS[name]
    workdir = Path(tempfile.mkdtemp(prefix=f"ppo-bench-{name}-"))
    try:
        upstream(preset, sets, workdir)
        return [bench_setting(name, iterations, preset, [*sets, f'ppo.packing="{p}"'], workdir) | {"packing": p}
                for p in packings]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def bench_setting(name: str, iterations: int, preset: str, sets: list[str], workdir: Path) -> dict:
    from segtool.artifacts.manifest import RunDir
    from segtool.config.loader import load_config
    from segtool.inputs.prompts import read_prompts
    from segtool.models.precision import make_autocast
    from segtool.pipeline import ppo, ppo_rollout, ppo_train
    from segtool.pipeline.ppo import load_setup

    cfg, _ = load_config(preset=preset, overrides=sets, workdir=str(workdir))
    rd = RunDir(workdir)
    setup = load_setup(cfg, rd, rd.require_head("train-rm"))
    c = cfg.ppo
    rows, _ = read_prompts(ppo.prompts_path(cfg), max_rows=cfg.data.max_rows)
    prompts = [setup.encoder.encode_prompt(r.messages) for r in rows]
    autocast = make_autocast(c.bf16, setup.device, "ppo.bf16")
    backbone = lambda m: getattr(m, m.base_model_prefix)  # noqa: E731
    counter = PassCounter({"policy": backbone(setup.policy), "reference": backbone(setup.scorer.ref),
                           "reward": setup.scorer.rm.backbone, "critic": setup.critic.backbone}, setup.scorer.pad_id)
    real_generate = ppo_rollout.generate

    def uncounted_generate(*a, **k):
        counter.active = False
        try:
            return real_generate(*a, **k)
        finally:
            counter.active = True

    ppo_rollout.generate = uncounted_generate
    optimisers = ppo_train.make_optimisers(setup, c, 1000, parallel=False)
    splits = []
    for it in range(iterations):
        batch_prompts = prompts[it * c.rollout_batch : (it + 1) * c.rollout_batch]
        before = dict(counter.rows)
        t0 = time.perf_counter()
        rollout = ppo_rollout.collect(setup.policy, setup.critic, setup.scorer, batch_prompts, cfg, 0, it,
                                      setup.device, autocast, c.kl_coef)
        t1 = time.perf_counter()
        passes = {k: (counter.rows[k] - before[k]) / rollout.size for k in counter.rows}
        counter.active = False
        ppo_train.train_on(rollout, setup, optimisers, c, (0, it), autocast)
        counter.active = True
        t2 = time.perf_counter()
        s = rollout.seconds
        splits.append({"generate": s["generate"], "policy": s["policy"], "reference+segment": s["reference"],
                       "reward": s["reward"], "critic": s["critic"], "train": t2 - t1, "total": t2 - t0,
                       "passes": passes, "episodes": rollout.size})
    ppo_rollout.generate = real_generate
    counter.close()
    gen = generation_vs_plain(setup, prompts[: c.rollout_batch], c, autocast)
    return {"model": name, "splits": splits, "generation": gen, "rollout_batch": c.rollout_batch,
            "max_new_tokens": c.sampling.max_new_tokens, "pack_width": setup.scorer.pack_width}


def generation_vs_plain(setup, prompts, c, autocast) -> dict:
    """New tokens/s: segtool's generate vs model.generate on the same prompts, in prompt order."""
    from segtool.models.generation import generate, generation_config

    policy, eos, pad = setup.policy, setup.scorer.eos_id, setup.scorer.pad_id
    config = generation_config(eos, pad, c.sampling.max_new_tokens, c.sampling.temperature, c.sampling.top_p, 2)

    def plain():
        new = 0
        torch.manual_seed(0)
        for s in range(0, len(prompts), c.generate_batch):
            chunk = prompts[s : s + c.generate_batch]
            width = max(map(len, chunk))
            ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk])
            attn = (torch.arange(width)[None, :] >= torch.tensor([width - len(p) for p in chunk])[:, None]).long()
            with torch.inference_mode(), autocast():
                out = policy.generate(input_ids=ids, attention_mask=attn, generation_config=config)[:, width:]
            hit = (out == eos)
            new += int(torch.where(hit.any(1), hit.int().argmax(1) + 1, torch.full((len(chunk),), out.shape[1])).sum())
        return new

    def ours():
        with autocast():
            return generate(policy, prompts, eos_id=eos, pad_id=pad, max_new_tokens=c.sampling.max_new_tokens,
                            temperature=c.sampling.temperature, top_p=c.sampling.top_p, min_new_tokens=2,
                            batch_size=c.generate_batch,
                            seed=0).new_tokens

    result = {}
    for label, fn in (("plain", plain), ("segtool", ours), ("plain", plain), ("segtool", ours)):  # warm, then timed
        t = time.perf_counter()
        n = fn()
        result[label] = n / (time.perf_counter() - t)
    return result


def report(results: list[dict]) -> None:
    print("\n### Per-iteration time split (seconds, mean over timed iterations; first iteration dropped as warm-up)\n")
    label = lambda r: f"{r['model']} | {r['packing']} ({r['pack_width']})"  # noqa: E731  (0 = padded)
    print("| model | packing (width) | episodes/iter | generate | policy fwd | reference+segment | reward | critic | train | total | episodes/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        timed = r["splits"][1:] or r["splits"]
        mean = {k: sum(s[k] for s in timed) / len(timed) for k in timed[0] if k not in ("passes", "episodes")}
        print(f"| {label(r)} | {r['rollout_batch']} | " + " | ".join(f"{mean[k]:.2f}" for k in
              ("generate", "policy", "reference+segment", "reward", "critic", "train", "total"))
              + f" | {r['rollout_batch'] / mean['total']:.2f} |")
    print("\n### Forward passes per sample outside generation (target: 1 each)\n")
    print("| model | packing (width) | policy | reference | reward | critic |")
    print("|---|---|---|---|---|---|")
    for r in results:
        p = r["splits"][-1]["passes"]
        print(f"| {label(r)} | " + " | ".join(f"{p[k]:.2f}" for k in ("policy", "reference", "reward", "critic")) + " |")
    print("\n### Generation, new tokens/s on the same prompts (max_new_tokens as in the run)\n")
    print("| model | packing (width) | plain transformers generate | segtool generate | ratio |")
    print("|---|---|---|---|---|")
    for r in results:
        g = r["generation"]
        print(f"| {label(r)} | {g['plain']:.0f} | {g['segtool']:.0f} | {g['segtool'] / g['plain']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,smollm2")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--packing", default="off,auto", help="ppo.packing settings to compare, side by side (off = padded)")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    results = []
    for name in args.models.split(","):
        if name == "smollm2" and not (Path.home() / ".cache/segtool/smollm2-135m-instruct/config.json").exists():
            print("skipping smollm2: run `python benchmarks/prepare_smollm2.py` first")
            continue
        results.extend(bench_model(name, args.iterations, args.packing.split(",")))
    report(results)


if __name__ == "__main__":
    main()
