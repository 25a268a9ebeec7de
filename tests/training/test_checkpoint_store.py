"""The checkpoint store: one recorded checkpoint at a time, leftovers of a kill cleaned, staged
final folders, and a one-model checkpoint that restores weights, optimiser, schedule and RNG."""

import torch

from segtool.artifacts.manifest import RunDir
from segtool.config.schema import OptimConfig
from segtool.training import checkpoints
from segtool.training.optim import build_optimiser
from segtool.training.steppers import LocalStepper

ART = "a" * 64
SETTINGS = OptimConfig(lr=0.1, min_lr_ratio=0.1, warmup_ratio=0.5, adam_beta1=0.9, adam_beta2=0.95, weight_decay=0.0,
                       grad_clip=1.0)


def begin(rundir, resume=False):
    return rundir.begin("dpo", ART, config={}, identity_config={}, parents=[], schema_version=1, inputs={},
                        resume=resume)


def write_text(text):
    return lambda folder: (folder / "a.txt").write_text(text)


def test_a_new_checkpoint_is_recorded_then_the_old_one_dropped(tmp_path):
    rundir = RunDir(tmp_path)
    record = begin(rundir)
    checkpoints.save_folder(rundir, ART, 2, write_text("two"))
    checkpoints.save_folder(rundir, ART, 4, write_text("four"))
    record = rundir.get(ART)
    assert sorted(record["files"]) == ["checkpoint-000004/a.txt"]
    assert not rundir.path_of(record, "checkpoint-000002").exists()
    assert (checkpoints.latest_checkpoint(rundir, record) / "a.txt").read_text() == "four"
    checkpoints.drop_checkpoints(rundir, ART)
    assert checkpoints.latest_checkpoint(rundir, rundir.get(ART)) is None
    assert not rundir.path_of(record, "checkpoint-000004").exists()


def test_clean_unrecorded_removes_what_a_kill_left(tmp_path):
    rundir = RunDir(tmp_path)
    begin(rundir)
    checkpoints.save_folder(rundir, ART, 2, write_text("two"))
    record = rundir.get(ART)
    stray = [rundir.path_of(record, n) for n in ("checkpoint-000002/b.txt", "checkpoint-000003/a.txt",
                                                 "policy.tmp/x", "policy/y", "rollouts/iter-000001.parquet")]
    for path in stray:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("half")
    record = begin(rundir, resume=True)
    checkpoints.clean_unrecorded(rundir, record, staged=("policy",), folders=("rollouts",))
    assert not any(p.exists() for p in stray)
    assert rundir.path_of(record, "checkpoint-000002/a.txt").read_text() == "two"


def test_staged_folder_replaces_the_old_one_and_is_recorded(tmp_path):
    rundir = RunDir(tmp_path)
    record = begin(rundir)
    old = rundir.path_of(record, "model/old.txt")
    old.parent.mkdir(parents=True)
    old.write_text("old")
    checkpoints.write_staged(rundir, ART, "model", lambda folder: (folder / "sub").mkdir() or
                             (folder / "sub" / "w.txt").write_text("w"))
    record = rundir.get(ART)
    assert sorted(record["files"]) == ["model/sub/w.txt"]
    assert not old.exists() and not rundir.path_of(record, "model.tmp").exists()


def test_one_model_checkpoint_restores_weights_optimiser_schedule_and_rng(tmp_path):
    def trained_stepper(seed):
        torch.manual_seed(seed)
        model = torch.nn.Linear(3, 2)
        return LocalStepper(model, *build_optimiser(model, SETTINGS, total_steps=10), SETTINGS.grad_clip)

    def one_step(stepper):
        stepper.backward(stepper.model(torch.randn(4, 3)).pow(2).mean())
        return stepper.step()

    rundir = RunDir(tmp_path)
    begin(rundir)
    saved = trained_stepper(0)
    one_step(saved)
    checkpoints.save_checkpoint(rundir, ART, 1, saved.model, saved, {"metrics": [1.0]}, "w.safetensors")
    expected = (one_step(saved), saved.lr(), saved.model.weight.detach().clone())

    restored = trained_stepper(1)
    state = checkpoints.load_checkpoint(rundir, rundir.get(ART), restored.model, restored, "w.safetensors")
    assert state["step"] == 1 and state["metrics"] == [1.0]
    assert (one_step(restored), restored.lr()) == expected[:2]
    assert torch.equal(restored.model.weight, expected[2])


def test_a_checkpoint_folder_is_recorded_in_one_manifest_update(tmp_path, monkeypatch):
    """A kill while recording must not leave a checkpoint listed with some of its files missing:
    resume would pick it and fail (clean-up deletes the unrecorded rest)."""
    rundir = RunDir(tmp_path)
    begin(rundir)
    seen = []  # the checkpoint files listed after each manifest update
    real = rundir._update

    def update(change):
        result = real(change)
        seen.append({f for f in rundir.get(ART)["files"] if f.startswith("checkpoint-")})
        return result

    monkeypatch.setattr(rundir, "_update", update)

    def write(folder):
        for name in ("a.pt", "b.pt", "sub/c.pt"):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(b"x")

    checkpoints.save_folder(rundir, ART, 1, write)
    record = rundir.get(ART)
    assert {f for f in record["files"] if f.startswith("checkpoint-")} == {
        "checkpoint-000001/a.pt", "checkpoint-000001/b.pt", "checkpoint-000001/sub/c.pt"}
    assert seen[0] == set(record["files"])  # the first update listed every file at once
