"""`segtool eval credit`: does a reward model's credit point at a known defect?

Input: a credit pair file, an ordinary preference file whose rejected answer carries exactly one
injected defect (fields defect_type, defect_position, defect_span; README: Credit-assignment
benchmark). Per pair: pairwise accuracy of e(x, y), scored exactly as `eval rm` scores it; and on the
rejected answer the localisation metrics of ``segtool.credit.metrics`` over a per-token credit:

* ``segments``: the segment rewards r_t spread over their tokens as PPO spreads them (METHOD §5 step 4,
  ``--interpolation``); the pointing game ranks the segments by r_t;
* ``values``: v_i - v_(i-1), v_(-1) being the value at the last prompt token: the per-token reward the
  adaptive segmentation reads from a dense RM (METHOD §7), and the standard credit of a bandit RM;
  every token is its own unit in the pointing game.

Gold tokens: the rejected text's character span mapped to response tokens with the RM's own fast
tokenizer (offsets of the text exactly as the Encoder tokenizes it); the EOS is never scored. Output:
an ``eval-credit`` artifact with pairs.parquet, summary.json, report.md, report.html, one PNG per
metric and heatmaps.html.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

from segtool.artifacts.manifest import RunDir, artifact_id
from segtool.config.loader import config_to_dict, identity_view
from segtool.config.schema import Config
from segtool.core.ppo import INTERPOLATIONS
from segtool.credit import metrics
from segtool.errors import ConfigError
from segtool.inputs.rows import Pair, RowError, parse_pair
from segtool.pipeline.bench_eval import strict_json
from segtool.pipeline.common import STDERR, StageResult, already_complete

STAGE = "eval-credit"
SCHEMA_VERSION = 1
DEFECT_TYPES = ("arithmetic", "swap", "duplicate", "offtopic", "toxic", "negation", "truncation")
POSITIONS = ("beginning", "middle", "end")
CREDITS = ("auto", "segments", "values")
METRICS = ("accuracy", "auroc", "pointing", "mass_in_span")
FILES = {"pairs": "pairs.parquet", "summary": "summary.json", "markdown": "report.md", "html": "report.html",
         "heatmaps": "heatmaps.html"}


# -- input --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreditPair:
    pair: Pair
    defect_type: str
    position: str
    span: tuple[int, int]  # half-open character span of the defect in pair.rejected

    @property
    def row_id(self) -> int:
        return self.pair.row_id


def parse_credit_pair(row_id: int, data: dict, where: str, fmt: str = "auto") -> CreditPair:
    """One credit pair row: a preference row plus its defect fields (other extra fields are ignored)."""
    if data.get("prompt") is None and isinstance(data.get("rejected"), str):
        raise RowError(where, "prompt", "is missing", "credit pairs need 'prompt' and the bare response in 'rejected' "
                       "(defect_span counts characters of that response)")
    pair = parse_pair(row_id, data, where, fmt)
    for field, allowed in (("defect_type", DEFECT_TYPES), ("defect_position", POSITIONS)):
        if data.get(field) not in allowed:
            problem = "is missing" if data.get(field) is None else f"is {data[field]!r}"
            raise RowError(where, field, problem, f"use one of: {', '.join(allowed)}")
    span = data.get("defect_span")
    if not (isinstance(span, (list, tuple)) and len(span) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in span)):
        problem = "is missing" if span is None else f"is {span!r}, not two integers [start, end]"
        raise RowError(where, "defect_span", problem, "give the half-open character span [start, end) of the defect in 'rejected'")
    start, end = span
    if not 0 <= start < end <= len(pair.rejected):
        raise RowError(where, "defect_span", f"[{start}, {end}] is not a non-empty span of 'rejected' ({len(pair.rejected)} characters)",
                       "give 0 <= start < end <= the length of 'rejected'")
    return CreditPair(pair, data["defect_type"], data["defect_position"], (start, end))


def read_credit_pairs(cfg: Config):
    from segtool.inputs.rows import read_pairs

    return read_pairs(cfg.data.path, name=cfg.data.name, split=cfg.data.split, fmt=cfg.data.format,
                      max_rows=cfg.data.max_rows, skip_invalid=cfg.data.skip_invalid, parse=parse_credit_pair)


def gold_tokens(encoder, text: str, span: tuple[int, int], n_scored: int) -> np.ndarray | None:
    """[n_scored] bool: which of the first n_scored response tokens overlap the character span of
    ``text``, from the fast tokenizer's offsets of the text the Encoder tokenizes. None when the
    tokenizer does not give the text back (it drops or changes characters, so offsets are unreliable)."""
    tokenizer = encoder.tokenizer
    fed = encoder.response_text(text)
    enc = tokenizer(fed, add_special_tokens=False, return_offsets_mapping=True)
    back = tokenizer.decode(enc.input_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    if back.strip() != text.strip():
        return None
    offsets = np.asarray(enc.offset_mapping[:n_scored], dtype=np.int64).reshape(-1, 2) - (len(fed) - len(text))
    return metrics.tokens_overlapping(offsets, *span)


# -- credit -------------------------------------------------------------------------------------


@dataclass
class Credit:
    tokens: np.ndarray  # [n_scored] float64: credit of every response token but the EOS
    unit_ends: np.ndarray  # last token of each unit the pointing game ranks (segments, or single tokens)
    unit_credit: np.ndarray  # credit of each unit


def segment_credit(values: np.ndarray, ends: np.ndarray, readout: str, interpolation: str) -> Credit:
    """r_t of every segment (the RM's read-out) and its spread over the segment's tokens.

    values: v from the last prompt token to the EOS, [n + 1]; ends: segment ends in the response.
    """
    import torch

    from segtool.core.ppo import interpolate
    from segtool.core.rewards import segment_rewards

    v = torch.from_numpy(np.asarray(values, dtype=np.float32))[None]
    ends_t = torch.from_numpy(np.asarray(ends, dtype=np.int64))
    rows = torch.zeros_like(ends_t)
    r = segment_rewards(v, ends_t + 1, rows, readout, torch.zeros(1, dtype=torch.long))  # v[0]: last prompt token
    n = v.shape[1] - 1
    tokens = interpolate(r, ends_t, rows, (1, n), interpolation)[0, : n - 1]
    return Credit(tokens.double().numpy(), np.asarray(ends), r.double().numpy())


def value_credit(values: np.ndarray) -> Credit:
    """v_i - v_(i-1) for every response token but the EOS; each token is its own unit."""
    import torch

    from segtool.core.adaptive import value_token_rewards

    v = torch.from_numpy(np.asarray(values, dtype=np.float32))
    diffs = value_token_rewards(v[None, 1:], v[:1])[0, :-1].double().numpy()
    return Credit(diffs, np.arange(len(diffs)), diffs)


def localisation(credit: Credit, gold: np.ndarray | None) -> dict:
    if gold is None:
        return {"auroc": float("nan"), "pointing": float("nan"), "mass_in_span": float("nan")}
    return {"auroc": metrics.token_auroc(credit.tokens, gold),
            "pointing": metrics.pointing_game(credit.unit_credit, metrics.unit_overlaps(credit.unit_ends, gold)),
            "mass_in_span": metrics.mass_in_span(credit.tokens, gold)}


def resolve_credit(meta: dict, credit: str, interpolation: str) -> str:
    """The credit actually computed: segments or values (auto: values for bandit RMs)."""
    if credit not in CREDITS:
        raise ConfigError(f"--credit {credit} is not known", f"use one of: {', '.join(CREDITS)}")
    if interpolation not in INTERPOLATIONS:
        raise ConfigError(f"--interpolation {interpolation} is not known", f"use one of: {', '.join(INTERPOLATIONS)}")
    if meta["strategy"] == "adaptive":
        raise ConfigError("this reward model was trained on adaptive segments, which new text cannot be segmented into "
                          "without their token-reward source", "evaluate a reward model trained with another segment.strategy")
    if credit == "auto":
        return "values" if meta["strategy"] == "bandit" else "segments"
    return credit


def describe(mode: str, interpolation: str) -> str:
    if mode == "values":
        return "value differences v_i - v_(i-1) per token (the adaptive per-token reward of METHOD §7)"
    spread = {"even": "r_t / |a_t| on each of its tokens", "repeat": "r_t on each of its tokens",
              "end": "r_t on its last token"}[interpolation]
    return f"segment rewards spread as in PPO ({interpolation}: {spread})"


# -- summary ------------------------------------------------------------------------------------


def summarise_group(columns: dict, mask: np.ndarray, seed: int) -> dict:
    return {"pairs": int(mask.sum()),
            **{name: metrics.bootstrap_interval(np.asarray(columns[name], dtype=np.float64)[mask], seed) for name in METRICS}}


def summarise(columns: dict, seed: int) -> dict:
    """Overall, per defect family and per position: each metric's mean and 95% bootstrap interval."""
    types, positions = np.asarray(columns["defect_type"]), np.asarray(columns["position"])
    return {
        "overall": summarise_group(columns, np.ones(len(types), dtype=bool), seed),
        "families": {f: summarise_group(columns, types == f, seed) for f in DEFECT_TYPES if (types == f).any()},
        "positions": {p: summarise_group(columns, positions == p, seed) for p in POSITIONS if (positions == p).any()},
    }


# -- the stage ----------------------------------------------------------------------------------


def run(cfg: Config, rm: str | None = None, *, credit: str = "auto", interpolation: str = "even", heatmaps: int = 3,
        force: bool = False, quiet: bool = False) -> StageResult:
    from segtool.artifacts.fingerprint import fingerprint_path
    from segtool.models.reward import METADATA
    from segtool.pipeline import rm_scoring, segment, train_rm
    from segtool.viz.rewards import rm_label

    started = time.perf_counter()
    if heatmaps < 0:
        raise ConfigError(f"--heatmaps {heatmaps} is negative", "give the number of pairs per defect family to draw (0 = none)")
    folder, parents = rm_scoring.resolve_rm_folder(cfg, rm)
    meta = json.loads((folder / METADATA).read_text())
    mode = resolve_credit(meta, credit, interpolation)
    ident = {**identity_view(cfg, ("data",)), "rm": fingerprint_path(folder), "credit": mode,
             "interpolation": interpolation if mode == "segments" else None, "heatmaps": heatmaps, "seed": cfg.run.seed}
    ident["data"]["path"] = segment.data_identity(cfg)
    art_id = artifact_id(STAGE, ident, parents, SCHEMA_VERSION)
    rundir = RunDir(cfg.run.workdir)
    done = already_complete(rundir, STAGE, art_id, None, force)
    if done:
        return done

    report = read_credit_pairs(cfg)  # every row checked before any model is loaded
    setup = rm_scoring.load_setup(cfg, folder)
    if not getattr(setup.encoder.tokenizer, "is_fast", False):
        raise ConfigError(f"the tokenizer in {folder} is not a fast tokenizer: defect spans cannot be mapped to its tokens",
                          "save the reward model with a fast tokenizer (tokenizer.json)")
    items = report.pairs
    pairs = rm_scoring.segment_pairs(setup, [item.pair for item in items])
    autocast = train_rm.make_autocast(cfg.train_rm, setup.device)
    scores, values = rm_scoring.score_pairs(setup, pairs, cfg.train_rm.micro_batch, autocast, keep_values=True)

    columns = {k: [] for k in ("row_id", "defect_type", "position", "e_chosen", "e_rejected", "correct", *METRICS[1:],
                               "n_tokens", "span_tokens", "aligned")}
    shown, per_family = [], dict.fromkeys(DEFECT_TYPES, 0)
    for k, (item, (_, rejected)) in enumerate(zip(items, pairs)):
        n_scored = len(rejected.response) - 1
        gold = gold_tokens(setup.encoder, item.pair.rejected, item.span, n_scored)
        c = value_credit(values[k][1]) if mode == "values" else segment_credit(values[k][1], rejected.ends, meta["readout"], interpolation)
        local = localisation(c, gold)
        row = {"row_id": item.row_id, "defect_type": item.defect_type, "position": item.position,
               "e_chosen": float(scores[k, 0]), "e_rejected": float(scores[k, 1]), "correct": bool(scores[k, 0] > scores[k, 1]),
               **local, "n_tokens": n_scored, "span_tokens": int(gold.sum()) if gold is not None else 0, "aligned": gold is not None}
        for key, value in row.items():
            columns[key].append(value)
        if per_family[item.defect_type] < heatmaps:
            per_family[item.defect_type] += 1
            shown.append({**row, "ids": rejected.response.tolist(), "credit": c.tokens.tolist(),
                          "gold": gold.tolist() if gold is not None else None})
    columns["accuracy"] = [float(x) for x in columns["correct"]]

    unaligned = int(len(items) - sum(columns["aligned"]))
    span_lost = int(sum(a and s == 0 for a, s in zip(columns["aligned"], columns["span_tokens"])))
    summary = {"rm": str(folder), "name": str(folder) if rm else rundir.root.name, "label": rm_label(meta),
               "credit": mode, "credit_description": describe(mode, interpolation),
               "interpolation": interpolation if mode == "segments" else None, "data": cfg.data.path,
               "pairs": len(items), "skipped_rows": len(report.invalid), "unaligned": unaligned, "span_truncated": span_lost,
               "bootstrap": {"resamples": metrics.RESAMPLES, "level": metrics.LEVEL, "seed": cfg.run.seed},
               **summarise(columns, cfg.run.seed)}
    if unaligned and not quiet:
        STDERR.print(f"eval credit: the tokenizer does not give back the rejected text of {unaligned} pair(s); "
                     "they count for accuracy but not for localisation", highlight=False)
    _write(rundir, cfg, art_id, ident, parents, folder, columns, summary, shown, setup.encoder.tokenizer)
    record = rundir.complete(art_id, rows={"pairs": len(items)}, metrics=strict_json(summary),
                             seconds=time.perf_counter() - started)
    return StageResult(STAGE, art_id, "computed", str(rundir.root), record, record["metrics"])


def _write(rundir: RunDir, cfg: Config, art_id: str, ident: dict, parents: list, folder, columns: dict, summary: dict,
           shown: list, tokenizer) -> None:
    """Open the artifact and write its files, each atomically, then record them (the caller completes it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from segtool.artifacts.files import atomic_path, atomic_write_json, atomic_write_text
    from segtool.viz import credit as viz

    record = rundir.begin(STAGE, art_id, config=config_to_dict(cfg), identity_config=ident, parents=parents,
                          schema_version=SCHEMA_VERSION, inputs={"rm": str(folder), "data": cfg.data.path}, resume=False)
    with atomic_path(rundir.path_of(record, FILES["pairs"])) as tmp:
        pq.write_table(pa.table({k: v for k, v in columns.items() if k != "accuracy"}), tmp)
    plots = {name: viz.plot_png(summary, name) for name in METRICS}
    for name, png in plots.items():
        with atomic_path(rundir.path_of(record, f"{name}.png")) as tmp:
            tmp.write_bytes(png)
    atomic_write_text(rundir.path_of(record, FILES["markdown"]), viz.markdown_report(summary, {m: f"{m}.png" for m in METRICS}))
    atomic_write_text(rundir.path_of(record, FILES["html"]), viz.html_report(summary, plots))
    atomic_write_text(rundir.path_of(record, FILES["heatmaps"]), viz.heatmaps_html(summary, shown, tokenizer))
    atomic_write_json(rundir.path_of(record, FILES["summary"]), strict_json(summary))
    for name in [*FILES.values(), *(f"{m}.png" for m in METRICS)]:
        rundir.add_file(art_id, name)
