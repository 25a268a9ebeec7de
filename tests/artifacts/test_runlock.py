"""The run directory lock: refusal naming the holder, recovery after a kill, re-entrancy, ranks."""

import os
import signal
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest

from segtool.artifacts import runlock
from segtool.errors import ArtifactError
from segtool.pipeline.common import exclusive_stage

# Takes the lock as `segtool train-rm` would, says so, and keeps it until stdin closes or it is killed.
HOLDER = """
import sys
from segtool.artifacts import runlock
with runlock.exclusive(sys.argv[1], "train-rm"):
    print("held", flush=True)
    sys.stdin.read()
"""

# Tries to take the lock once: exit 0 when it got it, 1 (and the error on stderr) when refused.
TAKER = """
import sys
from segtool.artifacts import runlock
from segtool.errors import ArtifactError
try:
    with runlock.exclusive(sys.argv[1], "segment"):
        pass
except ArtifactError as err:
    sys.exit(err.message)
"""


@pytest.fixture
def holder():
    procs = []

    def start(workdir):
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(workdir)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def try_from_another_process(workdir) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", TAKER, str(workdir)], capture_output=True, text=True, timeout=60)


def test_a_second_process_is_refused_with_the_holders_pid_and_host(tmp_path, holder):
    first = holder(tmp_path / "run")
    with pytest.raises(ArtifactError) as err:
        with runlock.exclusive(tmp_path / "run", "segment"):
            pass
    msg = err.value.message
    assert msg.startswith(f"run directory {(tmp_path / 'run').resolve()} is in use by `segtool train-rm` ")
    assert f"(pid {first.pid} on host {socket.gethostname()}, since " in msg
    assert "wait for it" in err.value.hint and "--resume" in err.value.hint


def test_a_killed_holder_frees_the_directory(tmp_path, holder):
    first = holder(tmp_path / "run")
    assert try_from_another_process(tmp_path / "run").returncode == 1
    first.send_signal(signal.SIGKILL)
    first.wait()
    # Its lock file (with its pid) is still there; the lock itself died with it.
    assert str(first.pid) in (tmp_path / "run" / runlock.LOCK_NAME).read_text()
    with runlock.exclusive(tmp_path / "run", "segment"):
        assert f'"pid": {os.getpid()}' in (tmp_path / "run" / runlock.LOCK_NAME).read_text()


def test_reentrant_within_a_process_and_held_until_the_outermost_exit(tmp_path):
    workdir = tmp_path / "run"
    with runlock.exclusive(workdir, "ppo"):
        (workdir / "manifest.json").write_text("{}")  # something written: the folder stays afterwards
        with runlock.exclusive(tmp_path / "." / "run", "train-rm"):  # ppo runs train-rm first
            with runlock.exclusive(workdir, "segment"):
                pass
        refused = try_from_another_process(workdir)
        assert refused.returncode == 1 and "is in use by `segtool ppo`" in refused.stderr
    assert try_from_another_process(workdir).returncode == 0
    assert sorted(p.name for p in workdir.iterdir()) == [runlock.LOCK_NAME, "manifest.json"]


def test_a_stage_that_wrote_nothing_leaves_no_run_directory(tmp_path):
    with pytest.raises(ValueError):
        with runlock.exclusive(tmp_path / "new", "segment"):
            raise ValueError("bad input, refused before any write")
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()  # a folder the user made is left alone
    with runlock.exclusive(tmp_path / "mine", "segment"):
        pass
    assert (tmp_path / "mine").is_dir()


def test_only_rank_zero_of_a_data_parallel_job_locks(tmp_path, holder, monkeypatch):
    holder(tmp_path / "run")

    @exclusive_stage("train-rm")
    def stage(cfg):
        return "ran"

    cfg = SimpleNamespace(run=SimpleNamespace(workdir=str(tmp_path / "run")))
    monkeypatch.setenv("RANK", "1")  # rank 1 never writes the run directory: it must not be refused
    assert stage(cfg) == "ran"
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ArtifactError, match="is in use by `segtool train-rm`"):
        stage(cfg)


def test_segtool_run_holds_the_lock_between_its_stages(tmp_path, monkeypatch):
    """`segtool run` keeps the directory locked from the first stage to the last: between two stages
    another process is refused, not let in."""
    from segtool.pipeline import registry

    workdir = tmp_path / "run"
    seen = []

    def fake_stage(name, cfg, **_):
        # Called with no stage lock of its own: only run_pipeline's lock can be holding the directory.
        taker = subprocess.run([sys.executable, "-c", TAKER, str(workdir)], capture_output=True, text=True, timeout=60)
        seen.append((name, taker.returncode, taker.stderr))
        return name

    monkeypatch.setattr(registry, "run_stage", fake_stage)
    cfg = SimpleNamespace(run=SimpleNamespace(workdir=str(workdir), stages=("segment", "train-rm")))
    done = []
    assert registry.run_pipeline(cfg, force=False, quiet=True, on_done=done.append) == ["segment", "train-rm"]
    assert done == ["segment", "train-rm"]
    assert [(name, code) for name, code, _ in seen] == [("segment", 1), ("train-rm", 1)], seen
    assert all("segtool run" in err for _, _, err in seen), seen
