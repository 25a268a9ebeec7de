"""`segtool segment`: per-token entropies of pi_SFT and segment boundaries for every response.

Output artifact: Parquet shards ``part-NNNNN.parquet`` (one per ``segment.shard_rows`` input rows,
the unit of --resume) with columns row_id, side, prompt_token_ids, response_token_ids, entropy
(one float32 per response position, EOS included) and segment_ends (int32 indices into the
response). Strategy ``adaptive`` (METHOD §7) adds token_reward, baseline, state, band and pivots
(``tables.SEGMENTS_ADAPTIVE``): segments are maximal runs of one Schmitt-trigger state over token
rewards from a reward model or a DPO policy (``pipeline.adaptive_rewards``). Strategy ``sat`` ends
segments at the sentences of a SaT model (``models.sat``, optional wtpsplit), named in the identity.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow.parquet as pq

from segtool.artifacts.files import atomic_path
from segtool.artifacts.fingerprint import fingerprint_path
from segtool.artifacts.manifest import RunDir
from segtool.config.loader import identity_view
from segtool.config.schema import Config
from segtool.console import STDERR, progress
from segtool.core.batching import length_sorted_batches
from segtool.core.boundaries import punct_table, segment_lengths_flat
from segtool.errors import ConfigError, InputError
from segtool.inputs.formatting import Encoder
from segtool.inputs.readers import describe_source
from segtool.inputs.rows import RowError, read_pairs
from segtool.models.loading import load_causal_lm, load_tokenizer, resolve_model_source
from segtool.models.sat import load_sat, sat_identity, sentence_end_marks, wtpsplit_version
from segtool.models.segmentation import (
    SIDES,
    Sequence,
    compute_entropies,
    encode_pairs,
    entropy_pack_width,
    pair_texts,
    shard_table,
)
from segtool.pipeline.adaptive_rewards import TokenScorer, resolve_source
from segtool.pipeline.common import StageResult
from segtool.pipeline.runner import run_stage
from segtool.pipeline.stage import Context, Outcome, Plan, Stage

STAGE = "segment"
SCHEMA_VERSION = 1  # the six-column table of every strategy but adaptive
ADAPTIVE_SCHEMA_VERSION = 2  # SEGMENTS_ADAPTIVE
ADAPTIVE_KEYS = ("adaptive_source", "adaptive_model", "baseline", "delta", "td_alpha")
SECTIONS = ("model", "data", "tokenize", "segment")


def data_identity(cfg: Config) -> dict:
    if describe_source(cfg.data.path) == "file":
        return {"kind": "file", "sha256": fingerprint_path(cfg.data.path)}
    return {"kind": "hub", "name": cfg.data.path}


def plan(cfg: Config) -> Plan:
    """Identity of the artifact this config would produce (hashes inputs; loads no model)."""
    source = resolve_model_source(cfg.model)
    inputs = {"model": source.fingerprint(), "data": data_identity(cfg)}
    ident = identity_view(cfg, SECTIONS)
    ident["model"]["path"] = inputs["model"]
    ident["data"]["path"] = inputs["data"]
    if cfg.segment.strategy == "sat":
        ident["segment"]["sat_model"] = inputs["sat_model"] = sat_identity(cfg.segment.sat_model)
    else:  # the SaT model never changes other strategies' output
        ident["segment"].pop("sat_model")
    if cfg.segment.strategy != "adaptive":  # adaptive knobs never change other strategies' output
        for key in ADAPTIVE_KEYS:
            ident["segment"].pop(key)
        return Plan.of(STAGE, ident, [], SCHEMA_VERSION, inputs=inputs, resolved={"model": source})

    adaptive = resolve_source(cfg)
    ident["segment"]["adaptive_model"] = adaptive.fingerprint  # content, never the path
    inputs["adaptive_model"] = {"kind": adaptive.kind, "sha256": adaptive.fingerprint}
    return Plan.of(STAGE, ident, adaptive.parents, ADAPTIVE_SCHEMA_VERSION, inputs=inputs,
                   resolved={"model": source, "adaptive": adaptive})


def drop_untokenizable(report, encoder, path: str, skip_invalid: bool) -> None:
    """Rows whose chosen or rejected response encodes to no token at all (the tokenizer drops every
    character), found before the run directory is touched: an error naming the row and field, or,
    with --skip-invalid, moved from ``report.pairs`` to ``report.invalid``."""
    kept = []
    for pair in report.pairs:
        side = next((s for s in SIDES if len(encoder.encode_response(getattr(pair, s), 0)) < 2), None)
        if side is None:
            kept.append(pair)
            continue
        error = RowError(f"{path}: row {pair.row_id}", side, "has no tokens for this model's tokenizer",
                         "give a response with text the tokenizer keeps")
        if not skip_invalid:
            raise error
        report.invalid.append(error)
    report.pairs = kept


def adaptive_scores(scorer, seqs: list[Sequence], cfg: Config, advance=None) -> list:
    """Token rewards and trigger states of every sequence, in length-sorted batches."""
    out = [None] * len(seqs)
    lengths = [len(s.prompt) + len(s.response) for s in seqs]
    for batch in length_sorted_batches(lengths, cfg.segment.batch_tokens):
        scores = scorer.score([seqs[i].prompt for i in batch], [seqs[i].response for i in batch])
        for i, sc in zip(batch, scores):
            out[i] = sc
        if advance is not None:
            advance(len(batch))
    return out


def summarise(rundir: RunDir, record: dict) -> dict:
    """Rows, tokens, segments and segment-length statistics over all shards."""
    names = sorted(n for n in record["files"] if n.startswith("part-"))
    table = pq.read_table([str(rundir.path_of(record, n)) for n in names], columns=["response_token_ids", "segment_ends", "prompt_token_ids"])
    counts = table["segment_ends"].combine_chunks().value_lengths().to_numpy()
    ends = table["segment_ends"].combine_chunks().flatten().to_numpy()
    seg_lens = segment_lengths_flat(ends, counts)
    resp_tokens = int(table["response_token_ids"].combine_chunks().value_lengths().to_numpy().sum())
    prompt_tokens = int(table["prompt_token_ids"].combine_chunks().value_lengths().to_numpy().sum())
    forward_s = sum(record["files"][n].get("forward_seconds", 0.0) for n in names)
    return {
        "sequences": table.num_rows,
        "response_tokens": resp_tokens,
        "prompt_tokens": prompt_tokens,
        "segments": int(seg_lens.size),
        "mean_segment_len": round(float(seg_lens.mean()), 3),
        "median_segment_len": float(np.median(seg_lens)),
        "segments_per_response": round(float(seg_lens.size / max(table.num_rows, 1)), 3),
        "forward_seconds": round(forward_s, 3),
        "tokens_per_s": round((resp_tokens + prompt_tokens) / forward_s, 1) if forward_s else None,
        **(adaptive_summary(pq.read_table([str(rundir.path_of(record, n)) for n in names], columns=["side", "state", "pivots"]))
           if record["schema_version"] == ADAPTIVE_SCHEMA_VERSION else {}),
    }


def adaptive_summary(table) -> dict:
    """Share of good tokens, pivots per response, and the share of tokens the DPO mask keeps
    (chosen tokens in good segments, rejected tokens in bad ones)."""
    state = table["state"].combine_chunks()
    good = state.flatten().to_numpy() > 0
    chosen = np.repeat(np.array(table["side"].to_pylist()) == "chosen", state.value_lengths().to_numpy())
    kept = np.where(chosen, good, ~good)
    return {
        "good_token_fraction": round(float(good.mean()), 4),
        "pivots_per_response": round(float(table["pivots"].combine_chunks().value_lengths().to_numpy().mean()), 3),
        "dpo_mask_kept_fraction": round(float(kept.mean()), 4),
    }


def describe_inputs(the_plan: Plan, cfg: Config, model, tokenizer, encoder, invalid: int) -> dict:
    """What the manifest records about the model, tokenizer, data and EOS policy."""
    inputs = dict(the_plan.inputs)
    inputs["model"] = {**inputs["model"], "source": the_plan.resolved["model"].location, "class": type(model).__name__,
                       "vocab_size": int(model.config.vocab_size), "commit": getattr(model.config, "_commit_hash", None)}
    inputs["tokenizer"] = {"class": type(tokenizer).__name__, "eos_token": tokenizer.eos_token,
                           "eos_token_id": encoder.eos_id, "template": "chat" if encoder.use_chat_template else "plain"}
    inputs["data"] = {**inputs["data"], "source": cfg.data.path, "invalid_skipped": invalid}
    inputs["eos_policy"] = "eos_in_last_segment" if cfg.segment.eos_in_last_segment else "last_segment_ends_before_eos"
    return inputs


def write_shards(rundir: RunDir, record: dict, pairs, encoder, model, device: str, cfg: Config, quiet: bool,
                 scorer=None, splitter=None) -> None:
    """Compute and write every shard the record does not have yet, recording each one as it lands.

    Shards cover consecutive input rows; tokens are built shard by shard so memory stays bounded by
    the shard size whatever the dataset size (rows were already validated as text). splitter: the
    sentence splitter of strategy sat (``models.sat``).
    """
    table_punct = punct_table(encoder.tokenizer) if cfg.segment.strategy == "punct" else None
    shard_rows = record["layout"]["shard_rows"]  # a resumed artifact keeps its original sharding
    shards = [pairs[i : i + shard_rows] for i in range(0, len(pairs), shard_rows)]
    todo = [k for k in range(len(shards)) if f"part-{k:05d}.parquet" not in record["files"]]
    passes = 2 if scorer is None else 4  # responses per input row, times one more pass for token rewards
    width = entropy_pack_width(model, cfg, device) if todo else 0
    with progress(quiet, passes * sum(len(shards[k]) for k in todo), f"segment ({cfg.segment.strategy})") as advance:
        for k in todo:
            seqs = encode_pairs(shards[k], encoder)
            t0 = time.perf_counter()
            entropies = compute_entropies(model, seqs, cfg, device, advance, width)
            adaptive = adaptive_scores(scorer, seqs, cfg, advance) if scorer is not None else None
            forward_s = time.perf_counter() - t0
            sentences = None if splitter is None else sentence_end_marks(
                splitter, encoder, pair_texts(shards[k]), [len(s.response) for s in seqs])
            table = shard_table(seqs, entropies, cfg, table_punct, adaptive, sentences)
            name = f"part-{k:05d}.parquet"
            _write_parquet(table, rundir.path_of(record, name))
            rundir.add_file(record["id"], name, {"rows": table.num_rows, "forward_seconds": round(forward_s, 4)})


def read_inputs(cfg: Config, source):
    """(rows report, tokenizer, encoder): every row read and checked, before the run directory is touched."""
    report = read_pairs(
        cfg.data.path, name=cfg.data.name, split=cfg.data.split, fmt=cfg.data.format,
        max_rows=cfg.data.max_rows, skip_invalid=cfg.data.skip_invalid,
    )
    tokenizer = load_tokenizer(source, cfg.model)
    encoder = Encoder.create(tokenizer, cfg.tokenize.max_len, cfg.tokenize.max_prompt_len, cfg.tokenize.template)
    drop_untokenizable(report, encoder, cfg.data.path, cfg.data.skip_invalid)
    if not report.pairs:
        raise InputError(f"{cfg.data.path}: no row has text the tokenizer keeps", "check the file and the model")
    for err in report.invalid:
        STDERR.print(f"[yellow]skipped[/] {err.message}", highlight=False)
    return report, tokenizer, encoder


def compute(ctx: Context) -> Outcome:
    cfg, the_plan = ctx.cfg, ctx.plan
    # Read and validate everything before touching the run directory: bad input leaves no artifact.
    report, tokenizer, encoder = read_inputs(cfg, the_plan.resolved["model"])
    model = load_causal_lm(the_plan.resolved["model"], cfg.model, ctx.device)
    ctx_len = getattr(model.config, "max_position_embeddings", None)
    if ctx_len and cfg.tokenize.max_len > ctx_len:
        raise ConfigError(
            f"tokenize.max_len = {cfg.tokenize.max_len} exceeds the model's context of {ctx_len} tokens",
            f"set tokenize.max_len <= {ctx_len} (and max_prompt_len below it)",
        )

    inputs = describe_inputs(the_plan, cfg, model, tokenizer, encoder, len(report.invalid))
    splitter = None
    if cfg.segment.strategy == "sat":  # loaded before the run directory is touched: a missing extra leaves nothing
        splitter = load_sat(cfg.segment.sat_model, ctx.device)
        inputs["sat_model"] = {**inputs["sat_model"], "source": cfg.segment.sat_model, "wtpsplit": wtpsplit_version()}
    scorer = None
    if "adaptive" in the_plan.resolved:
        adaptive = the_plan.resolved["adaptive"]
        scorer = TokenScorer(cfg, adaptive, ctx.device, the_plan.inputs["model"])
        inputs["adaptive_model"] = {**inputs["adaptive_model"], "source": str(adaptive.folder)}
    if ctx.partial() and not ctx.resume:
        STDERR.print(f"found a partial {STAGE} artifact {the_plan.art_id[:12]}; starting it over (pass --resume to continue it)")
    record = ctx.begin(inputs, layout={"shard_rows": cfg.segment.shard_rows})

    write_shards(ctx.rundir, record, report.pairs, encoder, model, ctx.device, cfg, ctx.quiet, scorer, splitter)
    metrics = summarise(ctx.rundir, ctx.rundir.get(the_plan.art_id))
    metrics["invalid_skipped"] = len(report.invalid)
    return Outcome({"pairs": len(report.pairs), "sequences": metrics["sequences"], "invalid_skipped": len(report.invalid)},
                   metrics)


DEFINITION = Stage(STAGE, plan, compute)


def run(cfg: Config, *, resume: bool = False, force: bool = False, quiet: bool = False) -> StageResult:
    return run_stage(DEFINITION, cfg, resume=resume, force=force, quiet=quiet)


def _write_parquet(table, path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
