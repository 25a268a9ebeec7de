"""Segment, bandit, token and sentence-level reward models on SmolLM2-135M-Instruct, trained on the same
HH-RLHF rows: held-out pairwise accuracy (20% of the rows, never trained on), then `segtool eval credit`
of the four on defect pairs built from AlpacaEval reference outputs and HH-RLHF answers.

Rows: HH-RLHF helpful-base and harmless-base test splits (data/hh_rlhf/), shuffled with --seed, the
first --rows whose chosen and rejected fit in --max-len tokens of the chat template. Every reward model
reads the same rows with the same split (train_rm.eval_fraction = 0.2, run.seed), the same optimiser
settings (chosen before any result was seen: lr 1e-5, 16 pairs per step, 1 epoch, bf16 autocast, no
gradient checkpointing), and differs only in segmentation, read-out and aggregation:

    segment   entropy segments (smollm2 preset, c_ent 3.75), end read-out, avg (the paper)
    bandit    one segment, value at EOS (aggregation last)
    token     every token a segment, avg
    sentence  punctuation sentences, differential read-out, attention aggregation (arXiv 2503.04793)

Needs the converted model (python benchmarks/prepare_smollm2.py --out DIR; pass --model DIR).

    OMP_NUM_THREADS=2 python benchmarks/smollm2_rms.py --model ~/.cache/segtool/smollm2-135m-instruct --rows 300
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HH = [ROOT / "data" / "hh_rlhf" / "helpful-base" / "test.jsonl.gz", ROOT / "data" / "hh_rlhf" / "harmless-base" / "test.jsonl.gz"]
TRAIN = ["train_rm.optim.lr=1e-5", "train_rm.global_batch=16", "train_rm.micro_batch=4", "train_rm.epochs=1",
         "train_rm.eval_fraction=0.2", "train_rm.bf16='true'", "train_rm.gradient_checkpointing=false"]
KINDS = {
    "segment": [],
    "bandit": ["segment.strategy='bandit'", "train_rm.aggregation='last'"],
    "token": ["segment.strategy='token'"],
    "sentence": ["segment.strategy='punct'", "train_rm.readout='differential'", "train_rm.aggregation='attention'"],
}


def hh_rows(tokenizer, count: int, max_len: int, seed: int) -> list[dict]:
    from segtool.inputs.rows import RowError, parse_pair

    rows = [json.loads(line) for path in HH for line in gzip.open(path, "rt")]
    random.Random(seed).shuffle(rows)
    kept = []
    for i, row in enumerate(rows):
        try:
            pair = parse_pair(i, row, "hh")
        except RowError:  # a handful of HH rows differ before their last answer: not a preference pair
            continue
        lengths = [len(tokenizer.apply_chat_template([*pair.prompt, {"role": "assistant", "content": r}], tokenize=True))
                   for r in (pair.chosen, pair.rejected)]
        if max(lengths) <= max_len:
            kept.append(row)
        if len(kept) == count:
            break
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the converted SmolLM2-135M-Instruct folder")
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--max-len", type=int, default=384, help="longest chosen/rejected sequence kept, in tokens")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--credit-pairs", type=int, default=42, help="defect pairs per source (alpaca, hh)")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS))
    parser.add_argument("--out", type=Path, default=Path("runs/smollm2-rms"))
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from segtool.config.loader import load_config
    from segtool.pipeline import credit_make, eval_credit, train_rm

    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "hh-rows.jsonl"
    if not data.exists():
        rows = hh_rows(AutoTokenizer.from_pretrained(args.model), args.rows, args.max_len, args.seed)
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = [f"model.path={json.dumps(str(Path(args.model).expanduser()))}", f"run.seed={args.seed}",
              f"tokenize.max_len={args.max_len}", f"tokenize.max_prompt_len={args.max_len - 64}", *TRAIN]

    def cfg_of(kind: str, *extra: str, data_path: Path = data):
        workdir = args.out / kind
        return load_config(preset="smollm2", overrides=[*common, *KINDS[kind], *extra], workdir=str(workdir),
                           data=str(data_path))[0]

    results = {}
    for kind in args.kinds:
        t0 = time.perf_counter()
        record = train_rm.run(cfg_of(kind), resume=True, quiet=True).record
        m = record["metrics"]
        results[kind] = {"train_pairs": m["train_pairs"], "eval_pairs": m["eval_pairs"], "eval_accuracy": m["eval_accuracy"],
                         "eval_mean_margin": m["eval_mean_margin"], "minutes": round((time.perf_counter() - t0) / 60, 1)}
        print(f"{kind:9s} held-out accuracy {m['eval_accuracy']:.4f} on {m['eval_pairs']} pairs "
              f"({m['train_pairs']} trained, {results[kind]['minutes']} min with segmentation)", flush=True)

    # defect pairs from AlpacaEval references and HH answers, tokenised for SmolLM2 (every RM shares its tokenizer)
    credit = {}
    for source in ("alpaca", "hh"):
        path = args.out / f"credit-{source}.jsonl"
        if not path.exists():
            opts = credit_make.MakeOptions(source=source, pairs=args.credit_pairs, seed=args.seed + 1, out=path)
            credit_make.run(cfg_of(args.kinds[0]), opts, quiet=True)
        for kind in args.kinds:
            t0 = time.perf_counter()
            summary = eval_credit.run(cfg_of(kind, data_path=path), quiet=True).record["metrics"]
            credit.setdefault(source, {})[kind] = summary
            print(f"eval credit {source:6s} {kind:9s} ({(time.perf_counter() - t0) / 60:.1f} min)", flush=True)
    (args.out / "summary.json").write_text(json.dumps({"rms": results, "credit": credit}, indent=1))

    print("\n| RM | trained pairs | held-out pairs | held-out accuracy | mean margin | minutes |")
    print("|---|---|---|---|---|---|")
    for kind, r in results.items():
        print(f"| {kind} | {r['train_pairs']} | {r['eval_pairs']} | {r['eval_accuracy']:.4f} | {r['eval_mean_margin']:+.4f} | {r['minutes']} |")
    for source, per_kind in credit.items():
        print(f"\n`eval credit` on {source} defect pairs (overall, 95% bootstrap intervals)")
        print("| RM | pairs | accuracy | AUROC | pointing game | mass in span |")
        print("|---|---|---|---|---|---|")
        for kind, s in per_kind.items():
            o = s["overall"]
            cells = [interval(o.get(k)) for k in ("accuracy", "auroc", "pointing", "mass_in_span")]
            print(f"| {kind} | {o.get('pairs', '?')} | " + " | ".join(cells) + " |")


def interval(m: dict | None) -> str:
    if not m or m.get("mean") is None or m["mean"] != m["mean"]:  # undefined for every pair (null or nan)
        return "n/a"
    return f"{m['mean']:.3f} [{m['low']:.3f}, {m['high']:.3f}]"

if __name__ == "__main__":
    main()
