"""`segtool eval rm`: pairwise accuracy of a reward model on any preference file (RewardBench style:
per subset, and overall), scoring with the same code as training."""

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
from segtool.inputs.rows import read_pairs
from segtool.models import rm_scoring
from segtool.models.precision import make_autocast
from segtool.pipeline import segment
from segtool.pipeline.common import StageResult, already_complete, exclusive_stage

STAGE = "eval-rm"
SCHEMA_VERSION = 1


@exclusive_stage("eval rm")
def run(cfg: Config, rm: str | None = None, *, force: bool = False, quiet: bool = False) -> StageResult:


    started = time.perf_counter()
    folder, parents = rm_scoring.resolve_rm_folder(cfg, rm)
    ident = {"rm": fingerprint_path(folder), "data": segment.data_identity(cfg), **identity_view(cfg, ("data",))}
    ident["data"] = {**ident["data"], "path": segment.data_identity(cfg)}
    art_id = artifact_id(STAGE, ident, parents, SCHEMA_VERSION)
    rundir = RunDir(cfg.run.workdir)
    done = already_complete(rundir, STAGE, art_id, None, force)
    if done:
        return done

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
               "mean_margin": round(float(margin.mean()), 4), "subsets": by_subset, "rm": str(folder)}
    record = rundir.begin(STAGE, art_id, config=config_to_dict(cfg), identity_config=ident, parents=parents,
                          schema_version=SCHEMA_VERSION, inputs={"rm": str(folder), "data": cfg.data.path}, resume=False)
    table = pa.table({"row_id": pa.array([p.row_id for p in report.pairs], pa.int64()), "subset": subsets.tolist(),
                      "score_chosen": scores[:, 0], "score_rejected": scores[:, 1]})
    with atomic_path(rundir.path_of(record, "scores.parquet")) as tmp:
        pq.write_table(table, tmp)
    rundir.add_file(art_id, "scores.parquet")
    record = rundir.complete(art_id, rows={"pairs": len(pairs)}, metrics=metrics, seconds=time.perf_counter() - started)
    return StageResult(STAGE, art_id, "computed", str(rundir.root), record, metrics)
