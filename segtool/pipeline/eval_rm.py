"""`segtool eval rm`: pairwise accuracy of a reward model on any preference file (per subset, and
overall), or the RewardBench 2 / RM-Bench scores of their candidate rows (``fmt``), scoring every
response with the same code as training."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from segtool.artifacts.files import atomic_path
from segtool.artifacts.fingerprint import fingerprint_path
from segtool.artifacts.manifest import RunDir, artifact_id
from segtool.config.loader import config_to_dict, identity_view
from segtool.config.schema import Config
from segtool.errors import ConfigError
from segtool.eval import rm_benchmarks
from segtool.inputs.benchmark_rows import read_candidate_rows
from segtool.inputs.rows import read_pairs
from segtool.models import rm_scoring
from segtool.models.precision import make_autocast
from segtool.pipeline import segment
from segtool.pipeline.common import StageResult, already_complete, exclusive_stage

STAGE = "eval-rm"
SCHEMA_VERSION = 1
FORMATS = ("pairs", "rewardbench2", "rmbench")


@exclusive_stage("eval rm")
def run(cfg: Config, rm: str | None = None, *, fmt: str = "pairs", force: bool = False, quiet: bool = False) -> StageResult:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown eval rm format {fmt!r}", f"use one of {', '.join(FORMATS)}")
    started = time.perf_counter()
    folder, parents = rm_scoring.resolve_rm_folder(cfg, rm)
    ident = {"rm": fingerprint_path(folder), "data": segment.data_identity(cfg), **identity_view(cfg, ("data",))}
    ident["data"] = {**ident["data"], "path": segment.data_identity(cfg)}
    if fmt != "pairs":  # absent for pairs: keeps the ids of artifacts written before formats existed
        ident["format"] = fmt
    art_id = artifact_id(STAGE, ident, parents, SCHEMA_VERSION)
    rundir = RunDir(cfg.run.workdir)
    done = already_complete(rundir, STAGE, art_id, None, force)
    if done:
        return done

    score = _score_pairs if fmt == "pairs" else _score_benchmark
    metrics, table = score(cfg, folder, fmt)
    metrics["rm"] = str(folder)
    record = rundir.begin(STAGE, art_id, config=config_to_dict(cfg), identity_config=ident, parents=parents,
                          schema_version=SCHEMA_VERSION, inputs={"rm": str(folder), "data": cfg.data.path}, resume=False)
    with atomic_path(rundir.path_of(record, "scores.parquet")) as tmp:
        pq.write_table(table, tmp)
    rundir.add_file(art_id, "scores.parquet")
    count = "pairs" if fmt == "pairs" else "rows"
    record = rundir.complete(art_id, rows={count: metrics[count]}, metrics=metrics, seconds=time.perf_counter() - started)
    return StageResult(STAGE, art_id, "computed", str(rundir.root), record, metrics)


def _score_pairs(cfg: Config, folder, fmt: str) -> tuple[dict, pa.Table]:
    report = read_pairs(cfg.data.path, name=cfg.data.name, split=cfg.data.split, fmt=cfg.data.format,
                        max_rows=cfg.data.max_rows, skip_invalid=cfg.data.skip_invalid)
    setup = rm_scoring.load_setup(cfg, folder)
    pairs = rm_scoring.segment_pairs(setup, report.pairs)
    autocast = make_autocast(cfg.train_rm.bf16, setup.device, "train_rm.bf16")
    scores, _ = rm_scoring.score_pairs(setup, pairs, cfg.train_rm.micro_batch, autocast)

    subsets = np.array([p.subset for p in report.pairs])
    margin = scores[:, 0] - scores[:, 1]
    by_subset = {name or "all": {"pairs": int((subsets == name).sum()),
                                 "accuracy": round(float((margin[subsets == name] > 0).mean()), 4),
                                 "mean_margin": round(float(margin[subsets == name].mean()), 4)}
                 for name in sorted(set(subsets.tolist()))}
    metrics = {"pairs": len(pairs), "accuracy": round(float((margin > 0).mean()), 4),
               "mean_margin": round(float(margin.mean()), 4), "subsets": by_subset}
    table = pa.table({"row_id": pa.array([p.row_id for p in report.pairs], pa.int64()), "subset": subsets.tolist(),
                      "score_chosen": scores[:, 0], "score_rejected": scores[:, 1]})
    return metrics, table


def _score_benchmark(cfg: Config, folder, fmt: str) -> tuple[dict, pa.Table]:
    """Every candidate response of every row scored on its own; the benchmark's official arithmetic."""
    rows = read_candidate_rows(fmt, cfg.data.path, name=cfg.data.name, split=cfg.data.split,
                               max_rows=cfg.data.max_rows, skip_invalid=cfg.data.skip_invalid).pairs
    setup = rm_scoring.load_setup(cfg, folder)
    autocast = make_autocast(cfg.train_rm.bf16, setup.device, "train_rm.bf16")
    items = [(list(row.prompt), text) for row in rows for text in (*row.chosen, *row.rejected)]
    # a pair micro-batch holds 2 * micro_batch sequences: the same memory for single responses
    flat = rm_scoring.score_responses(setup, items, 2 * cfg.train_rm.micro_batch, autocast)
    scores, start = [], 0
    for row in rows:
        middle, end = start + len(row.chosen), start + len(row.chosen) + len(row.rejected)
        scores.append((flat[start:middle], flat[middle:end]))
        start = end
    if fmt == "rewardbench2":
        metrics, results = rm_benchmarks.rewardbench2_report(rows, scores)
    else:
        metrics, results = rm_benchmarks.rmbench_report(rows, scores), None
    columns = {"row_id": pa.array([row.row_id for row in rows], pa.int64()), "id": [row.id for row in rows],
               "group": [row.group for row in rows],
               "scores_chosen": pa.array([c.tolist() for c, _ in scores], pa.list_(pa.float32())),
               "scores_rejected": pa.array([r.tolist() for _, r in scores], pa.list_(pa.float32()))}
    if results is not None:  # RewardBench 2's per-row best-of-N credit (null in Ties, scored as a whole)
        columns["result"] = pa.array(results, pa.float64())
    return {"format": fmt, **metrics}, pa.table(columns)
