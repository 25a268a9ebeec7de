"""`segtool eval credit`: does a reward model's credit point at a known defect?

Input: a credit pair file, an ordinary preference file whose rejected answer carries exactly one
injected defect (fields defect_type, defect_position, defect_span; README: Credit-assignment
benchmark). Per pair: pairwise accuracy of e(x, y), scored exactly as `eval rm` scores it; and on the
rejected answer the localisation metrics of ``segtool.credit.metrics`` over a per-token credit:

* ``segments``: the segment rewards r_t spread over their tokens as PPO spreads them (METHOD §5 step 4,
  ``--interpolation``); the pointing game ranks the segments by r_t;
* ``values``: v_i - v_(i-1), v_(-1) being the value at the last prompt token: the per-token reward the
  adaptive segmentation reads from a dense RM (METHOD §7), and the standard credit of a bandit RM;
  every token is its own unit in the pointing game;
* ``dpo`` (a DPO policy instead of an RM): the implicit reward beta (log pi(y_i) - log pi_ref(y_i)),
  the other source of adaptive token rewards; e(x, y) is its sum over the answer.

Gold tokens: the rejected text's character span mapped to response tokens with the RM's own fast
tokenizer (offsets of the text exactly as the Encoder tokenizes it); the EOS is never scored. Output:
an ``eval-credit`` artifact with pairs.parquet, summary.json, report.md, report.html, one PNG per
metric and heatmaps.html.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from segtool.artifacts.files import atomic_path, atomic_write_json, atomic_write_text
from segtool.artifacts.fingerprint import fingerprint_path
from segtool.artifacts.manifest import RunDir, artifact_id
from segtool.config.loader import config_to_dict, identity_view
from segtool.config.modes import INTERPOLATIONS
from segtool.config.schema import Config
from segtool.console import STDERR
from segtool.core.adaptive import value_token_rewards
from segtool.core.batching import length_sorted_batches
from segtool.core.ppo import interpolate
from segtool.core.rewards import segment_rewards
from segtool.credit import metrics
from segtool.errors import ArtifactError, ConfigError
from segtool.inputs.formatting import Encoder
from segtool.inputs.rows import Pair, RowError, parse_pair, read_pairs
from segtool.models import rm_scoring
from segtool.models.loading import load_tokenizer, pick_device, resolve_model_source
from segtool.models.precision import make_autocast
from segtool.models.reward import METADATA
from segtool.models.segmentation import encode_pairs
from segtool.pipeline import adaptive_rewards, segment
from segtool.pipeline.bench_eval import strict_json
from segtool.pipeline.common import StageResult, already_complete, exclusive_stage
from segtool.training.checkpoints import POLICY_METADATA
from segtool.viz import credit as viz
from segtool.viz.rewards import rm_label

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
    return read_pairs(cfg.data.path, name=cfg.data.name, split=cfg.data.split, fmt=cfg.data.format,
                      max_rows=cfg.data.max_rows, skip_invalid=cfg.data.skip_invalid, parse=parse_credit_pair)


def gold_tokens(encoder, text: str, span: tuple[int, int], n_scored: int) -> np.ndarray:
    """[n_scored] bool: which of the first n_scored response tokens overlap the character span of
    ``text``, from the Encoder's offsets of the text as it tokenizes it (aligned to the text also when
    the tokenizer drops characters, as the tiny model's does with '=' and '*')."""
    offsets = np.asarray(encoder.response_offsets(text)[:n_scored], dtype=np.int64).reshape(-1, 2)
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
    v = torch.from_numpy(np.asarray(values, dtype=np.float32))[None]
    ends_t = torch.from_numpy(np.asarray(ends, dtype=np.int64))
    rows = torch.zeros_like(ends_t)
    r = segment_rewards(v, ends_t + 1, rows, readout, torch.zeros(1, dtype=torch.long))  # v[0]: last prompt token
    n = v.shape[1] - 1
    tokens = interpolate(r, ends_t, rows, (1, n), interpolation)[0, : n - 1]
    return Credit(tokens.double().numpy(), np.asarray(ends), r.double().numpy())


def value_credit(values: np.ndarray) -> Credit:
    """v_i - v_(i-1) for every response token but the EOS; each token is its own unit."""
    v = torch.from_numpy(np.asarray(values, dtype=np.float32))
    diffs = value_token_rewards(v[None, 1:], v[:1])[0, :-1].double().numpy()
    return Credit(diffs, np.arange(len(diffs)), diffs)


def localisation(credit: Credit, gold: np.ndarray) -> dict:
    return {"auroc": metrics.token_auroc(credit.tokens, gold),
            "pointing": metrics.pointing_game(credit.unit_credit, metrics.unit_overlaps(credit.unit_ends, gold)),
            "mass_in_span": metrics.mass_in_span(credit.tokens, gold)}


def resolve_credit(meta: dict, credit: str) -> str:
    """The credit a reward model gives: segments or values (auto: values for bandit RMs)."""
    if credit not in CREDITS:
        raise ConfigError(f"--credit {credit} is not known", f"use one of: {', '.join(CREDITS)}")
    if meta["strategy"] == "adaptive":
        raise ConfigError("this reward model was trained on adaptive segments, which new text cannot be segmented into "
                          "without their token-reward source", "evaluate a reward model trained with another segment.strategy")
    if credit == "auto":
        return "values" if meta["strategy"] == "bandit" else "segments"
    return credit


def describe(mode: str, interpolation: str) -> str:
    if mode == "dpo":
        return "DPO implicit reward beta (log pi(y_i) - log pi_ref(y_i)) per token; e(x, y) is its sum"
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


# -- credit sources -----------------------------------------------------------------------------


@dataclass
class Source:
    """What gives the credit: a reward model (``rm``) or a DPO policy's implicit reward (``dpo``)."""

    kind: str
    folder: Path
    parents: list[str]
    meta: dict
    mode: str  # segments, values or dpo
    label: str


@dataclass
class Scored:
    scores: np.ndarray  # [N, 2]: e(x, chosen), e(x, rejected)
    rejected: list[np.ndarray]  # token ids of every rejected answer, EOS last
    credits: list[Credit]  # per rejected answer
    encoder: object


def resolve_source(cfg: Config, rm: str | None, dpo: str | None, credit: str, interpolation: str) -> Source:
    if interpolation not in INTERPOLATIONS:
        raise ConfigError(f"--interpolation {interpolation} is not known", f"use one of: {', '.join(INTERPOLATIONS)}")
    if dpo is None:
        folder, parents = rm_scoring.resolve_rm_folder(cfg, rm)
        meta = read_json(folder / METADATA)
        return Source("rm", folder, parents, meta, resolve_credit(meta, credit), rm_label(meta))

    if credit != "auto":
        raise ConfigError(f"--credit {credit} applies to reward models", "leave --credit out with --dpo: a DPO policy's "
                          "credit is its implicit token reward")

    path = Path(dpo).expanduser().resolve()
    here = RunDir(cfg.run.workdir)
    if (path / "manifest.json").is_file():
        record = RunDir(path).require_head("dpo")
        folder, parents = RunDir(path).path_of(record, "policy"), [record["id"]] if path == here.root.resolve() else []
    elif (path / POLICY_METADATA).is_file():
        folder, parents = path, []
    else:
        raise ConfigError(f"--dpo {dpo} is neither a run directory nor a policy folder",
                          "give a run directory with a dpo artifact, or the policy/ folder of one")
    meta = read_json(folder / POLICY_METADATA)
    return Source("dpo", folder, parents, meta, "dpo", f"DPO implicit reward · beta={meta.get('beta')}")


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ArtifactError(f"cannot read {path}: {err}", "the model folder is damaged: retrain it, or restore the file") from None


def score_with_rm(cfg: Config, source: Source, items: list[CreditPair], interpolation: str) -> Scored:
    """e(x, y) as `eval rm` computes it, and the credit of every rejected answer, from one pass."""
    setup = rm_scoring.load_setup(cfg, source.folder)
    require_fast(setup.encoder.tokenizer, source.folder)
    pairs = rm_scoring.segment_pairs(setup, [item.pair for item in items])
    autocast = make_autocast(cfg.train_rm.bf16, setup.device, "train_rm.bf16")
    scores, values = rm_scoring.score_pairs(setup, pairs, cfg.train_rm.micro_batch, autocast, keep_values=True)
    credits = [value_credit(v[1]) if source.mode == "values" else
               segment_credit(v[1], rejected.ends, source.meta["readout"], interpolation)
               for v, (_, rejected) in zip(values, pairs)]
    return Scored(scores, [rejected.response for _, rejected in pairs], credits, setup.encoder)


def score_with_dpo(cfg: Config, source: Source, items: list[CreditPair]) -> Scored:
    """The DPO implicit reward beta (log pi(y_i) - log pi_ref(y_i)) per token (as the adaptive
    segmentation reads it); e(x, y) is its sum over the answer, DPO's implicit sequence reward."""
    model = resolve_model_source(cfg.model)
    found = adaptive_rewards.Source("dpo", source.folder, tuple(source.parents), fingerprint_path(source.folder))
    scorer = adaptive_rewards.TokenScorer(cfg, found, pick_device(cfg.model.device), model.fingerprint())
    encoder = Encoder.create(load_tokenizer(model, cfg.model), cfg.tokenize.max_len, cfg.tokenize.max_prompt_len,
                             cfg.tokenize.template)
    require_fast(encoder.tokenizer, cfg.model.path)
    seqs = encode_pairs([item.pair for item in items], encoder)  # chosen, rejected, chosen, ...
    rewards = [None] * len(seqs)
    for batch in length_sorted_batches([len(s.prompt) + len(s.response) for s in seqs], cfg.segment.batch_tokens):
        values, lengths = scorer.raw_rewards([seqs[i].prompt for i in batch], [seqs[i].response for i in batch])
        for row, i in enumerate(batch):
            rewards[i] = values[row, : int(lengths[row])].double().numpy()
    scores = np.array([r.sum() for r in rewards], dtype=np.float64).reshape(-1, 2)
    credits = [Credit(r[:-1], np.arange(len(r) - 1), r[:-1]) for r in rewards[1::2]]  # the EOS is not scored
    return Scored(scores, [np.asarray(s.response) for s in seqs[1::2]], credits, encoder)


# -- the stage ----------------------------------------------------------------------------------


@exclusive_stage("eval credit")
def run(cfg: Config, rm: str | None = None, *, dpo: str | None = None, credit: str = "auto", interpolation: str = "even",
        heatmaps: int = 3, force: bool = False, quiet: bool = False) -> StageResult:
    """Score the defect pairs of cfg.data with a reward model (``rm``, default: the run directory's
    train-rm) or a DPO policy (``dpo``: a run directory or policy folder)."""
    started = time.perf_counter()
    if heatmaps < 0:
        raise ConfigError(f"--heatmaps {heatmaps} is negative", "give the number of pairs per defect family to draw (0 = none)")
    source = resolve_source(cfg, rm, dpo, credit, interpolation)
    ident = {**identity_view(cfg, ("data",)), source.kind: fingerprint_path(source.folder), "credit": source.mode,
             "interpolation": interpolation if source.mode == "segments" else None, "heatmaps": heatmaps,
             "seed": cfg.run.seed}
    ident["data"]["path"] = segment.data_identity(cfg)
    if source.kind == "dpo":  # the reference policy and the tokenization come from the config
        ident["model"] = resolve_model_source(cfg.model).fingerprint()
        ident.update(identity_view(cfg, ("tokenize",)))
    art_id = artifact_id(STAGE, ident, source.parents, SCHEMA_VERSION)
    rundir = RunDir(cfg.run.workdir)
    done = already_complete(rundir, STAGE, art_id, None, force)
    if done:
        return done

    report = read_credit_pairs(cfg)  # every row checked before any model is loaded
    if source.kind == "dpo":
        scored = score_with_dpo(cfg, source, report.pairs)
    else:
        scored = score_with_rm(cfg, source, report.pairs, interpolation)
    columns, shown = per_pair(report.pairs, scored, heatmaps)
    summary = {"model": str(source.folder), "kind": "reward model" if source.kind == "rm" else "DPO policy",
               "name": display_name(rm if source.kind == "rm" else dpo, rundir), "label": source.label,
               "credit": source.mode, "credit_description": describe(source.mode, interpolation),
               "interpolation": interpolation if source.mode == "segments" else None, "data": cfg.data.path,
               **counts(columns, len(report.invalid)),
               "bootstrap": {"resamples": metrics.RESAMPLES, "level": metrics.LEVEL, "seed": cfg.run.seed},
               **summarise(columns, cfg.run.seed)}
    if summary["span_unseen"] and not quiet:
        STDERR.print(f"eval credit: no scored token covers the defect of {summary['span_unseen']} pair(s) (past max_len, "
                     "or only characters the tokenizer drops); they count for accuracy only", highlight=False)
    _write(rundir, cfg, art_id, ident, source, columns, summary, shown, scored.encoder.tokenizer)
    record = rundir.complete(art_id, rows={"pairs": summary["pairs"]}, metrics=strict_json(summary),
                             seconds=time.perf_counter() - started)
    return StageResult(STAGE, art_id, "computed", str(rundir.root), record, record["metrics"])


def counts(columns: dict, skipped: int) -> dict:
    """Pairs, and those left out of localisation: no scored token covers the defect."""
    span_tokens = np.asarray(columns["span_tokens"])
    return {"pairs": int(span_tokens.size), "skipped_rows": skipped, "span_unseen": int((span_tokens == 0).sum())}


def require_fast(tokenizer, where) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"the tokenizer of {where} is not a fast tokenizer: defect spans cannot be mapped to its tokens",
                          "use a model saved with a fast tokenizer (tokenizer.json)")


def display_name(given: str | None, rundir: RunDir) -> str:
    """The run directory's name for a model taken from one (this one when none is given), else the
    folder's last two path parts (e.g. train-rm-0ff816138128/model)."""
    if given is None:
        return rundir.root.resolve().name
    path = Path(given).expanduser().resolve()
    return path.name if (path / "manifest.json").is_file() else "/".join(path.parts[-2:])


def per_pair(items: list[CreditPair], scored: Scored, heatmaps: int) -> tuple[dict, list[dict]]:
    """The columns of pairs.parquet (plus accuracy as a float), and the pairs drawn as heatmaps
    (the first ``heatmaps`` of each defect family)."""
    columns = {k: [] for k in ("row_id", "defect_type", "position", "e_chosen", "e_rejected", "correct", *METRICS[1:],
                               "n_tokens", "span_tokens")}
    shown, per_family = [], dict.fromkeys(DEFECT_TYPES, 0)
    for item, (e_chosen, e_rejected), ids, credit in zip(items, scored.scores, scored.rejected, scored.credits):
        gold = gold_tokens(scored.encoder, item.pair.rejected, item.span, len(ids) - 1)
        row = {"row_id": item.row_id, "defect_type": item.defect_type, "position": item.position,
               "e_chosen": float(e_chosen), "e_rejected": float(e_rejected), "correct": bool(e_chosen > e_rejected),
               **localisation(credit, gold), "n_tokens": len(ids) - 1,
               "span_tokens": int(gold.sum())}
        for key, value in row.items():
            columns[key].append(value)
        if per_family[item.defect_type] < heatmaps:
            per_family[item.defect_type] += 1
            shown.append({**row, "ids": np.asarray(ids).tolist(), "credit": credit.tokens.tolist(),
                          "gold": gold.tolist()})
    columns["accuracy"] = [float(x) for x in columns["correct"]]
    return columns, shown


def _write(rundir: RunDir, cfg: Config, art_id: str, ident: dict, source: Source, columns: dict, summary: dict,
           shown: list, tokenizer) -> None:
    """Open the artifact and write its files, each atomically, then record them (the caller completes it)."""
    record = rundir.begin(STAGE, art_id, config=config_to_dict(cfg), identity_config=ident, parents=source.parents,
                          schema_version=SCHEMA_VERSION, inputs={source.kind: str(source.folder), "data": cfg.data.path},
                          resume=False)
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
