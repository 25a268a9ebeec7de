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
    # the segtool script of this interpreter's environment first: the venv need not be activated
    script = shutil.which("segtool", path=os.path.dirname(sys.executable)) or shutil.which("segtool")
    if script is None:
        pytest.fail("no segtool script beside this Python or on PATH: pip install -e . in this environment")
    return [*launcher, script, *args]


def artifact(workdir, name):
    return glob.glob(f"{workdir}/artifacts/train-rm-*/{name}")[0]


def kill_processes_naming(text: str) -> None:
    import signal
    from pathlib import Path

    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            if text in (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                os.kill(int(proc_dir.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


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


def test_killed_data_parallel_run_resumes_to_the_same_weights(tmp_path):
    import json
    import signal
    import time

    sets = ["data.max_rows=80", "train_rm.max_steps=8", "train_rm.global_batch=8", "train_rm.micro_batch=2",
            "train_rm.eval_fraction=0.2", "train_rm.zero_stage=2", "train_rm.checkpoint_every=1"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    env = {**os.environ, "SEGTOOL_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen(segtool_cmd(killed, sets, torchrun), env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        manifest = killed / "manifest.json"
        if manifest.exists():
            arts = json.loads(manifest.read_text())["artifacts"].values()
            if any(a["stage"] == "train-rm" and any(f.startswith("checkpoint-") for f in a["files"]) for a in arts):
                break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher...
    kill_processes_naming(str(killed))  # ...and both ranks, which torchrun starts in groups of their own
    proc.wait()
    rec = next(a for a in json.loads((killed / "manifest.json").read_text())["artifacts"].values() if a["stage"] == "train-rm")
    assert rec["status"] == "partial"

    resumed = run(segtool_cmd(killed, sets, torchrun) + ["--resume"], tmp_path)
    assert json.loads(resumed.stdout)["outcome"] == "resumed", resumed.stderr[-2000:]
    run(segtool_cmd(tmp_path / "straight", sets, torchrun), tmp_path)
    a = load_file(artifact(killed, "model/model.safetensors"))
    b = load_file(artifact(tmp_path / "straight", "model/model.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6
    m_a = pq.read_table(artifact(killed, "metrics.parquet")).to_pylist()
    m_b = pq.read_table(artifact(tmp_path / "straight", "metrics.parquet")).to_pylist()
    assert [round(m["loss"], 6) for m in m_a] == [round(m["loss"], 6) for m in m_b]
