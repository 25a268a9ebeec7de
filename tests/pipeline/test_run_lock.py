"""Two real `segtool segment` processes on one run directory: the second is refused and touches
nothing, the first finishes with every row; a killed one does not block `--resume`."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

from segtool.artifacts.manifest import RunDir

SETS = ["--set", "data.max_rows=12", "--set", "segment.shard_rows=4"]  # three shards of four pairs

# `segtool` that stops after recording its first file: it creates FLAG.paused and waits for FLAG.go,
# so the test knows the stage is under way (lock held, partial record, one shard) without timing.
PAUSING_SEGTOOL = """
import sys, time
from pathlib import Path
from segtool.artifacts.manifest import RunDir
from segtool.cli.app import main

flag = Path(sys.argv.pop(1))
real_add_file = RunDir.add_file

def add_file_then_wait(self, *args, **kwargs):
    real_add_file(self, *args, **kwargs)
    if not flag.with_suffix(".go").exists():
        flag.with_suffix(".paused").touch()
        while not flag.with_suffix(".go").exists():
            time.sleep(0.02)

RunDir.add_file = add_file_then_wait
sys.argv[0] = "segtool"
main()
"""


def segment_args(workdir, *extra):
    return ["segment", "--preset", "tiny", "--workdir", str(workdir), "--json", *SETS, *extra]


def start_paused(tmp_path, workdir, name):
    script = tmp_path / "pausing_segtool.py"
    script.write_text(PAUSING_SEGTOOL)
    flag = tmp_path / name
    proc = subprocess.Popen([sys.executable, str(script), str(flag), *segment_args(workdir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not flag.with_suffix(".paused").exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() < deadline, "the first process never reached its first shard"
        time.sleep(0.05)
    return proc, flag


def segtool(*args):
    return subprocess.run([sys.executable, "-m", "segtool", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "300"})


def test_a_second_process_is_refused_and_the_first_finishes_with_every_row(tmp_path):
    workdir = tmp_path / "run"
    first, flag = start_paused(tmp_path, workdir, "first")
    try:
        before = (workdir / "manifest.json").read_text()
        second = segtool(*segment_args(workdir))
        assert second.returncode == 1 and second.stdout == ""
        error, hint = second.stderr.splitlines()
        assert error.startswith(f"error: run directory {workdir.resolve()} is in use by `segtool segment` "
                                f"(pid {first.pid} on host {socket.gethostname()}, since ")
        assert hint.startswith("hint: wait for it to finish or stop it")
        assert (workdir / "manifest.json").read_text() == before  # the first one's partial record is untouched
        (rec,) = RunDir(workdir).read()["artifacts"].values()
        assert rec["status"] == "partial" and list(rec["files"]) == ["part-00000.parquet"]
        assert sorted(p.name for p in RunDir(workdir).path_of(rec).iterdir()) == ["part-00000.parquet"]
    finally:
        flag.with_suffix(".go").touch()
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert json.loads(out)["outcome"] == "computed"
    rec = RunDir(workdir).require_head("segment")  # complete, every file's hash verified
    assert rec["rows"]["pairs"] == 12 and rec["metrics"]["sequences"] == 24
    assert sorted(rec["files"]) == [f"part-0000{k}.parquet" for k in range(3)]


def test_a_killed_holder_does_not_block_resume(tmp_path):
    workdir = tmp_path / "run"
    first, _ = start_paused(tmp_path, workdir, "killed")
    first.send_signal(signal.SIGKILL)
    first.communicate()
    assert str(first.pid) in (workdir / ".run.lock").read_text()  # its name is still in the lock file
    resumed = segtool(*segment_args(workdir, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["outcome"] == "resumed"
    rec = RunDir(workdir).require_head("segment")
    assert rec["rows"]["pairs"] == 12 and sorted(rec["files"]) == [f"part-0000{k}.parquet" for k in range(3)]
