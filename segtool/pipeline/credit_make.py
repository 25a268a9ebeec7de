"""`segtool credit make`: preference pairs whose rejected side is the chosen (clean) response with
exactly one injected defect at a known place (``segtool.credit.defects``).

Pairs are dealt round-robin over the families, and within a family over the positions, so every
(family, position) cell gets the same share of ``--pairs``. Each family walks the source rows in
its own seeded order and uses a row at most once; a row that does not admit the family at the
position asked for (no number for ``arithmetic``, ...) is skipped and counted, and so is a pair whose
defect the reward model would never see ("unseen": past ``tokenize.max_len``, or made only of
characters the tokenizer drops). Every pair records the character span of its defect and the
response tokens (the run's tokenizer, through the Encoder every stage uses) that overlap it.

Output: ``--out FILE`` (.jsonl, .jsonl.gz, .parquet), or the run directory's ``credit-make``
artifact ``pairs.parquet`` with a manifest record. Both are preference files every stage reads.
"""

from __future__ import annotations

import gzip
import json
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from segtool.artifacts.files import atomic_path, stable_hash
from segtool.artifacts.fingerprint import fingerprint_path
from segtool.artifacts.manifest import RunDir, artifact_id
from segtool.artifacts.tables import credit_pairs_schema
from segtool.config.loader import config_to_dict, identity_view
from segtool.config.schema import Config
from segtool.console import STDERR
from segtool.credit import sources
from segtool.credit.defects import FAMILIES, inject
from segtool.credit.gold import GoldScorer
from segtool.credit.sentences import POSITIONS
from segtool.errors import ConfigError
from segtool.inputs.formatting import Encoder
from segtool.models.loading import load_tokenizer, resolve_model_source
from segtool.pipeline.common import already_complete
from segtool.pipeline.credit_samples import sample_sft, sft_prompt_path, sft_prompts

STAGE = "credit-make"
SCHEMA_VERSION = 1
PAIRS_FILE = "pairs.parquet"
OUT_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")


@dataclass(frozen=True)
class MakeOptions:
    source: str = "hh"  # hh, alpaca, gsm8k, sft or a file
    families: tuple[str, ...] = ()  # empty: every family the source admits
    positions: tuple[str, ...] = POSITIONS
    pairs: int = 300
    seed: int = 0
    out: Path | None = None  # None: the run directory's artifact
    prompts: str = ""  # sft: prompt list (.txt, one per line) or prompt file [default: data/credit/story_prompts.txt]
    samples: int = 0  # sft: samples to draw (0 = as many as --pairs)
    max_new_tokens: int = 256  # sft: sample length limit

    def check(self) -> None:
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown:
            raise ConfigError(f"--families: unknown family {unknown[0]!r}",
                              f"use a comma list of: {', '.join(FAMILIES)}")
        bad = [p for p in self.positions if p not in POSITIONS]
        if bad or not self.positions:
            raise ConfigError(f"--positions: {bad[0]!r} is not a position" if bad else "--positions is empty",
                              f"use a comma list of: {', '.join(POSITIONS)}")
        if self.pairs < 1:
            raise ConfigError("--pairs must be at least 1", "e.g. --pairs 210 (7 families x 3 positions x 10)")
        if self.out is not None and not str(self.out).endswith(OUT_SUFFIXES):
            raise ConfigError(f"--out {self.out}: unsupported file type",
                              f"end the name with {', '.join(OUT_SUFFIXES)}")
        if self.source == "sft" and (self.samples < 0 or self.max_new_tokens < 1):
            raise ConfigError("--samples must be >= 0 and --max-new-tokens >= 1",
                              "e.g. --samples 256 --max-new-tokens 256")


@dataclass
class Made:
    records: list[dict]
    summary: dict


@dataclass
class MakeResult:
    summary: dict
    output: str
    artifact_id: str = ""
    outcome: str = "computed"  # or "up-to-date" (an identical artifact exists in the run directory)

    def to_json(self) -> dict:
        return {"stage": STAGE, "outcome": self.outcome, "output": self.output, "artifact_id": self.artifact_id or None,
                **self.summary}


def pair_seed(seed: int, family: str, row: int, position: str) -> int:
    """The seed of one pair's ``random.Random``: stable across processes and Python versions."""
    return int(stable_hash([seed, family, row, position])[:15], 16)


def _prompt_field(prompt: tuple[dict, ...]):
    if len(prompt) == 1 and prompt[0]["role"] == "user":
        return prompt[0]["content"]
    return [dict(m) for m in prompt]


def make_pairs(rows: list[sources.Clean], opts: MakeOptions, encoder, toxic: list[str]) -> Made:
    """The pairs for ``rows`` (pure text work plus tokenization; no model)."""
    pool = sources.offtopic_pool(rows)
    families = list(opts.families) or admitted_families(rows, opts, pool, toxic)
    orders = {}
    for family in families:
        order = list(range(len(rows)))
        random.Random(pair_seed(opts.seed, family, -1, "order")).shuffle(order)
        orders[family] = order
    cursors: Counter = Counter()
    used = {family: set() for family in families}
    refused, unseen = Counter(), Counter()
    records, cells, asked = [], Counter(), Counter()
    prompt_lens = {}
    for job in range(opts.pairs):
        family = families[job % len(families)]
        position = opts.positions[(job // len(families)) % len(opts.positions)]
        asked[family, position] += 1
        order = orders[family]
        while cursors[family, position] < len(order):
            i = order[cursors[family, position]]
            cursors[family, position] += 1
            if i in used[family]:
                continue
            row = rows[i]
            seed = pair_seed(opts.seed, family, row.source_row, position)
            others = [s for r, s in pool if r != i] if family == "offtopic" else ()
            defect = inject(family, row.response, random.Random(seed), position, offtopic=others, toxic=toxic)
            if defect is None:
                refused[family] += 1
                continue
            if i not in prompt_lens:
                prompt_lens[i] = len(encoder.encode_prompt(row.prompt))
            tokens = encoder.token_span(defect.text, defect.span)
            if tokens is None or tokens[1] > encoder.max_len - prompt_lens[i] - 1:  # dropped, or cut with the tail
                unseen[family] += 1
                continue
            used[family].add(i)
            cells[family, position] += 1
            records.append({"prompt": _prompt_field(row.prompt), "chosen": row.response, "rejected": defect.text,
                            "defect_type": family, "defect_position": position, "defect_span": list(defect.span),
                            "defect_token_span": list(tokens), "source": row.source, "source_row": row.source_row,
                            "seed": seed})
            break
    table = {f: {p: cells[f, p] for p in opts.positions} for f in families}
    short = {f"{f}/{p}": asked[f, p] - cells[f, p]
             for f in families for p in opts.positions if cells[f, p] < asked[f, p]}
    summary = {"pairs": len(records), "requested": opts.pairs, "families": families,
               "positions": list(opts.positions), "table": table, "short": short,
               "not_admitted": {f: refused[f] for f in families}, "unseen": {f: unseen[f] for f in families}}
    return Made(records, summary)


def admitted_families(rows, opts: MakeOptions, pool, toxic) -> list[str]:
    """The families at least one row admits at one of the positions asked for."""
    out = []
    for family in FAMILIES:
        for i, row in enumerate(rows):
            others = [s for r, s in pool if r != i] if family == "offtopic" else ()
            if any(inject(family, row.response, random.Random(0), p, offtopic=others, toxic=toxic) is not None
                   for p in opts.positions):
                out.append(family)
                break
    if not out:
        raise ConfigError(f"--source {opts.source}: no response admits any defect family", "use another source")
    return out


# -- samples of the run's pi_SFT ------------------------------------------------------------------
def sft_rows(cfg: Config, opts: MakeOptions, model_source, encoder, quiet: bool) -> tuple[list[sources.Clean], dict]:
    """Samples of pi_SFT that ended with EOS and that the gold scorer finds clean (no repeated
    sentence, no unfinished ending): those can take one defect each."""
    count = opts.samples or opts.pairs
    prompts = sft_prompts(opts.prompts, cfg.data.skip_invalid)
    samples = sample_sft(cfg, model_source, encoder, prompts, count, opts.max_new_tokens, opts.seed, quiet)
    gold = GoldScorer()
    rows, unfinished, defective = [], 0, 0
    for k, sample in enumerate(samples):
        counts = gold.counts(sample.text)
        if not sample.ended or not sample.text:
            unfinished += 1
        elif counts["duplicate"] or counts["truncation"]:
            defective += 1
        else:
            rows.append(sources.Clean(sample.prompt, sample.text, sources.SOURCE_NAMES["sft"], k))
    stats = {"samples": count, "kept": len(rows), "no_eos": unfinished, "gold_defective": defective}
    if not rows:
        raise ConfigError(f"none of the {count} pi_SFT samples ended with EOS and was clean",
                          "draw more samples (--samples) or allow longer ones (--max-new-tokens)")
    return rows, stats


# -- identity and writing -------------------------------------------------------------------------
def identity(cfg: Config, opts: MakeOptions, model_source) -> dict:
    """What decides the pairs: options, sources and tokenizer by content (never by path)."""
    ident = {"families": list(opts.families), "positions": list(opts.positions), "pairs": opts.pairs,
             "seed": opts.seed, "tokenizer": model_source.fingerprint(), **identity_view(cfg, ("tokenize",)),
             "toxic": fingerprint_path(sources.TOXIC_SENTENCES)}
    if opts.source == "sft":
        model = {**identity_view(cfg, ("model",))["model"], "path": model_source.fingerprint()}
        ident["source"] = {"kind": "sft", "prompts": fingerprint_path(sft_prompt_path(opts.prompts)),
                           "samples": opts.samples or opts.pairs, "max_new_tokens": opts.max_new_tokens,
                           "temperature": cfg.ppo.sampling.temperature, "top_p": cfg.ppo.sampling.top_p, "model": model}
    else:
        path = sources.source_file(opts.source)
        ident["source"] = {"kind": "file", "name": sources.SOURCE_NAMES.get(opts.source, path.name),
                           "sha256": fingerprint_path(path), "skip_invalid": cfg.data.skip_invalid}
    return ident


def write_pairs(path: Path, records: list[dict]) -> None:
    """A preference file (.jsonl, .jsonl.gz or .parquet), written atomically."""
    with atomic_path(path) as tmp:
        if str(path).endswith(".parquet"):
            chat = any(not isinstance(r["prompt"], str) for r in records)
            rows = [{**r, "prompt": [{"role": "user", "content": r["prompt"]}] if chat and isinstance(r["prompt"], str)
                     else r["prompt"]} for r in records]
            pq.write_table(pa.Table.from_pylist(rows, schema=credit_pairs_schema(chat)), tmp)
        else:
            opener = gzip.open if str(path).endswith(".gz") else open
            with opener(tmp, "wt", encoding="utf-8") as fh:
                fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def run(cfg: Config, opts: MakeOptions, *, force: bool = False, quiet: bool = False) -> MakeResult:
    started = time.perf_counter()
    opts.check()
    model_source = resolve_model_source(cfg.model)
    rundir = RunDir(cfg.run.workdir) if opts.out is None else None
    art_id = ""
    if rundir is not None:
        ident = identity(cfg, opts, model_source)
        art_id = artifact_id(STAGE, ident, [], SCHEMA_VERSION)
        done = already_complete(rundir, STAGE, art_id, config_to_dict(cfg), force)
        if done:
            path = rundir.path_of(done.record, PAIRS_FILE)
            return MakeResult(done.record["metrics"], str(path), art_id, "up-to-date")

    # Everything is read, generated and checked before anything is written: bad input leaves no file.
    tokenizer = load_tokenizer(model_source, cfg.model)
    encoder = Encoder.create(tokenizer, cfg.tokenize.max_len, cfg.tokenize.max_prompt_len, cfg.tokenize.template)
    toxic = sources.read_lines(sources.TOXIC_SENTENCES, "toxic sentences")
    sft_stats, invalid = None, []
    if opts.source == "sft":
        rows, sft_stats = sft_rows(cfg, opts, model_source, encoder, quiet)
    else:
        read = sources.read_source(opts.source, skip_invalid=cfg.data.skip_invalid)
        rows, invalid = read.rows, read.invalid
        for err in invalid:
            STDERR.print(f"[yellow]skipped[/] {err.message}", highlight=False)
    made = make_pairs(rows, opts, encoder, toxic)
    if not made.records:
        raise ConfigError(f"--source {opts.source}: no response admits the families "
                          f"{', '.join(made.summary['families'])} at {', '.join(opts.positions)}",
                          "choose other --families / --positions, or another source")
    summary = {"source": opts.source, "source_rows": len(rows), "invalid_skipped": len(invalid), **made.summary}
    if sft_stats is not None:
        summary["sft"] = sft_stats
    if rundir is None:
        try:
            write_pairs(opts.out, made.records)
        except OSError as err:
            raise ConfigError(f"cannot write --out {opts.out}: {err.strerror or err}",
                              "give a file path in a folder you can write to") from None
        return MakeResult(summary, str(opts.out))
    record = rundir.begin(STAGE, art_id, config=config_to_dict(cfg), identity_config=ident, parents=[],
                          schema_version=SCHEMA_VERSION, resume=False,
                          inputs={"source": opts.source, "model": str(model_source.location)})
    path = rundir.path_of(record, PAIRS_FILE)
    write_pairs(path, made.records)
    rundir.add_file(art_id, PAIRS_FILE)
    rundir.complete(art_id, rows={"pairs": len(made.records)}, metrics=summary, seconds=time.perf_counter() - started)
    return MakeResult(summary, str(path), art_id)
