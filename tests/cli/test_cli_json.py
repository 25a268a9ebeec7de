"""--json: stdout is exactly one JSON document, even when libraries (DeepSpeed, imported by
transformers once installed) print to stdout themselves."""

import json
import os
import subprocess
import sys


def test_train_rm_and_status_json_stdout_parses(tmp_path):
    env = {**os.environ, "SEGTOOL_CACHE": str(tmp_path / "cache")}
    base = [sys.executable, "-m", "segtool"]
    sets = ["--set", "data.max_rows=8", "--set", "train_rm.max_steps=1", "--set", "train_rm.global_batch=4",
            "--set", "train_rm.micro_batch=4", "--set", "train_rm.eval_fraction=0.25"]
    run = subprocess.run([*base, "train-rm", "--preset", "tiny", "--workdir", str(tmp_path / "w"), "--json", *sets],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["stage"] == "train-rm" and doc["status"] == "complete" and doc["metrics"]["steps"] == 1
    status = subprocess.run([*base, "status", "--workdir", str(tmp_path / "w"), "--json"], env=env,
                            capture_output=True, text=True, timeout=120)
    stages = {a["stage"]: a for a in json.loads(status.stdout)["artifacts"]}
    assert set(stages) == {"segment", "train-rm"}
    assert stages["train-rm"]["stale"] == "no" and stages["train-rm"]["status"] == "complete"
