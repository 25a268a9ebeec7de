"""What every stage shares: the result it returns and the console it reports on."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Console

STDERR = Console(stderr=True)


@dataclass
class StageResult:
    stage: str
    artifact_id: str
    outcome: str  # "computed", "resumed" or "up-to-date"
    workdir: str
    record: dict
    summary: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "stage": self.stage,
            "artifact_id": self.artifact_id,
            "outcome": self.outcome,
            "workdir": self.workdir,
            "status": self.record["status"],
            "rows": self.record["rows"],
            "metrics": self.record["metrics"],
        }
