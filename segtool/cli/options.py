"""Options every stage shares, declared once and added to each stage command by ``stage_command``."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

SHARED = {
    "preset": (Annotated[str | None, typer.Option("--preset", "-p", help="Preset name from stages/ (e.g. tiny).", show_default=False)], None),
    "config": (Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file (same sections as a preset).", show_default=False)], None),
    "workdir": (Annotated[Path | None, typer.Option("--workdir", "-w", help="Run directory (default: runs/<preset>).", show_default=False)], None),
    "data": (Annotated[str | None, typer.Option("--data", help="Preference data (.jsonl, .jsonl.gz, .parquet or HF dataset name); overrides the preset.", show_default=False)], None),
    "set_": (Annotated[list[str] | None, typer.Option("--set", help="Override one config key: section.key=value (repeatable).", show_default=False)], None),
    "resume": (Annotated[bool, typer.Option("--resume", help="Continue this stage's partial artifact instead of starting over.")], False),
    "force": (Annotated[bool, typer.Option("--force", help="Recompute even if a complete artifact with this identity exists.")], False),
    "skip_invalid": (Annotated[bool, typer.Option("--skip-invalid", help="Skip and count invalid input rows instead of failing.")], False),
    "json_": (Annotated[bool, typer.Option("--json", help="Print only JSON on stdout (progress and logs go to stderr).")], False),
}


@dataclass(frozen=True)
class StageOptions:
    preset: str | None
    config: Path | None
    workdir: Path | None
    data: str | None
    set_: list[str] | None
    resume: bool
    force: bool
    skip_invalid: bool
    json_: bool

    def load(self, base: dict | None = None):
        from segtool.config.loader import load_config

        cfg, _ = load_config(
            preset=self.preset, config_file=self.config, overrides=self.set_ or [], data=self.data,
            workdir=str(self.workdir) if self.workdir else None, skip_invalid=self.skip_invalid, base=base,
        )
        return cfg


def stage_command(fn):
    """Give ``fn(opts: StageOptions, **own)`` the shared options as real CLI parameters."""
    # eval_str: typer reads the __signature__ given below as is, so string annotations (modules with
    # `from __future__ import annotations`) must be resolved here or their typer.Option is lost
    own = [p for name, p in inspect.signature(fn, eval_str=True).parameters.items() if name != "opts"]
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, (annotation, default) in SHARED.items()
    ]

    @functools.wraps(fn)
    def wrapper(**kwargs):
        from segtool.console import own_stdout

        opts = StageOptions(**{name: kwargs.pop(name) for name in SHARED})
        with own_stdout():
            return fn(opts, **kwargs)

    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + shared
    wrapper.__signature__ = inspect.Signature(params)
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    del wrapper.__wrapped__  # make typer read __signature__, not fn's own
    return wrapper
