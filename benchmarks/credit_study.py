"""Gold-reward PPO study on TinyStories-656K: does a segment-level reward model buy more gold reward per
unit of KL than token-level and bandit reward models, when the true reward is known?

Data: the tiny preset's pairs (``data/credit/tiny-story-pairs.jsonl.gz``: the model's own stories, each
rejected side with one repeated sentence or a cut-off ending, made by ``segtool credit make --source sft``).
Gold reward: ``segtool.credit.gold`` (minus the number of repeated sentences and unfinished endings), on
every rollout (per iteration) and on the held-out answers before and after PPO (``ppo.gold = "defects"``).

Per seed (``run.seed``: the RM's split and initialisation, the prompt split, sampling), one run directory
per reward-model kind (segment: the tiny preset; token: tiny-token; bandit: tiny-bandit; tiny-dpo: the segment
RM and a DPO policy, for the RTO arms), then PPO arms:

    segment            segment RM, dense segment rewards (the paper)
    token              token RM, dense token rewards
    bandit             bandit RM, normalised sequence reward on EOS
    bandit-as-segment  bandit RM read at PPO-time entropy segment ends
    appo               bandit RM, bandit reward, adaptive policy-loss mask (APPO)
    rto                RTO token rewards beta log pi_DPO/pi_SFT (tiny-dpo: the segment RM's run plus its DPO policy)
    rto+rm             RTO's released recipe: DPO token rewards x 0.05 clipped to 0.05, plus the RM's e(x, y) on EOS
    forking            the segment arm with the policy loss on the top-20% policy-entropy tokens only
    ablations of the segment arm (--ablations): normalizer.kind = global | none; ppo.interpolation = repeat | end

Prints one row per arm: held-out gold and proxy gain (after - before) and KL to pi_SFT, as the mean over
seeds with a 95% t-interval, and the rollout gold at matched KL (the gold of each run's rollouts where
their KL first reaches the target, interpolated); writes every run's numbers to --out (JSON lines) and a
plot of rollout gold and proxy reward against KL per arm.

    OMP_NUM_THREADS=2 python benchmarks/credit_study.py --seeds 0 1 2 --ablations --out runs/credit-study
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

ARMS = {  # arm -> (RM kind = preset, PPO overrides)
    "segment": ("tiny", []),
    "token": ("tiny-token", []),
    "bandit": ("tiny-bandit", []),
    "bandit-as-segment": ("tiny-bandit", ["ppo.reward_mode='bandit-as-segment'", "ppo.c_ent=5.6"]),
    "appo": ("tiny-bandit", ["ppo.mask='adaptive'"]),
    # RTO (arXiv 2404.18922): beta log pi_DPO/pi_SFT on every token, from the DPO policy tiny-dpo trains in its run
    # directory (beta = dpo.beta); rto+rm is the released recipe: scale and clip 0.05, plus the RM's e(x, y) on the EOS
    "rto": ("tiny-dpo", ["ppo.reward_source='dpo'"]),
    "rto+rm": ("tiny-dpo", ["ppo.reward_source='dpo'", "ppo.dpo_reward_scale=0.05", "ppo.dpo_reward_clip=0.05",
                            "ppo.dpo_rm_weight=1.0", "ppo.reward_mode='segment-as-bandit'"]),
    "forking": ("tiny", ["ppo.forking_ratio=0.2"]),  # arXiv 2506.01939: the segment arm, top-20% entropy tokens
}
ABLATIONS = {
    "segment, normaliser global": ("tiny", ["normalizer.kind='global'"]),
    "segment, normaliser none": ("tiny", ["normalizer.kind='none'"]),
    "segment, interpolation repeat": ("tiny", ["ppo.interpolation='repeat'"]),
    "segment, interpolation end": ("tiny", ["ppo.interpolation='end'"]),
}
KL_TARGETS = (1.0, 2.0)
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def one_run(arm: str, preset: str, sets: list[str], seed: int, root: Path, ppo_sets: list[str]) -> dict:
    import pyarrow.parquet as pq

    from segtool.artifacts.manifest import RunDir
    from segtool.config.loader import load_config
    from segtool.pipeline import ppo

    workdir = root / f"{preset}-seed{seed}"
    cfg = load_config(preset=preset, overrides=[f"run.seed={seed}", *ppo_sets, *sets], workdir=str(workdir))[0]
    t0 = time.perf_counter()
    result = ppo.run(cfg, resume=True, quiet=True)  # runs segment, train-rm and fit-normalizer first when missing
    seconds = time.perf_counter() - t0
    rd = RunDir(workdir)
    curve = pq.read_table(rd.path_of(result.record, "metrics.parquet")).to_pandas()
    m = result.record["metrics"]
    return {"arm": arm, "seed": seed, "seconds": round(seconds, 1), "artifact": result.artifact_id[:12],
            "gold_before": m["gold_before"], "gold_after": m["gold_after"],
            "proxy_before": m["reward_before"], "proxy_after": m["reward_after"], "kl_after": m["kl_after"],
            "length_before": m["length_before"], "length_after": m["length_after"],
            "curve": {"kl": curve["kl"].round(4).tolist(), "gold": curve["gold"].round(4).tolist(),
                      "reward": curve["reward"].round(4).tolist()}}


def gold_at_kl(curve: dict, target: float) -> float:
    """Rollout gold where the run's KL first reaches ``target`` (3-iteration moving averages,
    linear interpolation); nan when it never does."""
    kl, gold = np.asarray(curve["kl"]), np.asarray(curve["gold"])
    if kl.size >= 3:
        kernel = np.ones(3) / 3
        kl, gold = np.convolve(kl, kernel, "valid"), np.convolve(gold, kernel, "valid")
    reached = np.maximum.accumulate(kl)
    if reached[-1] < target:
        return math.nan
    i = int(np.argmax(reached >= target))
    if i == 0:
        return float(gold[0])
    w = (target - reached[i - 1]) / max(reached[i] - reached[i - 1], 1e-12)
    return float(gold[i - 1] + w * (gold[i] - gold[i - 1]))


def mean_ci(values) -> str:
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=float)
    if v.size == 0:
        return "n/a"
    if v.size == 1:
        return f"{v[0]:+.3f} (1 seed)"
    half = T95.get(v.size - 1, 1.96) * v.std(ddof=1) / math.sqrt(v.size)
    return f"{v.mean():+.3f} ± {half:.3f}"


def report(rows: list[dict], plot: Path | None) -> None:
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    head = ["arm", "seeds", "gold gain (held-out)", "proxy gain", "KL after"] + [f"rollout gold @ KL {k:g}" for k in KL_TARGETS]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for arm in arms:
        runs = [r for r in rows if r["arm"] == arm]
        cells = [arm, str(len(runs)), mean_ci([r["gold_after"] - r["gold_before"] for r in runs]),
                 mean_ci([r["proxy_after"] - r["proxy_before"] for r in runs]), mean_ci([r["kl_after"] for r in runs])]
        cells += [mean_ci([gold_at_kl(r["curve"], k) for r in runs]) for k in KL_TARGETS]
        print("| " + " | ".join(cells) + " |")
    before = [r["gold_before"] for r in rows]
    print(f"\npi_SFT held-out gold (every run's 'before'): {np.mean(before):+.3f} (min {min(before):+.3f}, max {max(before):+.3f})")
    print(f"wall time: {sum(r['seconds'] for r in rows) / 60:.1f} min of PPO (+ RM, normaliser) over {len(rows)} runs")
    if plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        colours = plt.get_cmap("tab20").colors  # 20 distinct colours: the default cycle repeats after 10 arms
        for k, arm in enumerate(arms):
            runs = [r for r in rows if r["arm"] == arm]
            n = min(len(r["curve"]["kl"]) for r in runs)
            kl = np.mean([r["curve"]["kl"][:n] for r in runs], axis=0)
            for ax, key in zip(axes, ("gold", "reward")):
                ax.plot(kl, np.mean([r["curve"][key][:n] for r in runs], axis=0), marker="o", ms=3, label=arm,
                        color=colours[k % 20], linestyle="--" if arm in ABLATIONS else "-")
        for ax, what in zip(axes, ("gold reward", "proxy reward e(x, y)")):
            ax.set_xlabel("KL(pi || pi_SFT) of the rollouts (nats per sequence)")
            ax.set_ylabel(f"{what}, rollouts, mean over seeds")
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(plot, dpi=120)
        print(f"plot: {plot}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), help=f"among {', '.join(ARMS)}")
    parser.add_argument("--ablations", action="store_true", help="also the segment arm's normaliser and interpolation ablations")
    parser.add_argument("--episodes", type=int, default=1, help="PPO episodes per run (the preset has 2)")
    parser.add_argument("--out", type=Path, default=Path("runs/credit-study"))
    parser.add_argument("--report-only", action="store_true", help="print the table from --out/results.jsonl")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "results.jsonl"
    done = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    if not args.report_only:
        arms = {name: ARMS[name] for name in args.arms}
        if args.ablations:
            arms.update(ABLATIONS)
        ppo_sets = [f"ppo.episodes={args.episodes}"]
        for seed in args.seeds:  # seed-major: every arm gets each seed before the next seed starts
            for arm, (preset, sets) in arms.items():
                if any(r["arm"] == arm and r["seed"] == seed for r in done):
                    continue
                row = one_run(arm, preset, sets, seed, args.out, ppo_sets)
                done.append(row)
                with results.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"{arm:32s} seed {seed}: gold {row['gold_before']:+.3f} -> {row['gold_after']:+.3f}, proxy "
                      f"{row['proxy_before']:+.3f} -> {row['proxy_after']:+.3f}, KL {row['kl_after']:.2f} ({row['seconds']:.0f} s)",
                      flush=True)
    report(done, args.out / "gold_vs_kl.png")


if __name__ == "__main__":
    main()
