"""Data-parallel train-rm: two CPU processes under torchrun (DeepSpeed, gloo) train the same model
as one process, up to floating-point reduction order."""

import glob
import os
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

SETS = ["data.max_rows=40", "train_rm.max_steps=2", "train_rm.global_batch=8", "train_rm.eval_fraction=0.2"]


def segtool_cmd(workdir, sets, launcher=()):
    args = ["train-rm", "--preset", "tiny", "--workdir", str(workdir), "--json"]
    for s in sets:
        args += ["--set", s]
    return [*launcher, shutil.which("segtool") or sys.exit("segtool not on PATH"), *args]


def artifact(workdir, name):
    return glob.glob(f"{workdir}/artifacts/train-rm-*/{name}")[0]


def run(cmd, tmp_path):
    env = {**os.environ, "SEGTOOL_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("zero,micro", [(2, 2), (3, 4)])  # ZeRO-2 with accumulation 2; ZeRO-3 without
def test_two_processes_match_one(tmp_path, zero, micro):
    sets = [*SETS, f"train_rm.micro_batch={micro}", f"train_rm.zero_stage={zero}"]
    run(segtool_cmd(tmp_path / "single", sets), tmp_path)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = run(segtool_cmd(tmp_path / "ddp", sets, torchrun), tmp_path)
    assert '"world_size": 2' in proc.stdout  # only rank 0 printed its JSON
    a = load_file(artifact(tmp_path / "single", "model/model.safetensors"))
    b = load_file(artifact(tmp_path / "ddp", "model/model.safetensors"))
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 2e-5
    m_a = pq.read_table(artifact(tmp_path / "single", "metrics.parquet")).to_pylist()
    m_b = pq.read_table(artifact(tmp_path / "ddp", "metrics.parquet")).to_pylist()
    for x, y in zip(m_a, m_b, strict=True):
        assert abs(x["loss"] - y["loss"]) < 1e-5 and abs(x["grad_norm"] - y["grad_norm"]) < 1e-4
    assert torch.is_tensor(a["score.weight"])
