r"""Reward-model training speed: `segtool train-rm` versus TRL 1.12's RewardTrainer, side by side on this CPU.

Runs in the project venv; TRL runs in its own venv outside the repo (never a segtool dependency),
made once with torch pinned through a constraints file (an unpinned torch pulls a multi-GB CUDA build):

    python3 -m venv /work/cache/trl-venv
    printf 'torch==2.13.0\ntransformers==5.23.0\n' > /work/cache/trl-constraints.txt
    /work/cache/trl-venv/bin/pip install -c /work/cache/trl-constraints.txt \
        torch==2.13.0 trl==1.12.0 transformers==5.23.0 accelerate datasets
    # elsewhere: SEGTOOL_TRL_PYTHON=/path/to/that/venv/bin/python; SEGTOOL_BENCH_CACHE for the run dirs

    python benchmarks/rm_vs_trl.py                                    # both models, 16 steps, one round
    python benchmarks/rm_vs_trl.py --models tiny --repeats 3 --quiet-below 0.2
    python benchmarks/rm_vs_trl.py --models smollm2 --smollm2 /path/to/smollm2-135m-instruct --checkpointing off

What it measures: non-pad tokens per second of reward-model training, chosen and rejected both counted,
over steps 3..S (`--warmup 2` steps skipped: AdamW's state allocation and other one-off costs), on
exactly the same token ids, pairs, batch size, step count, learning rate and precision on both sides:

* Models: TinyStories-656K (`data/models/tinystories-656k`) and SmolLM2-135M-Instruct (`--smollm2`,
  written by `benchmarks/prepare_smollm2.py`), float32 weights on both sides (segtool `model.dtype =
  "float32"`, TRL's own default when it loads a model from a path) under bf16 autocast.
* Rows: HH-RLHF helpful-base test pairs (`data/hh_rlhf/`), in file order, the first ones whose chosen and
  rejected prompt + response both fit in `--max-tokens` (256) tokens after segtool's own encoding
  (`segtool.inputs.formatting.Encoder`: the chat template for SmolLM2, the plain transcript for
  TinyStories, which has none), read with segtool's row parser and encoded without truncation. As many
  rows are kept as give `--pairs` (64) training pairs after segtool's seeded hold-out
  (`train_rm.eval_fraction` 0.05, `segtool.pipeline.train_rm.split_rows`): 67 rows, 3 held out. Those
  rows go to a JSONL file, `segtool segment` tokenises them once (segments.parquet), and TRL gets the
  very token ids of that artifact (prompt + response, EOS included) for exactly segtool's training
  pairs, as pre-tokenised `chosen_ids`/`rejected_ids`, which RewardTrainer takes as they are: no
  re-tokenisation, so no token can differ. segtool's split.parquet is checked against those pairs
  after every segtool run. With 16 steps of 4 pairs both sides see each training pair once, in
  different orders (each its own seeded shuffle).
* The reward read-out is TRL's: the value at the last token (segtool `segment.strategy = "bandit"`,
  `train_rm.aggregation = "last"`; TRL's AutoModelForSequenceClassification reads the last non-pad
  token, given a pad token that is not EOS, see `benchmarks/ppo_trl_runner.py`'s pick_pad), so both
  run one backbone pass over chosen and rejected and a bias-free scalar head.
* Batch: 4 pairs per optimiser step, one forward pass over the 8 sequences (segtool
  `train_rm.global_batch = micro_batch = 4`; TRL per_device_train_batch_size 4, accumulation 1), S =
  `--steps` (16) steps (`train_rm.max_steps`; TRL max_steps), AdamW lr 1e-5 (schedules differ:
  segtool warm-up + cosine, TRL linear decay; the speed does not depend on them), clipping 1.0 on both.
* Precision: bf16 autocast with float32 weights and a float32 loss. segtool: `train_rm.bf16 = "true"`.
  TRL: `bf16=True` (RewardConfig's default) with `use_cpu=True`: transformers hands mixed_precision
  "bf16" to the Accelerator, which on a CPU device sets native AMP without any device check and wraps
  the model's forward in `torch.autocast("cpu", dtype=torch.bfloat16)`, converting the outputs to
  float32; the weights and AdamW stay float32. The runner records the dtype a linear layer of the
  model actually produced in training (`autocast_seen`) to show it.
* Gradient checkpointing on both sides (both defaults; non-reentrant on both) and off on both
  (`train_rm.gradient_checkpointing = false`, TRL gradient_checkpointing=False): `--checkpointing on,off`.
* segtool packing and compilation: `--segtool-packing auto,off` and `--segtool-compile auto,off` give one
  segtool row per combination (`train_rm.packing`, plus `train_rm.pack_width` with `--pack-width`;
  `train_rm.compile`, whose first step pays the compilation and is inside the `--warmup` steps); a
  segtool that does not know a key yet gets rows without it, the reason printed.

Timing, per step. segtool: its own per-step `tokens` (non-pad) and `seconds` (micro-batching,
collation, forward, backward, clipping and the optimiser step) from the train-rm artifact's
metrics.parquet, found through the run directory's manifest. TRL: a TrainerCallback's
on_step_begin to on_step_end (forward, backward, clipping, optimiser and scheduler step; the batch is
collated before on_step_begin and so not timed: 8 rows of ids, small next to a training step), and the
non-pad tokens of that step's collated batch. Neither counts model loading, the held-out evaluation or saving.

Also per run:
* pad efficiency: non-pad tokens / token positions the backbone ran (TRL pads chosen and rejected to the
  batch's longest: rows x width of the collated batch; segtool padded: the same, packed: packed rows x
  packed width). segtool's metrics record the positions its backbone ran (`computed_tokens`); for a
  segtool without that column (no packing) they are recomputed in this process from the same micro-batching
  (`segtool.core.batching.pair_micro_batches`, `segtool.models.rm_batches.collate` on the run's
  segments, its per-epoch seeded order) and used only when the recomputed non-pad tokens equal the
  metrics' own, step by step.
* share of matmul peak: model FLOP/s = 6 x non-embedding parameters x tokens/s (the usual estimate; the
  backward's recomputation under gradient checkpointing and attention are not counted) over the best
  of several 2048^3 bf16 `torch.matmul` measured in the same process just before training (the TRL
  runner; for segtool this script's `--segtool-child` mode, which measures it and then runs the
  `segtool` command's entry point in-process).
* peak RSS of the training process (its own `getrusage` maxrss), and the share of the CPU other
  processes used during the run (from /proc/stat, as `ppo_vs_trl.py` does; trust rows where it is small).

Rounds: `--repeats N` rounds, each round TRL then segtool (each packing value) for each checkpointing
setting, so a slow drift of the shared machine's speed hits both. The median is over the undisturbed
runs (others < 10% of the CPU) or all runs when none was.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ppo_vs_trl import (  # noqa: E402  (the directory goes on sys.path first when imported from elsewhere)
    CACHE,
    CLEAN_BELOW,
    LAST_RUN,
    REPO,
    TRL_PYTHON,
    cpu_busy,
    last_json,
    run,
    segtool_exe,
    set_args,
    wait_quiet,
)

HERE = Path(__file__).resolve().parent
HH_HELPFUL_TEST = REPO / "data" / "hh_rlhf" / "helpful-base" / "test.jsonl.gz"
MODELS = {  # key: (name, preset, default path)
    "tiny": ("TinyStories-656K", "tiny", str(REPO / "data" / "models" / "tinystories-656k")),
    "smollm2": ("SmolLM2-135M-Instruct", "smollm2", str(Path.home() / ".cache/segtool/smollm2-135m-instruct")),  # prepare_smollm2.py's default
}
EVAL_FRACTION = 0.05
BATCH = 4  # pairs per optimiser step, one forward pass
SEED = 0


# -- measurements shared by both sides ----------------------------------------------------------


def matmul_flops(n: int = 2048, repeats: int = 8) -> float:
    """FLOP/s of the best of ``repeats`` n x n x n bf16 matmuls (after one untimed)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(torch.bfloat16)
    b = torch.randn(n, n, generator=gen).to(torch.bfloat16)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def non_embedding_params(model) -> int:
    """Parameters a token's forward and backward pass multiply through: all but the input embeddings."""
    return sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def segtool_child(report: str, argv: list[str]) -> None:
    """The segtool side's process: the bf16 matmul peak first, then the `segtool` command in-process
    (its entry point, allocator settings included); the peak and this process's peak RSS go to ``report``."""
    from segtool.runtime import tune_allocator

    tune_allocator()  # as the command does first, so the matmul runs under the same allocator
    flops = matmul_flops()
    sys.argv = ["segtool", *argv]
    code = 0
    try:
        from segtool.cli.app import main

        main()
    except SystemExit as done:
        code = done.code or 0
    finally:
        Path(report).write_text(json.dumps({"matmul_flops": flops, "peak_rss_mib": peak_rss_mib()}))
    sys.exit(code)


# -- the rows -----------------------------------------------------------------------------------


def segtool_sets(model_path: str, data_path: Path) -> list[str]:
    """Overrides shared by the segment run and every train-rm run of a model (one segment artifact)."""
    return [f'model.path="{model_path}"', 'model.dtype="float32"', 'model.device="cpu"',
            f'data.path="{data_path}"', 'data.format="hh"', "data.max_rows=0",
            'segment.strategy="bandit"', 'train_rm.readout="end"', 'train_rm.aggregation="last"',
            f"train_rm.eval_fraction={EVAL_FRACTION}", f"run.seed={SEED}"]


def rows_needed(pairs: int) -> int:
    """Rows that leave exactly ``pairs`` training pairs after train-rm's hold-out."""
    from segtool.pipeline.train_rm import split_rows

    for n in range(pairs + 1, 2 * pairs + 3):
        if len(split_rows(n, EVAL_FRACTION, SEED)[0]) == pairs:
            return n
    raise SystemExit(f"no row count leaves exactly {pairs} training pairs at eval_fraction {EVAL_FRACTION}")


def select_rows(preset: str, model_path: str, want: int, max_tokens: int, out: Path) -> dict:
    """Write the first ``want`` HH-RLHF helpful-base test rows whose chosen and rejected both fit in
    ``max_tokens`` after segtool's encoding (untruncated) to ``out``, as they are in the file."""
    from segtool.config.loader import load_config
    from segtool.errors import InputError
    from segtool.inputs.formatting import Encoder
    from segtool.inputs.readers import read_records
    from segtool.inputs.rows import parse_pair
    from segtool.models.loading import load_tokenizer, resolve_model_source

    cfg, _ = load_config(preset=preset, overrides=[f'model.path="{model_path}"'])
    tokenizer = load_tokenizer(resolve_model_source(cfg.model), cfg.model)
    unlimited = 1 << 30  # measure the whole encoding: a fitting row is then untruncated under any setting
    encoder = Encoder.create(tokenizer, unlimited, unlimited - 2, cfg.tokenize.template)
    kept, invalid, seen = [], 0, 0
    for rec in read_records(str(HH_HELPFUL_TEST)):
        seen += 1
        try:
            if rec.error is not None:
                raise rec.error
            pair = parse_pair(rec.row_id, rec.data, rec.where, "hh")
        except InputError:
            invalid += 1
            continue
        prompt = encoder.encode_prompt(pair.prompt)
        longest = len(prompt) + max(len(encoder.encode_response(t, len(prompt))) for t in (pair.chosen, pair.rejected))
        if longest <= max_tokens:
            kept.append(rec.data)
            if len(kept) == want:
                break
    if len(kept) < want:
        raise SystemExit(f"only {len(kept)} of {HH_HELPFUL_TEST}'s rows fit in {max_tokens} tokens; {want} needed")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return {"rows": want, "rows_read": seen, "invalid_skipped": invalid, "chat_template": encoder.use_chat_template}


def prepare(key: str, model_path: str, pairs: int, max_tokens: int) -> dict:
    """Rows, the segment artifact and TRL's pre-tokenised training pairs for one model."""
    from segtool.artifacts.manifest import RunDir
    from segtool.artifacts.tables import load_segments
    from segtool.models.rm_batches import pairs_from_segments
    from segtool.pipeline.train_rm import split_rows

    name, preset, _ = MODELS[key]
    base = CACHE / "rm-bench" / key
    data = base / "hh-helpful-test-pairs.jsonl"
    info = select_rows(preset, model_path, rows_needed(pairs), max_tokens, data)
    workdir = base / "run"
    sets = segtool_sets(model_path, data)
    run([segtool_exe(), "segment", "--preset", preset, "--workdir", str(workdir), *set_args(sets), "--json"],
        f"segtool segment ({name})")
    _, table = load_segments(RunDir(workdir))
    row_ids, examples = pairs_from_segments(table)
    if len(examples) != info["rows"]:
        raise SystemExit(f"the segment artifact has {len(examples)} pairs, {info['rows']} rows were written")
    train_idx, _ = split_rows(len(examples), EVAL_FRACTION, SEED)
    trl_rows = [{side: [int(t) for t in ex.prompt] + [int(t) for t in ex.response]
                 for side, ex in zip(("chosen_ids", "rejected_ids"), examples[i])} for i in train_idx]
    lengths = [len(r[s]) for r in trl_rows for s in ("chosen_ids", "rejected_ids")]
    if max(lengths) > max_tokens:
        raise SystemExit(f"a sequence of {max(lengths)} tokens in the segment artifact; the selection kept <= {max_tokens}")
    trl_pairs = base / "trl-train-pairs.jsonl"
    trl_pairs.write_text("".join(json.dumps(r) + "\n" for r in trl_rows))
    return {**info, "preset": preset, "workdir": workdir, "sets": sets, "trl_pairs": trl_pairs,
            "train_row_ids": sorted(int(row_ids[i]) for i in train_idx), "train_pairs": len(train_idx),
            "tokens_min": min(lengths), "tokens_median": int(statistics.median(lengths)), "tokens_max": max(lengths),
            "non_embedding_params": count_params(model_path)}


def count_params(model_path: str) -> int:
    """Non-embedding parameters of the reward model both sides build (backbone + scalar head), from the
    config alone (meta tensors)."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(model_path, num_labels=1)
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config)
    return non_embedding_params(model)


# -- one run per side ---------------------------------------------------------------------------


def timed_rate(tokens: list[int], seconds: list[float], ran: list[int] | None, warmup: int) -> dict:
    """tokens/s and pad efficiency over the steps after ``warmup``."""
    tok, sec = sum(tokens[warmup:]), sum(seconds[warmup:])
    return {"tokens_per_s": tok / sec, "measured_steps": len(tokens) - warmup,
            "pad_efficiency": tok / sum(ran[warmup:]) if ran else None}


def run_trl(prep: dict, model_path: str, *, steps: int, lr: float, checkpointing: bool, warmup: int) -> dict:
    cmd = [TRL_PYTHON, str(HERE / "rm_trl_runner.py"), "--model", model_path, "--pairs", str(prep["trl_pairs"]),
           "--steps", str(steps), "--batch", str(BATCH), "--lr", str(lr), "--seed", str(SEED),
           "--gradient-checkpointing", "on" if checkpointing else "off"]
    out = last_json(run(cmd, "TRL RewardTrainer"))
    if out["non_embedding_params"] != prep["non_embedding_params"]:  # the FLOP estimate assumes one model size
        print(f"note: TRL's reward model has {out['non_embedding_params']:,} non-embedding parameters, "
              f"segtool's {prep['non_embedding_params']:,}", file=sys.stderr)
    steps_ = out["steps"]
    rate = timed_rate([s["tokens"] for s in steps_], [s["seconds"] for s in steps_],
                      [s["padded_tokens"] for s in steps_], warmup)
    return {**rate, "matmul_flops": out["matmul_flops"], "peak_rss_mib": out["peak_rss_mib"],
            "others_busy": LAST_RUN["others_busy"], "raw": out}


def run_segtool(prep: dict, *, steps: int, lr: float, checkpointing: bool, variant: dict,
                pack_width: int | None, warmup: int) -> dict:
    from segtool.artifacts.manifest import RunDir

    workdir = prep["workdir"]
    report = workdir / "segtool-child.json"
    report.unlink(missing_ok=True)
    epochs = -(-steps * BATCH // prep["train_pairs"])  # enough epochs for `steps` (one for the default 16 x 4 = 64)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--segtool-child", str(report), "train-rm",
           "--preset", prep["preset"], "--workdir", str(workdir), *set_args(prep["sets"]),
           *set_args(train_sets(steps, epochs, lr, checkpointing, variant, pack_width)), "--force", "--json"]
    summary = last_json(run(cmd, "segtool train-rm"))
    child = json.loads(report.read_text())
    rundir = RunDir(workdir)
    record = rundir.head("train-rm")
    metrics = read_rows(rundir.path_of(record, "metrics.parquet"))
    split = read_rows(rundir.path_of(record, "split.parquet"))
    trained = sorted(int(r["row_id"]) for r in split if r["split"] == "train")
    if trained != prep["train_row_ids"]:
        raise SystemExit("segtool trained on other pairs than the ones TRL was given: "
                         f"{sorted(set(trained) ^ set(prep['train_row_ids']))[:10]} differ")
    tokens = [int(m["tokens"]) for m in metrics]
    ran, how = segtool_computed(prep, metrics, steps, epochs)
    rate = timed_rate(tokens, [float(m["seconds"]) for m in metrics], ran, warmup)
    return {**rate, "matmul_flops": child["matmul_flops"], "peak_rss_mib": child["peak_rss_mib"],
            "others_busy": LAST_RUN["others_busy"], "computed_tokens_from": how,
            "raw": {"summary": summary.get("metrics", summary), "steps": metrics}}


def train_sets(steps: int, epochs: int, lr: float, checkpointing: bool, variant: dict,
               pack_width: int | None) -> list[str]:
    sets = [f"train_rm.global_batch={BATCH}", f"train_rm.micro_batch={BATCH}", f"train_rm.max_steps={steps}",
            f"train_rm.epochs={epochs}", f"train_rm.optim.lr={lr}", 'train_rm.bf16="true"',
            f"train_rm.gradient_checkpointing={'true' if checkpointing else 'false'}", "train_rm.checkpoint_every=0"]
    sets += [f'train_rm.{key}="{value}"' for key, value in variant.items()]
    if "packing" in variant and pack_width is not None:
        sets.append(f"train_rm.pack_width={pack_width}")
    return sets


def read_rows(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def segtool_computed(prep: dict, metrics: list[dict], steps: int, epochs: int) -> tuple[list[int] | None, str]:
    """Token positions segtool's backbone ran per step: its own `computed_tokens`, else the padded
    batches recomputed from its micro-batching (trusted only when the non-pad tokens agree)."""
    if metrics and "computed_tokens" in metrics[0]:
        return [int(m["computed_tokens"]) for m in metrics], "segtool's metrics (computed_tokens)"
    import numpy as np

    from segtool.artifacts.manifest import RunDir
    from segtool.artifacts.tables import load_segments
    from segtool.config.loader import load_config
    from segtool.core.batching import pair_micro_batches
    from segtool.models.loading import load_tokenizer, pad_id_of, resolve_model_source
    from segtool.models.rm_batches import collate, pairs_from_segments
    from segtool.pipeline.train_rm import schedule, split_rows

    cfg, _ = load_config(preset=prep["preset"], overrides=[*prep["sets"], *train_sets(steps, epochs, 1e-5, True, {}, None)])
    pad_id = pad_id_of(load_tokenizer(resolve_model_source(cfg.model), cfg.model))
    _, examples = pairs_from_segments(load_segments(RunDir(prep["workdir"]))[1])
    train_idx, _ = split_rows(len(examples), cfg.train_rm.eval_fraction, cfg.run.seed)
    per_epoch, total = schedule(cfg.train_rm, len(train_idx), False)
    ran = []
    for step in range(total):
        epoch, k = divmod(step, per_epoch)
        order = train_idx[np.random.default_rng([cfg.run.seed, epoch]).permutation(len(train_idx))]
        tokens = padded = 0
        for idx in pair_micro_batches(examples, order[k * BATCH : (k + 1) * BATCH], BATCH):
            batch = collate([examples[i][0] for i in idx] + [examples[i][1] for i in idx], pad_id)
            tokens, padded = tokens + batch["tokens"], padded + batch["input_ids"].numel()
        if step >= len(metrics) or tokens != int(metrics[step]["tokens"]):
            return None, f"n/a: the recomputed batches differ from segtool's at step {step + 1}"
        ran.append(padded)
    return ran, "recomputed (padded batches of segtool's micro-batching)"


def segtool_variants(prep: dict, choices: dict[str, list[str]], pack_width: int | None) -> list[dict]:
    """One segtool row per combination of ``choices`` (train_rm key -> values) this segtool accepts;
    a key it does not know is left out (one row without it)."""
    from segtool.config.loader import load_config
    from segtool.errors import ConfigError

    variants = [{}]
    for key, values in choices.items():
        accepted = []
        for value in values:
            try:
                load_config(preset=prep["preset"],
                            overrides=[*prep["sets"], *train_sets(16, 1, 1e-5, True, {key: value}, pack_width)])
            except ConfigError as err:
                if "unknown" not in err.message:
                    raise SystemExit(f"--segtool-{key} {value}: {err.message}") from err
                print(f"skipping the segtool rows {key}={value}: {err.message}", file=sys.stderr)
                continue
            accepted.append(value)
        variants = [{**v, key: value} for v in variants for value in accepted] or variants
    return variants


def variant_label(variant: dict) -> str:
    return ", ".join(f"{key} {value}" for key, value in variant.items())


# -- rounds and the table -----------------------------------------------------------------------


def summarise(runs: list[dict], params: int) -> dict:
    """The median over undisturbed runs (all runs when none was), and every run's numbers."""
    for r in runs:
        r["mfu"] = 6 * params * r["tokens_per_s"] / r["matmul_flops"]
    clean = [r for r in runs if r["others_busy"] < CLEAN_BELOW] or runs
    ordered = sorted(clean, key=lambda r: r["tokens_per_s"])
    return {"median_tokens_per_s": statistics.median(r["tokens_per_s"] for r in clean),
            "median_mfu": statistics.median(r["mfu"] for r in clean),
            "pad_efficiency": ordered[(len(ordered) - 1) // 2]["pad_efficiency"],
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs), "median_of": "undisturbed" if clean is not runs else "all",
            "runs": [{k: v for k, v in r.items() if k != "raw"} for r in runs],
            "raw": [r["raw"] for r in runs]}


def table(name: str, prep: dict, results: dict) -> list[str]:
    lines = [f"### {name}: {prep['train_pairs']} training pairs, {prep['tokens_min']}-{prep['tokens_max']} tokens "
             f"(median {prep['tokens_median']}), {prep['non_embedding_params']:,} non-embedding parameters", "",
             "| setting | framework | tokens/s per round | median tokens/s | segtool / TRL | share of bf16 matmul peak "
             "| pad efficiency | peak RSS MiB | others' CPU per round |",
             "|---|---|---|---:|---:|---:|---:|---:|---|"]
    sources = set()
    for (ckpt, label), res in results.items():
        sources.update(r["computed_tokens_from"] for r in res["runs"] if "computed_tokens_from" in r)
        trl = results.get((ckpt, "trl"))
        framework = "TRL 1.12 RewardTrainer" if label == "trl" else "segtool train-rm" + (f" ({label})" if label else "")
        ratio = f"{res['median_tokens_per_s'] / trl['median_tokens_per_s']:.2f}x" if trl and label != "trl" else ""
        eff = f"{res['pad_efficiency']:.0%}" if res["pad_efficiency"] is not None else "n/a"
        per_round = ", ".join(f"{r['tokens_per_s']:.0f}" for r in res["runs"])
        others = ", ".join(f"{r['others_busy']:.0%}" for r in res["runs"])
        lines.append(f"| checkpointing {ckpt} | {framework} | {per_round} | {res['median_tokens_per_s']:.0f} | {ratio} | "
                     f"{res['median_mfu']:.1%} | {eff} | {res['peak_rss_mib']:.0f} | {others} |")
    lines += ["", f"Medians over the runs others left undisturbed (< {CLEAN_BELOW:.0%} of the CPU), or all when none; "
              "pad efficiency of the median run; peak RSS the largest of the rounds; segtool's positions run: "
              f"{'; '.join(sorted(sources)) or 'n/a'}."]
    return lines


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return "unknown"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--segtool-child"]:
        segtool_child(argv[1], argv[2:])
    ap = argparse.ArgumentParser(description="segtool train-rm vs TRL 1.12 RewardTrainer: non-pad tokens/s")
    ap.add_argument("--models", default="tiny,smollm2", help=f"comma-separated, of: {', '.join(MODELS)}")
    ap.add_argument("--smollm2", default=MODELS["smollm2"][2], help="SmolLM2-135M-Instruct folder (prepare_smollm2.py)")
    ap.add_argument("--pairs", type=int, default=64, help="training pairs (segtool's held-out pairs come on top)")
    ap.add_argument("--max-tokens", type=int, default=256, help="keep rows whose chosen and rejected fit in this many tokens")
    ap.add_argument("--steps", type=int, default=16, help="optimiser steps per run (4 pairs each)")
    ap.add_argument("--warmup", type=int, default=2, help="leading steps left out of tokens/s")
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--checkpointing", default="on,off", help="gradient checkpointing settings, of: on, off")
    ap.add_argument("--segtool-packing", default="auto,off", help="train_rm.packing values, one segtool row each")
    ap.add_argument("--segtool-compile", default="auto",
                    help="train_rm.compile values; one segtool row per packing and compile value")
    ap.add_argument("--pack-width", type=int, default=None, help="train_rm.pack_width (default: segtool's)")
    ap.add_argument("--repeats", type=int, default=1, help="rounds; each runs every setting of both frameworks once")
    ap.add_argument("--quiet-below", type=float, default=0.0,
                    help="before each run wait (up to 15 min) until the CPU is less than this share busy, e.g. 0.2")
    ap.add_argument("--skip-trl", action="store_true")
    ap.add_argument("--skip-segtool", action="store_true")
    ap.add_argument("--json-out", default="", help="also write every result to this JSON file")
    args = ap.parse_args(argv)
    if args.steps <= args.warmup:
        ap.error(f"--steps ({args.steps}) must exceed --warmup ({args.warmup})")
    checkpointing = [c.strip() for c in args.checkpointing.split(",")]
    if not set(checkpointing) <= {"on", "off"}:
        ap.error("--checkpointing takes on, off or on,off")
    if not args.skip_trl and not Path(TRL_PYTHON).exists():
        raise SystemExit(f"no TRL venv python at {TRL_PYTHON}: see this script's docstring for the install commands, "
                         "or set SEGTOOL_TRL_PYTHON")

    report, everything = [f"CPU: {cpu_model()}; {args.steps} steps of {BATCH} pairs, tokens/s over steps "
                          f"{args.warmup + 1}-{args.steps}", ""], []
    for key in (k.strip() for k in args.models.split(",")):
        name, _, default_path = MODELS[key]
        model_path = str(Path(args.smollm2 if key == "smollm2" else default_path).expanduser().resolve())
        prep = prepare(key, model_path, args.pairs, args.max_tokens)
        print(f"{name}: {prep['rows']} rows ({prep['train_pairs']} training pairs) of the first {prep['rows_read']} "
              f"read, {prep['tokens_min']}-{prep['tokens_max']} tokens per sequence", file=sys.stderr)
        choices = {"packing": args.segtool_packing.split(","), "compile": args.segtool_compile.split(",")}
        variants = [] if args.skip_segtool else segtool_variants(prep, choices, args.pack_width)
        runs: dict[tuple[str, str | None], list[dict]] = {}
        for _ in range(args.repeats):
            for ckpt in checkpointing:
                common = {"steps": args.steps, "lr": args.lr, "checkpointing": ckpt == "on", "warmup": args.warmup}
                jobs = [] if args.skip_trl else [("trl", partial(run_trl, prep, model_path, **common))]
                jobs += [(variant_label(v), partial(run_segtool, prep, variant=v, pack_width=args.pack_width, **common))
                         for v in variants]
                for label, job in jobs:
                    busy = wait_quiet(args.quiet_below) if args.quiet_below > 0 else cpu_busy()
                    runs.setdefault((ckpt, label), []).append({**job(), "busy_before": round(busy, 2)})
        results = {k: summarise(v, prep["non_embedding_params"]) for k, v in runs.items()}
        report += [*table(name, prep, results), ""]
        everything.append({"model": name, "case": key, **{k: str(v) if isinstance(v, Path) else v
                                                          for k, v in prep.items() if k != "train_row_ids"},
                           "results": [{"checkpointing": c, "framework": "trl" if p == "trl" else "segtool",
                                        "variant": None if p == "trl" else p, **r} for (c, p), r in results.items()]})
    print("\n".join(report))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(everything, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
