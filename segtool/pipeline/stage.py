"""The stage protocol: what a stage declares so that one runner (``pipeline.runner``) can run it.

A stage names itself and the stages that must have run before it, says which artifact a config
would produce (``plan``) and produces it (``compute``). Everything around that work is the runner's:
the run-directory lock, the parents, the up-to-date check, the manifest record, and which rank of a
data-parallel launch does what.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property

from segtool import distributed
from segtool.artifacts.manifest import RunDir, artifact_id
from segtool.config.schema import Config
from segtool.models.loading import pick_device
from segtool.training import checkpoints


@dataclass(frozen=True)
class Plan:
    """The identity of the artifact a config would produce, known before anything is computed."""

    art_id: str
    identity_config: dict
    parents: tuple[str, ...]
    schema_version: int
    inputs: dict = field(default_factory=dict)  # what the record notes about inputs already known when planning
    resolved: dict = field(default_factory=dict)  # what planning looked up and computing reuses (model sources)

    @classmethod
    def of(cls, stage: str, identity_config: dict, parents: Iterable[str], schema_version: int, **known) -> Plan:
        parents = tuple(parents)
        return cls(artifact_id(stage, identity_config, list(parents), schema_version), identity_config, parents,
                   schema_version, **known)


@dataclass(frozen=True)
class Outcome:
    """What a compute hands back for the record. ``metrics`` None: this rank did not compute them (a
    data-parallel stage's final figures can be rank 0's alone); the record's are reported."""

    rows: dict
    metrics: dict | None


@dataclass(frozen=True)
class Stage:
    name: str  # the stage of its manifest records (and of the lock it holds)
    plan: Callable[[Config], Plan]
    compute: Callable[[Context], Outcome]
    parents: tuple[str, ...] = ()  # registry names, run first (continuing partial work) with the same config
    # Instead of ``parents``, where they depend on the config: (registry name, config) of each, yielded
    # lazily, so that one can depend on the parents run before it.
    parents_for: Callable[[Config], Iterable[tuple[str, Config]]] | None = None
    data_parallel: bool = False  # every rank of a launch computes it (DeepSpeed); rank 0 alone writes
    resumable: bool = True  # --resume continues a partial record; otherwise a partial one starts over
    side_artifact: bool = False  # an evaluation: an up-to-date rerun leaves the stage heads alone

    def parent_runs(self, cfg: Config) -> Iterator[tuple[str, Config]]:
        if self.parents_for is not None:
            yield from self.parents_for(cfg)
        else:
            yield from ((name, cfg) for name in self.parents)


@dataclass
class Context:
    """What a compute works with. It calls ``begin`` once it has checked its inputs (bad input leaves
    no artifact), writes its files into ``record``, and returns an Outcome; the runner completes the
    record."""

    stage: Stage
    cfg: Config
    rundir: RunDir
    plan: Plan
    config: dict  # the resolved config, as the record keeps it
    parents: dict  # registry name -> the parent's StageResult
    resume: bool
    force: bool
    quiet: bool
    resuming: bool = False  # set by begin: a partial record is continued
    record: dict | None = None  # set by begin

    @property
    def main(self) -> bool:
        return distributed.is_main()

    @cached_property
    def device(self) -> str:
        return device_for(self.cfg)

    def partial(self) -> bool:
        """A partial record of this artifact is in the run directory."""
        prior = self.rundir.get(self.plan.art_id)
        return prior is not None and prior["status"] == "partial"

    def begin(self, inputs: dict, *, layout: dict | None = None, staged: tuple[str, ...] = (),
              folders: tuple[str, ...] = ()) -> dict:
        """Open the record, or with --resume reopen a partial one (its files verified), and return it.

        ``layout``: how the work is split into files (a resumed record keeps its own). What a kill
        mid-write left unrecorded in checkpoint folders, in the final folders written by renaming
        (``staged``) and in ``folders`` is removed.
        """
        self.resuming = self.stage.resumable and self.resume and self.partial()
        if self.main or not self.stage.data_parallel:
            record = self.rundir.begin(
                self.stage.name, self.plan.art_id, config=self.config, identity_config=self.plan.identity_config,
                parents=list(self.plan.parents), schema_version=self.plan.schema_version, inputs=inputs,
                resume=self.resume and self.stage.resumable, layout=layout,
            )
            checkpoints.clean_unrecorded(self.rundir, record, staged, folders)
        self.sync()
        self.record = self.rundir.get(self.plan.art_id)
        if self.resuming:
            self.rundir.verify(self.record)  # files kept from the interrupted run must be intact
        return self.record

    def sync(self) -> None:
        """Every rank of a data-parallel stage waits here for the others (rank 0's writes included)."""
        if self.stage.data_parallel:
            distributed.barrier()


def device_for(cfg: Config) -> str:
    """model.device resolved; each rank's own GPU under a launcher."""
    return distributed.local_device(pick_device(cfg.model.device))
