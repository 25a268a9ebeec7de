"""`fit-normalizer` end to end on the tiny model: artifact, PNG, ablations, the mismatch error."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from segtool.artifacts.manifest import RunDir
from segtool.config.loader import load_config
from segtool.core.normalizer import bin_stats
from segtool.errors import ArtifactError
from segtool.pipeline import fit_normalizer as stage

SMALL = ["data.max_rows=24", "train_rm.global_batch=8", "train_rm.micro_batch=4", "train_rm.eval_fraction=0.25",
         "train_rm.max_steps=1"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGTOOL_CACHE", str(tmp_path / "cache"))


def tiny(workdir, *sets):
    return load_config(preset="tiny", overrides=[*SMALL, *sets], workdir=str(workdir))[0]


def test_heldout_calibration_artifact_and_plot(tmp_path):
    cfg = tiny(tmp_path / "run", "normalizer.rows=heldout")
    result = stage.run(cfg, quiet=True)
    rundir = RunDir(cfg.run.workdir)
    rec = result.record
    rm = rundir.head("train-rm")
    assert rec["parents"] == [rm["id"]] and rec["status"] == "complete"
    png = rundir.path_of(rec, "normalizer.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "data:image/png;base64," in rundir.path_of(rec, "report.html").read_text()
    calib = pq.read_table(rundir.path_of(rec, "calibration.parquet")).to_pandas()
    split = pq.read_table(rundir.path_of(rm, "split.parquet")).to_pydict()
    held_out = {r for r, s in zip(split["row_id"], split["split"]) if s == "eval"}
    assert set(calib["row_id"]) == held_out and result.summary["overlap_with_rm_training"] == 0
    assert np.allclose(calib["p"], (calib["k"] + 1) / calib["K"])
    # The stored bin table is exactly the per-bin statistics of the stored points.
    bins = pq.read_table(rundir.path_of(rec, "bins.parquet")).to_pydict()
    expected = bin_stats(calib["p"].to_numpy(), calib["reward"].to_numpy().astype(np.float64))
    assert np.allclose(bins["mean"], expected["mean"], atol=1e-6) and bins["count"] == expected["count"].tolist()
    doc = json.loads(rundir.path_of(rec, "normalizer.json").read_text())
    assert doc["reward_model"] == rm["id"] and doc["normaliser"]["kind"] == "location"
    assert doc["normaliser"]["floor"] == pytest.approx(0.1 * calib["reward"].to_numpy().astype(np.float64).std(), rel=1e-5)  # ddof 0


@pytest.mark.parametrize("kind", ["global", "last", "none"])
def test_ablations(tmp_path, kind):
    cfg = tiny(tmp_path / "run", f"normalizer.kind={kind}", "normalizer.rows=all")
    rec = stage.run(cfg, quiet=True).record
    rundir = RunDir(cfg.run.workdir)
    calib = pq.read_table(rundir.path_of(rec, "calibration.parquet")).to_pandas()
    norm = json.loads(rundir.path_of(rec, "normalizer.json").read_text())["normaliser"]
    r = calib["reward"].to_numpy().astype(np.float64)
    last = calib[calib["k"] == calib["K"] - 1]["reward"].to_numpy().astype(np.float64)
    if kind == "global":
        assert norm["mean"] == pytest.approx(r.mean(), abs=1e-6) and norm["std"] == pytest.approx(r.std(), abs=1e-6)
    elif kind == "last":
        assert norm["mean"] == pytest.approx(last.mean(), abs=1e-6) and norm["std"] == pytest.approx(last.std(), abs=1e-6)
    else:
        assert norm["kind"] == "none"


def test_normaliser_for_another_reward_model_or_segmentation_is_refused(tmp_path):
    cfg = tiny(tmp_path / "run")
    stage.run(cfg, quiet=True)
    rundir = RunDir(cfg.run.workdir)
    rm_id = rundir.head("train-rm")["id"]
    doc = json.loads(rundir.path_of(rundir.head(stage.STAGE), "normalizer.json").read_text())
    seg = doc["segmentation"]
    assert stage.load_normaliser(rundir, rm_id, seg).kind == "location"
    with pytest.raises(ArtifactError, match="fitted for reward model"):
        stage.load_normaliser(rundir, "f" * 64, seg)
    with pytest.raises(ArtifactError, match="fitted for segmentation"):
        stage.load_normaliser(rundir, rm_id, {**seg, "c_ent": 2.0})
