r"""PPO speed: `segtool ppo` in bandit mode versus TRL 1.12's PPOTrainer, side by side on this CPU.

Runs in the project venv; TRL runs in its own venv outside the repo (never a segtool dependency),
made once with torch pinned through a constraints file (an unpinned torch pulls a multi-GB CUDA build):

    python3 -m venv /work/cache/trl-venv
    printf 'torch==2.13.0\ntransformers==5.23.0\n' > /work/cache/trl-constraints.txt
    /work/cache/trl-venv/bin/pip install -c /work/cache/trl-constraints.txt \
        torch==2.13.0 trl==1.12.0 transformers==5.23.0 accelerate datasets
    # elsewhere: SEGTOOL_TRL_PYTHON=/path/to/that/venv/bin/python; SEGTOOL_BENCH_CACHE for the run dirs

For each model it
1. makes sure the bandit reward model exists (`segtool train-rm`, a no-op when it is complete),
2. writes the prompts as token ids with segtool's own Encoder (`benchmarks/ppo_prompts.py`), keeping
   exactly the K * B prompts segtool's K iterations draw (its seeded hold-out and shuffle, read from
   segtool.pipeline.ppo), so both frameworks train on the same prompt tokens; TRL's DataLoader
   shuffles them into its K batches, so the batches (and their padded widths) still differ,
3. runs TRL (`benchmarks/ppo_trl_runner.py`, in the TRL venv: see its docstring for the install
   commands and how B and M map onto PPOConfig), then segtool (`run_segtool`), with the same model,
   reward model, prompts, response length L, rollout batch B, mini-batch M and iterations K,
4. prints a Markdown table: model, framework, episodes/s, ratio (segtool / TRL; target >= 1.5).

    python benchmarks/ppo_vs_trl.py                       # both models
    python benchmarks/ppo_vs_trl.py --models tiny --repeats 3
    python benchmarks/ppo_vs_trl.py --skip-segtool        # TRL side only

The CPU here is shared and 2-thread torch slows down several-fold when others run: each row shows how
busy the CPU was (from /proc/stat, over 3 s) just before the run and the share of it other processes
used during the run (all CPU time less the benchmark's own); `--quiet-below 0.2` waits for a quiet CPU
before each run; --repeats N runs N rounds, each round every framework once (so a slow drift of the
machine's speed hits all of them alike), and reports each one's median over its undisturbed runs
(others < 10% during), or over all its runs when none was. `--allocator-rows` adds TRL with
segtool's malloc settings and segtool with glibc's defaults, separating the allocator's share. Trust rows whose "during" share is small. Episodes/s counts the timed training loop only: for TRL the
wall time of `trainer.train()`, for segtool the `episodes_per_s` of its metrics (the PPO iterations,
without the held-out evaluation, model loading and saving).

Precision is matched per model: tiny runs everything in float32 without autocast on both sides
(`ppo.bf16="false"`); SmolLM2 runs as segtool's preset does (trained policy and critic in float32
weights under bf16 autocast, frozen reference and reward model in bfloat16 weights): TRL gets
`--dtype float32 --frozen-dtype bfloat16 --autocast all`, segtool `ppo.bf16="true"`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TRL_PYTHON = os.environ.get("SEGTOOL_TRL_PYTHON", "/work/cache/trl-venv/bin/python")
CACHE = Path(os.environ.get("SEGTOOL_BENCH_CACHE", "/work/cache/bench-runs"))


@dataclass(frozen=True)
class Case:
    name: str
    preset: str
    workdir: str  # under CACHE: the run directory holding the reward model (and segtool's PPO artifact)
    sets: tuple[str, ...]  # segtool overrides shared by train-rm, the prompts and ppo
    L: int  # response length (max new tokens)
    B: int  # episodes per PPO update (rollout batch)
    M: int  # PPO mini-batch (one optimiser step)
    K: int  # iterations (updates)
    eval_prompts: int  # segtool's held-out prompts (not trained on; excluded from TRL's prompts too)
    trl_dtype: str
    trl_frozen_dtype: str
    trl_autocast: str
    segtool_bf16: str
    seed: int = 0


CASES = {
    "tiny": Case(
        "TinyStories-656K", "tiny-bandit", "tiny-bandit", (), L=48, B=16, M=8, K=3, eval_prompts=16,
        trl_dtype="float32", trl_frozen_dtype="same", trl_autocast="none", segtool_bf16="false",
    ),
    "smollm2": Case(
        "SmolLM2-135M-Instruct", "smollm2", "smollm2-bandit",
        # A cheap bandit RM: 64 pairs, one optimiser step of 8 pairs (the speed does not depend on its quality).
        ('segment.strategy="bandit"', 'train_rm.aggregation="last"', "data.max_rows=64",
         "train_rm.global_batch=8", "train_rm.micro_batch=8", "train_rm.max_steps=1", 'normalizer.rows="all"'),
        L=32, B=8, M=4, K=2, eval_prompts=8,
        trl_dtype="float32", trl_frozen_dtype="bfloat16", trl_autocast="all", segtool_bf16="true",
    ),
}


def segtool_exe() -> str:
    local = Path(sys.executable).parent / "segtool"
    return str(local) if local.exists() else (shutil.which("segtool") or "segtool")


def set_args(sets) -> list[str]:
    return [a for s in sets for a in ("--set", s)]


CLEAN_BELOW = 0.10  # a run counts as undisturbed when other processes used < 10% of the CPU meanwhile
LAST_RUN: dict = {}  # others' CPU share during the last run()


def _cpu_jiffies() -> tuple[int, int]:
    with open("/proc/stat") as fh:
        vals = [int(v) for v in fh.readline().split()[1:]]
    return sum(vals) - vals[3] - vals[4], sum(vals)  # busy, total


# glibc malloc settings equal to segtool.runtime.tune_allocator's, as environment variables, so that
# --allocator-rows can give TRL the same allocator (and segtool the default one).
TUNED_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str((1 << 31) - 1),
                    "MALLOC_TOP_PAD_": str(1 << 28)}
DEFAULT_MALLOC_ENV = {"SEGTOOL_MALLOC_TUNING": "0"}


def run(cmd: list[str], what: str, env: dict | None = None) -> str:
    """Run a command (with extra environment variables); record in LAST_RUN how much of the CPU
    other processes used meanwhile."""
    shown = " ".join(f"{k}={v}" for k, v in (env or {}).items())
    print(f"$ {shown + ' ' if shown else ''}{' '.join(cmd)}", file=sys.stderr, flush=True)
    busy0, total0 = _cpu_jiffies()
    child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, **(env or {})})
    busy1, total1 = _cpu_jiffies()
    child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"{what} failed (exit {proc.returncode}); its stderr is above")
    hz = os.sysconf("SC_CLK_TCK")
    ours = (child1.ru_utime + child1.ru_stime) - (child0.ru_utime + child0.ru_stime)
    capacity = max(total1 - total0, 1) / hz  # core-seconds
    LAST_RUN["others_busy"] = round(max(0.0, ((busy1 - busy0) / hz - ours) / capacity), 3)
    return proc.stdout


def last_json(stdout: str) -> dict:
    """The JSON object on stdout: a one-line object, or a pretty-printed one."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("{") and ln.rstrip().endswith("}"):
            try:
                return json.loads(ln)
            except json.JSONDecodeError:
                break
    return json.loads(stdout[stdout.index("{") :])


def ensure_reward_model(case: Case, workdir: Path) -> Path:
    run([segtool_exe(), "train-rm", "--preset", case.preset, "--workdir", str(workdir), *set_args(case.sets), "--json"],
        f"segtool train-rm ({case.name})")
    manifest = json.loads((workdir / "manifest.json").read_text())
    record = manifest["artifacts"][manifest["heads"]["train-rm"]]
    return workdir / record["dir"] / "model"


def segtool_prompt_positions(n: int, case: Case) -> tuple[list[int] | None, str]:
    """Positions of the prompts segtool ppo will train on in this case, when its code can tell.

    Preferably the K * B prompts of its K iterations (then TRL, whose DataLoader shuffles but drops
    nothing from exactly K full batches, trains on the same prompts, batched differently); else its
    training pool (its seeded hold-out removed); else None (every prompt)."""
    try:
        from segtool.core.splits import heldout_split as split_prompts
    except ImportError:
        return None, "every prompt (segtool.core.splits.heldout_split not importable)"
    train, _ = split_prompts(n, case.eval_prompts, case.seed)
    try:
        from segtool.core.schedule import iteration_prompts

        picked = [int(i) for it in range(case.K) for i in iteration_prompts(train, it, case.B, case.seed)]
    except (ImportError, TypeError, ValueError):
        return sorted(int(i) for i in train), "segtool's training pool (hold-out removed)"
    if len(picked) != case.K * case.B:
        return sorted(int(i) for i in train), "segtool's training pool (hold-out removed)"
    return picked, f"the {len(picked)} prompts of segtool's {case.K} iterations"


def write_prompts(case: Case, path: Path) -> dict:
    sys.path.insert(0, str(HERE))
    from ppo_prompts import build_prompts

    rows, info = build_prompts(case.preset, list(case.sets))
    keep, which = segtool_prompt_positions(len(rows), case)
    if keep is not None:
        rows = [rows[i] for i in keep]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lengths = sorted(len(r["input_ids"]) for r in rows)
    return {**info, "rows": len(rows), "which": which, "prompt_len_min": lengths[0],
            "prompt_len_median": lengths[len(lengths) // 2], "prompt_len_max": lengths[-1]}


def run_trl(case: Case, reward_dir: Path, prompts: Path, env: dict | None = None) -> dict:
    cmd = [TRL_PYTHON, str(HERE / "ppo_trl_runner.py"), "--policy", policy_path(case), "--reward", str(reward_dir),
           "--prompts", str(prompts), "-L", str(case.L), "-B", str(case.B), "-M", str(case.M), "-K", str(case.K),
           "--dtype", case.trl_dtype, "--frozen-dtype", case.trl_frozen_dtype, "--autocast", case.trl_autocast,
           "--seed", str(case.seed)]
    out = last_json(run(cmd, f"TRL PPO ({case.name})", env))
    return {"episodes_per_s": out["episodes_per_s"], "seconds": out["seconds"], "episodes": out["episodes"],
            "others_busy": LAST_RUN["others_busy"], "raw": out}


def policy_path(case: Case) -> str:
    from segtool.config.loader import load_config

    cfg, _ = load_config(preset=case.preset, overrides=list(case.sets))
    return str(Path(cfg.model.path).expanduser())


# The segtool side pins what TRL does per update so the work is the same: one training forward per
# mini-batch (micro_batch = M), generation and scoring over the whole rollout batch
# (generate_batch = forward_batch = B), one PPO epoch, no missing-EOS penalty, and the precision of
# the case (ppo.bf16); --force so a complete artifact is recomputed, not reused.
def run_segtool(workdir: Path, preset: str, sets, *, B: int, M: int, L: int, K: int, eval_prompts: int,
                bf16: str, seed: int = 0, env: dict | None = None) -> dict:
    cmd = [segtool_exe(), "ppo", "--workdir", str(workdir), "--preset", preset, *set_args(sets),
           "--set", 'ppo.reward_mode="bandit"',
           "--set", f"ppo.rollout_batch={B}", "--set", f"ppo.train_batch={M}",
           "--set", f"ppo.sampling.max_new_tokens={L}", "--set", f"ppo.iterations={K}",
           "--set", f"ppo.micro_batch={M}", "--set", f"ppo.generate_batch={B}", "--set", f"ppo.forward_batch={B}",
           "--set", "ppo.ppo_epochs=1", "--set", "ppo.missing_eos_penalty=0.0",
           "--set", f"ppo.eval_prompts={eval_prompts}", "--set", f'ppo.bf16="{bf16}"',
           "--set", f"ppo.checkpoint_every={K + 1}", "--set", f"run.seed={seed}",
           "--force", "--json"]
    out = last_json(run(cmd, f"segtool ppo ({preset})", env))
    metrics = out["metrics"]
    return {"episodes_per_s": metrics["episodes_per_s"], "episodes": metrics.get("episodes"),
            "seconds": None, "others_busy": LAST_RUN["others_busy"], "raw": out}


def cpu_busy(seconds: float = 3.0) -> float:
    """Share of all cores busy over the next ``seconds`` (from /proc/stat), i.e. what others are using."""
    def sample():
        with open("/proc/stat") as fh:
            vals = [int(v) for v in fh.readline().split()[1:]]
        return vals[3] + vals[4], sum(vals)  # idle + iowait, total

    idle0, total0 = sample()
    time.sleep(seconds)
    idle1, total1 = sample()
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def wait_quiet(threshold: float, timeout: float = 900.0) -> float:
    """Wait until other processes leave the CPU (busy share < threshold) or timeout; the last share seen."""
    deadline = time.monotonic() + timeout
    busy = cpu_busy()
    while busy >= threshold and time.monotonic() < deadline:
        print(f"waiting for a quiet CPU ({busy:.0%} busy)", file=sys.stderr, flush=True)
        time.sleep(10)
        busy = cpu_busy()
    return busy


def round_robin(variants: dict, repeats: int, quiet_below: float = 0.0) -> dict:
    """Run every variant once per round, ``repeats`` rounds (so slow drifts of the shared CPU hit all
    variants alike), then report each variant's median."""
    runs = {key: [] for key in variants}
    for _ in range(repeats):
        for key, fn in variants.items():
            busy = wait_quiet(quiet_below) if quiet_below > 0 else cpu_busy()
            runs[key].append({**fn(), "busy_before": round(busy, 2)})
    return {key: median_of(r) for key, r in runs.items()}


def median_of(runs: list[dict]) -> dict:
    in_order = [r["episodes_per_s"] for r in runs]  # round by round
    runs = sorted(runs, key=lambda r: r["episodes_per_s"])
    clean = [r for r in runs if r["others_busy"] < CLEAN_BELOW] or runs  # runs others hardly disturbed
    mid = clean[(len(clean) - 1) // 2]  # the lower median for an even count
    return {**mid, "rounds": in_order, "all": [{"episodes_per_s": r["episodes_per_s"], "busy_before": r["busy_before"],
                            "others_busy": r["others_busy"]} for r in runs]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="segtool ppo (bandit) vs TRL 1.12 PPO: episodes/s")
    ap.add_argument("--models", default="tiny,smollm2", help=f"comma-separated, of: {', '.join(CASES)}")
    ap.add_argument("--repeats", type=int, default=1,
                    help="rounds; each round runs every framework once, and each one's median is reported")
    ap.add_argument("--quiet-below", type=float, default=0.0,
                    help="before each run wait (up to 15 min) until the CPU is less than this share busy, e.g. 0.2")
    ap.add_argument("--skip-trl", action="store_true")
    ap.add_argument("--skip-segtool", action="store_true")
    ap.add_argument("--allocator-rows", action="store_true",
                    help="also run TRL with segtool's malloc settings and segtool with glibc's defaults "
                         "(separates the allocator's share of the difference from the rest)")
    ap.add_argument("--variant", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                    help="also run segtool with these overrides, as a row of its own in every round (repeatable), "
                         "e.g. --variant 'ppo.first_forward=\"off\"' for before/after side by side")
    ap.add_argument("--json-out", default="", help="also write every result to this JSON file")
    args = ap.parse_args(argv)
    if not args.skip_trl and not Path(TRL_PYTHON).exists():
        raise SystemExit(f"no TRL venv python at {TRL_PYTHON}: see benchmarks/ppo_trl_runner.py for the install "
                         "commands, or set SEGTOOL_TRL_PYTHON")

    results = []
    for key in args.models.split(","):
        case = CASES[key.strip()]
        workdir = CACHE / case.workdir
        reward_dir = ensure_reward_model(case, workdir)
        prompts = CACHE / f"{key.strip()}-train-prompts.jsonl"
        info = write_prompts(case, prompts)
        print(f"{case.name}: {info['rows']} prompts ({info['which']}), {info['prompt_len_min']}-{info['prompt_len_max']} tokens "
              f"(median {info['prompt_len_median']}); L={case.L} B={case.B} M={case.M} K={case.K}", file=sys.stderr)
        row = {"model": case.name, "case": key, "L": case.L, "B": case.B, "M": case.M, "K": case.K, "prompts": info}
        segtool = partial(run_segtool, workdir, case.preset, case.sets, B=case.B, M=case.M, L=case.L, K=case.K,
                          eval_prompts=case.eval_prompts, bf16=case.segtool_bf16, seed=case.seed)
        variants = {}
        if not args.skip_trl:
            variants["trl"] = partial(run_trl, case, reward_dir, prompts)
            if args.allocator_rows:
                variants["trl_tuned_malloc"] = partial(run_trl, case, reward_dir, prompts, TUNED_MALLOC_ENV)
        if not args.skip_segtool:
            variants["segtool"] = segtool
            if args.allocator_rows:
                variants["segtool_default_malloc"] = partial(segtool, env=DEFAULT_MALLOC_ENV)
            for v in args.variant:
                variants[f"segtool {v}"] = partial(run_segtool, workdir, case.preset, (*case.sets, *v.split(",")), B=case.B,
                                                   M=case.M, L=case.L, K=case.K, eval_prompts=case.eval_prompts,
                                                   bf16=case.segtool_bf16, seed=case.seed)
        row.update(round_robin(variants, args.repeats, args.quiet_below))
        results.append(row)

    print("| model | framework | L / B / M / K | episodes/s (median) | all rounds, sorted | others' CPU before / during | ratio (row / TRL) |")
    print("|---|---|---|---:|---|---:|---:|")
    names = (("trl", "TRL 1.12 PPOTrainer"), ("trl_tuned_malloc", "TRL 1.12, segtool's malloc settings"),
             ("segtool_default_malloc", "segtool ppo (bandit), glibc default malloc"), ("segtool", "segtool ppo (bandit)"))
    names += tuple((f"segtool {v}", f"segtool ppo (bandit), {v}") for v in args.variant)
    for row in results:
        shape = f"{row['L']} / {row['B']} / {row['M']} / {row['K']}"
        trl = row.get("trl")
        for key, name in names:
            r = row.get(key)
            if r:
                ratio = f"{r['episodes_per_s'] / trl['episodes_per_s']:.2f}x" if trl and key != "trl" else ""
                rounds = ", ".join(f"{a['episodes_per_s']:.3f}" for a in r["all"])
                print(f"| {row['model']} | {name} | {shape} | {r['episodes_per_s']:.3f} | {rounds} | {r['busy_before']:.0%} / "
                      f"{r['others_busy']:.0%} | {ratio} |")
    for row in results:  # each round's ratio: the frameworks of one round ran back to back
        trl = row.get("trl")
        for key, name in names:
            if trl and key != "trl" and row.get(key):
                ratios = ", ".join(f"{a / b:.2f}x" for a, b in zip(row[key]["rounds"], trl["rounds"]))
                print(f"{row['model']}, {name}: per round vs TRL {ratios}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
