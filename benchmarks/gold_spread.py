"""The gold scorer's spread on pi_SFT's own samples: how much room a gold reward has to move.

For each (temperature, max_new_tokens) setting: ``--samples`` samples of the preset's model from
the shipped story prompts (data/credit/story_prompts.txt, seeded), decoded as `credit make --source
sft` decodes them (temperature 0 = greedy; top-p is ppo.sampling.top_p), then per gold family the mean,
standard deviation and share of samples with a count > 0, and the same for the gold reward
-(weighted count).

    OMP_NUM_THREADS=1 python benchmarks/gold_spread.py --samples 64 --temperatures 1.0 0 --max-new-tokens 48 128 256
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0])
    parser.add_argument("--max-new-tokens", type=int, nargs="+", default=[48, 128, 256])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from segtool.config.loader import load_config
    from segtool.credit import sources
    from segtool.credit.gold import GOLD_FAMILIES, GoldScorer, spread
    from segtool.inputs.formatting import Encoder
    from segtool.models.loading import load_tokenizer, resolve_model_source
    from segtool.pipeline.credit_samples import sample_sft, sft_prompts

    cfg, _ = load_config(preset=args.preset)
    source = resolve_model_source(cfg.model)
    encoder = Encoder.create(load_tokenizer(source, cfg.model), cfg.tokenize.max_len, cfg.tokenize.max_prompt_len,
                             cfg.tokenize.template)
    scorer = GoldScorer(toxic=sources.read_lines(sources.TOXIC_SENTENCES, "toxic sentences"))
    prompts = sft_prompts()
    print(f"{args.samples} samples per setting from {len(prompts)} story prompts, model {cfg.model.path}, "
          f"seed {args.seed}")
    print(f"{'temperature':>11} {'max_new':>7} {'no EOS':>6}  {'family':<11} {'mean':>7} {'std':>7} {'frac>0':>7}")
    for temperature in args.temperatures:
        for max_new in args.max_new_tokens:
            samples = sample_sft(cfg, source, encoder, prompts, args.samples, max_new, args.seed,
                                 temperature=temperature)
            stats = spread(scorer, [s.text for s in samples])
            unended = sum(not s.ended for s in samples)
            for name in (*GOLD_FAMILIES, "reward"):
                row = stats[name]
                print(f"{temperature:>11} {max_new:>7} {unended:>6}  {name:<11} {row['mean']:>7.3f} {row['std']:>7.3f} "
                      f"{row['fraction_nonzero']:>7.3f}")


if __name__ == "__main__":
    main()
