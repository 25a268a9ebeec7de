"""Resumable checkpoints and staged final folders inside an artifact's folder.

A checkpoint is the folder ``checkpoint-<step>/``: written in full, recorded in the manifest, and
only then are older ones dropped, so a kill at any point leaves one intact, recorded checkpoint. A
final model folder is written under ``<name>.tmp/`` and renamed, so a kill never leaves a half-written
folder recorded. Under a data-parallel launcher every rank calls these functions; rank 0 alone
touches the manifest.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_model, save_file, save_model

from segtool import distributed
from segtool.artifacts.files import atomic_path, write_errors
from segtool.artifacts.manifest import RunDir
from segtool.training.steppers import DeepSpeedStepper

PREFIX = "checkpoint-"
STATE = "state.pt"
POLICY_METADATA = "segtool_policy.json"  # written beside a trained policy (dpo, rs)
POLICY_WEIGHTS = "policy.safetensors"  # the trained policy's tensors in a dpo or rs checkpoint


def checkpoint_names(record: dict) -> list[str]:
    return sorted({n.split("/")[0] for n in record["files"] if n.startswith(PREFIX)})


def latest_checkpoint(rundir: RunDir, record: dict) -> Path | None:
    names = checkpoint_names(record)
    return rundir.path_of(record, names[-1]) if names else None


def _record_folder(rundir: RunDir, art_id: str, name: str) -> None:
    folder = rundir.path_of(rundir.get(art_id), name)
    rundir.add_files(art_id, [f"{name}/{f.relative_to(folder).as_posix()}"
                              for f in sorted(p for p in folder.rglob("*") if p.is_file())])


def save_folder(rundir: RunDir, art_id: str, step: int, write: Callable[[Path], None]) -> None:
    """checkpoint-<step>/ filled by ``write(folder)`` (on every rank), recorded, then every older
    checkpoint dropped."""
    name = f"{PREFIX}{step:06d}"
    folder = rundir.path_of(rundir.get(art_id), name)
    if distributed.is_main():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    distributed.barrier()
    write(folder)
    distributed.barrier()
    if distributed.is_main():
        _record_folder(rundir, art_id, name)
        drop_checkpoints(rundir, art_id, keep=name)
    distributed.barrier()


def drop_checkpoints(rundir: RunDir, art_id: str, keep: str | None = None) -> None:
    """Forget, then delete, every checkpoint folder but ``keep``."""
    record = rundir.get(art_id)
    names = [n for n in checkpoint_names(record) if n != keep]
    rundir.remove_files(art_id, [f for f in record["files"] if f.split("/")[0] in names])
    for n in names:
        shutil.rmtree(rundir.path_of(record, n), ignore_errors=True)


def clean_unrecorded(rundir: RunDir, record: dict, staged: tuple[str, ...] = (), folders: tuple[str, ...] = ()) -> None:
    """What a kill mid-write left that the record does not list: files in checkpoint folders, in the
    ``staged`` final folders (and their staging) and in ``folders``; a folder with nothing recorded
    goes whole."""
    root = rundir.path_of(record)
    names = [*folders, *staged, *(f"{s}.tmp" for s in staged)]
    for sub in [*root.glob(f"{PREFIX}*"), *(root / n for n in names)]:
        if not sub.is_dir():
            continue
        if not any(f.startswith(sub.name + "/") for f in record["files"]):
            shutil.rmtree(sub, ignore_errors=True)
            continue
        for p in sub.rglob("*"):
            if p.is_file() and p.relative_to(root).as_posix() not in record["files"]:
                p.unlink()


def write_staged(rundir: RunDir, art_id: str, name: str, fill: Callable[[Path], None]) -> None:
    """The folder ``name``/: ``fill(folder)`` writes it under ``name``.tmp/, which is then renamed and
    its files recorded."""
    record = rundir.get(art_id)
    staging = rundir.path_of(record, f"{name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    with write_errors(staging):
        staging.mkdir(parents=True)
        fill(staging)
    final = rundir.path_of(record, name)
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    _record_folder(rundir, art_id, name)


def save_policy(policy, tokenizer, folder: Path, metadata: dict | None = None) -> None:
    """A transformers causal-LM folder with the tokenizer (and ``metadata`` as segtool_policy.json)."""
    with write_errors(folder):
        folder.mkdir(parents=True, exist_ok=True)
        policy.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        if metadata is not None:
            (folder / POLICY_METADATA).write_text(json.dumps(metadata, indent=2) + "\n")


def write_policy(rundir: RunDir, art_id: str, policy, tokenizer, metadata: dict | None = None) -> None:
    """The final policy/ folder, staged."""
    write_staged(rundir, art_id, "policy", lambda folder: save_policy(policy, tokenizer, folder, metadata))


def save_weights(model, path: Path) -> None:
    """Every tensor of ``model``'s state dict, atomically."""
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp))


# -- one trained model ----------------------------------------------------------------------------


def save_checkpoint(rundir: RunDir, art_id: str, step: int, model, stepper, state: dict, weights: str) -> None:
    """checkpoint-<step>/ of one trained model: under DeepSpeed the engine's checkpoint with ``step``
    and ``state``; otherwise ``weights`` (the model's tensors, tied ones once) and state.pt (step,
    optimiser, schedule, torch RNG, then ``state``)."""
    def write(folder: Path) -> None:
        if isinstance(stepper, DeepSpeedStepper):
            stepper.save(folder, {"step": step, **state})
            return
        with atomic_path(folder / weights) as tmp:
            save_model(model, str(tmp))
        with atomic_path(folder / STATE) as tmp:
            torch.save({"step": step, **stepper.state_dict(), "rng": torch.get_rng_state(), **state}, tmp)

    save_folder(rundir, art_id, step, write)


def load_checkpoint(rundir: RunDir, record: dict, model, stepper, weights: str) -> dict | None:
    """The state saved by ``save_checkpoint`` in the latest checkpoint (None when there is none), with
    the model, the stepper and the torch RNG restored."""
    folder = latest_checkpoint(rundir, record)
    if folder is None:
        return None
    if isinstance(stepper, DeepSpeedStepper):
        return stepper.load(folder)
    load_model(model, str(folder / weights))
    state = torch.load(folder / STATE, weights_only=False)
    stepper.load_state_dict(state)
    torch.set_rng_state(state["rng"])
    return state
