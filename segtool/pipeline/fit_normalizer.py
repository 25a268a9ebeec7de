"""`segtool fit-normalizer`: the location-aware reward normaliser of METHOD §4.

Scores both responses of calibration pairs with the run directory's reward model, segmented
exactly as in its training (the RM's own segment artifact), by default on rows held out from RM
training. Writes calibration points, the bin table, the normaliser (normalizer.json), a PNG plot
and an HTML report. ``load_normaliser`` refuses a normaliser fitted for another RM or segmentation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from transformers import AutoTokenizer

from segtool.artifacts.files import atomic_path, atomic_write_json, strict_json
from segtool.artifacts.manifest import RunDir
from segtool.artifacts.tables import load_segments
from segtool.config.loader import identity_view
from segtool.config.schema import Config
from segtool.console import STDERR
from segtool.core.calibration import fit_normaliser
from segtool.core.normalizer import Normaliser
from segtool.core.rewards import segment_rewards
from segtool.errors import ArtifactError
from segtool.models.loading import DTYPES, pad_id_of, pick_device
from segtool.models.reward import load_reward_model
from segtool.models.rm_batches import collate, forward_batch, pairs_from_segments
from segtool.models.rm_scoring import rm_pack_width
from segtool.pipeline import train_rm
from segtool.pipeline.common import StageResult
from segtool.pipeline.runner import run_stage
from segtool.pipeline.stage import Context, Outcome, Plan, Stage
from segtool.viz.normalizer import write_plot, write_report

STAGE = "fit-normalizer"
SCHEMA_VERSION = 1


def plan(cfg: Config) -> Plan:
    parent = train_rm.plan(cfg).art_id
    ident = {**identity_view(cfg, ("normalizer",)), "seed": cfg.run.seed}
    return Plan.of(STAGE, ident, [parent], SCHEMA_VERSION)


def calibration_points(rm, examples, readout: str, pad_id: int, device: str, micro: int,
                       pack_width: int = 0) -> dict[str, np.ndarray]:
    """Segment rewards of every example with their index k, count K and location p = (k + 1) / K."""
    rewards, ks, Ks, owner = [], [], [], []
    rm.eval()
    with torch.no_grad():
        for start in range(0, len(examples), micro):
            chunk = examples[start : start + micro]
            batch = collate(chunk, pad_id, pack_width)
            values, _ = forward_batch(rm, batch, device)
            r = segment_rewards(values, batch["ends"].to(device), batch["rows"].to(device), readout,
                                batch["prompt_last"].to(device)).float().cpu().numpy()
            rewards.append(r)
            for j, ex in enumerate(chunk):
                K = len(ex.ends)
                ks.append(np.arange(K))
                Ks.append(np.full(K, K))
                owner.append(np.full(K, start + j))
    k, K = np.concatenate(ks), np.concatenate(Ks)
    return {"example": np.concatenate(owner), "k": k, "K": K, "p": (k + 1) / K, "reward": np.concatenate(rewards)}


def segmentation_of(rm_meta: dict) -> dict:
    return {k: rm_meta[k] for k in ("segment_artifact", "strategy", "c_ent", "n", "eos_in_last_segment", "readout")}


@dataclass(frozen=True)
class Calibration:
    meta: dict  # the reward model's segtool_rm.json
    row_ids: np.ndarray
    picked: list[int]  # the calibration pairs' positions in row_ids
    overlap: int  # how many of them trained the reward model
    points: dict[str, np.ndarray]  # calibration_points of both responses of each pair
    last: np.ndarray  # each response's last segment reward


def calibrate(cfg: Config, rundir: RunDir, rm_record: dict) -> Calibration:
    """The calibration pairs (by default rows held out from RM training) scored by the reward model,
    segmented exactly as in its training."""
    c = cfg.normalizer
    folder = rundir.path_of(rm_record, "model")
    meta = json.loads((folder / "segtool_rm.json").read_text())
    rundir.verify(rundir.get(rm_record["parents"][0]))
    _, table = load_segments(rundir)
    row_ids, pairs = pairs_from_segments(table)
    split = dict(zip(*pq.read_table(rundir.path_of(rm_record, "split.parquet")).to_pydict().values()))
    chosen_rows = [i for i, r in enumerate(row_ids) if c.rows == "all" or split[int(r)] == "eval"]
    overlap = sum(split[int(row_ids[i])] == "train" for i in chosen_rows)
    if overlap:
        STDERR.print(f"[yellow]note:[/] {overlap} of {len(chosen_rows)} calibration pairs were used to train the reward "
                     "model (normalizer.rows = all)", highlight=False)
    order = np.random.default_rng(cfg.run.seed).permutation(len(chosen_rows))[: c.max_pairs]
    picked = sorted(chosen_rows[i] for i in order)
    examples = [ex for i in picked for ex in pairs[i]]  # chosen, rejected of each pair
    device = pick_device(cfg.model.device)
    rm, _ = load_reward_model(folder, getattr(torch, DTYPES[cfg.model.dtype]), device)
    pad = pad_id_of(AutoTokenizer.from_pretrained(folder))  # the tokenizer saved beside the RM
    points = calibration_points(rm, examples, meta["readout"], pad, device, cfg.train_rm.micro_batch,
                                rm_pack_width(rm, cfg, device))
    last = points["reward"][np.cumsum([len(e.ends) for e in examples]) - 1]
    return Calibration(meta, row_ids, picked, overlap, points, last)


def compute(ctx: Context) -> Outcome:
    c, trained = ctx.cfg.normalizer, ctx.parents["train-rm"]
    calib = calibrate(ctx.cfg, ctx.rundir, ctx.rundir.get(trained.artifact_id))
    pts, picked = calib.points, calib.picked
    norm, bins, diag = fit_normaliser(pts["p"], pts["reward"], calib.last, c.kind, c.method, c.huber_epsilon,
                                      c.std_floor_ratio, c.decimals)
    diag["calibration_pairs"] = len(picked)
    diag["overlap_with_rm_training"] = calib.overlap
    if diag.get("std_below_floor"):
        STDERR.print(f"[yellow]warning:[/] fitted Std(p) falls below the floor {norm.floor:.4g} "
                     f"{diag['std_below_floor']}; the floor is used there", highlight=False)

    segmentation = segmentation_of(calib.meta)
    ctx.begin({"reward_model": trained.artifact_id, "segmentation": segmentation})
    _write_outputs(ctx, calib, norm, bins, diag, segmentation)
    relevant = {"location": ("w_mu", "b_mu", "w_sigma", "b_sigma", "floor"), "global": ("mean", "std"),
                "last": ("mean", "std"), "none": ()}[norm.kind]
    metrics = {"kind": norm.kind, "method": c.method, **{k: round(getattr(norm, k), 6) for k in relevant},
               **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in diag.items()}}
    return Outcome({"pairs": len(picked), "points": diag["points"]}, metrics)


def _write_outputs(ctx: Context, calib: Calibration, norm: Normaliser, bins: dict, diag: dict, segmentation: dict) -> None:
    """Calibration points, bin table, normalizer.json, its plot and HTML report, each recorded."""
    rundir, record, rm_id = ctx.rundir, ctx.record, ctx.parents["train-rm"].artifact_id
    pts, picked, row_ids = calib.points, calib.picked, calib.row_ids
    sides = ["chosen", "rejected"] * len(picked)
    table = pa.table({"row_id": pa.array([int(row_ids[picked[e // 2]]) for e in pts["example"]], pa.int64()),
                      "side": [sides[e] for e in pts["example"]], "k": pts["k"].astype(np.int32),
                      "K": pts["K"].astype(np.int32), "p": pts["p"], "reward": pts["reward"].astype(np.float32)})
    outputs = {"calibration.parquet": table, "bins.parquet": pa.table({k: np.asarray(v) for k, v in bins.items()})}
    for name, tab in outputs.items():
        with atomic_path(rundir.path_of(record, name)) as tmp:
            pq.write_table(tab, tmp)
    document = {"normaliser": norm.to_dict(), "method": ctx.cfg.normalizer.method, "reward_model": rm_id,
                "segmentation": segmentation, "diagnostics": strict_json(diag)}  # e.g. R^2 of one bin: null
    atomic_write_json(rundir.path_of(record, "normalizer.json"), document)
    title = f"{norm.kind} normaliser ({ctx.cfg.normalizer.method}) for reward model {rm_id[:12]}"
    write_plot(rundir.path_of(record, "normalizer.png"), bins, norm, title)
    write_report(rundir.path_of(record, "report.html"), rundir.path_of(record, "normalizer.png"), norm, diag, bins, title)
    for name in (*outputs, "normalizer.json", "normalizer.png", "report.html"):
        rundir.add_file(record["id"], name)


DEFINITION = Stage(STAGE, plan, compute, parents=("train-rm",), resumable=False)


def run(cfg: Config, *, resume: bool = False, force: bool = False, quiet: bool = False) -> StageResult:
    """Fit the normaliser, training the reward model (and segmenting) first when missing."""
    return run_stage(DEFINITION, cfg, resume=resume, force=force, quiet=quiet)


def load_normaliser(rundir: RunDir, reward_model_id: str, segmentation: dict) -> Normaliser:
    """The run directory's normaliser, refusing one fitted for another reward model or segmentation."""
    record = rundir.require_head(STAGE)
    document = json.loads(rundir.path_of(record, "normalizer.json").read_text())
    if document["reward_model"] != reward_model_id:
        raise ArtifactError(
            f"the normaliser {record['id'][:12]} was fitted for reward model {document['reward_model'][:12]}, "
            f"not {reward_model_id[:12]}",
            f"run `segtool fit-normalizer --workdir {rundir.root}` for this reward model",
        )
    if document["segmentation"] != segmentation:
        raise ArtifactError(
            f"the normaliser {record['id'][:12]} was fitted for segmentation {document['segmentation']}, not {segmentation}",
            "fit a normaliser with the segmentation you use (normalise what was calibrated, nothing else)",
        )
    return Normaliser(**document["normaliser"])
