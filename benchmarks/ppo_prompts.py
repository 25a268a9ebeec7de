"""Write the PPO benchmark prompts as token ids, formatted exactly as segtool formats them.

Runs in the project venv. The prompts are the `pair.prompt` messages of the preset's preference data
(read by `segtool.inputs.rows.read_pairs`, so the same rows, validation and `data.max_rows` as every
segtool stage), encoded by `segtool.inputs.formatting.Encoder.encode_prompt` with the model's tokenizer
and the preset's `tokenize` settings (chat template or plain transcript; the right end of the prompt
is kept up to `tokenize.max_prompt_len`). One JSON object per line: {"row_id": int, "input_ids": [...]}.
Both sides of `benchmarks/ppo_vs_trl.py` read this file (TRL) or the same data through the same
Encoder (segtool), so they see identical prompt tokens.

    python benchmarks/ppo_prompts.py --preset tiny --out /work/cache/bench-runs/tiny-prompts.jsonl
    python benchmarks/ppo_prompts.py --preset smollm2 --set data.max_rows=64 --out smol-prompts.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def build_prompts(preset: str | None, overrides: list[str], max_prompt_len: int | None = None, config_file: str | None = None) -> tuple[list[dict], dict]:
    """[(row_id, input_ids)] for every valid row, plus a small description of how they were made."""
    from segtool.config.loader import load_config
    from segtool.inputs.formatting import Encoder
    from segtool.inputs.rows import read_pairs
    from segtool.models.loading import load_tokenizer, resolve_model_source

    sets = list(overrides)
    if max_prompt_len is not None:
        sets.append(f"tokenize.max_prompt_len={max_prompt_len}")
    cfg, _ = load_config(preset=preset, config_file=config_file, overrides=sets)
    report = read_pairs(
        cfg.data.path, name=cfg.data.name, split=cfg.data.split, fmt=cfg.data.format,
        max_rows=cfg.data.max_rows, skip_invalid=cfg.data.skip_invalid,
    )
    source = resolve_model_source(cfg.model)
    tokenizer = load_tokenizer(source, cfg.model)
    encoder = Encoder.create(tokenizer, cfg.tokenize.max_len, cfg.tokenize.max_prompt_len, cfg.tokenize.template)
    rows = [{"row_id": pair.row_id, "input_ids": encoder.encode_prompt(pair.prompt)} for pair in report.pairs]
    lengths = sorted(len(r["input_ids"]) for r in rows)
    info = {
        "model": source.location,
        "data": cfg.data.path,
        "rows": len(rows),
        "skipped": len(report.invalid),
        "max_prompt_len": cfg.tokenize.max_prompt_len,
        "chat_template": encoder.use_chat_template,
        "eos_id": encoder.eos_id,
        "prompt_len_min": lengths[0],
        "prompt_len_median": lengths[len(lengths) // 2],
        "prompt_len_max": lengths[-1],
    }
    return rows, info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default=None, help="segtool preset (model, data, tokenize settings)")
    ap.add_argument("--config", default=None, help="or a segtool TOML config file")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="segtool override section.key=value (repeatable)")
    ap.add_argument("--max-prompt-len", type=int, default=None, help="override tokenize.max_prompt_len")
    ap.add_argument("--out", required=True, help="JSONL file to write")
    args = ap.parse_args(argv)
    if not (args.preset or args.config):
        ap.error("give --preset or --config")
    rows, info = build_prompts(args.preset, args.sets, args.max_prompt_len, args.config)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with open(tmp, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    tmp.replace(out)
    print(json.dumps({"out": str(out), **info}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
