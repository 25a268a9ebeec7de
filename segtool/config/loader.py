"""Presets and config files (TOML), dotted ``--set`` overrides, and strict validation.

Unknown sections and keys are errors (a typo must never be silently ignored). Relative model and
data paths in a config file are resolved against that file's directory, so a preset works from any
working directory; paths given on the command line, and run directories, are resolved against the
working directory.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from pathlib import Path
from typing import Any, get_type_hints

from segtool.config.schema import Config, limits_error
from segtool.errors import ConfigError
from segtool.paths import looks_local

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PRESET_DIR = PROJECT_ROOT / "stages"
# Keys holding local paths (or hub names): resolved against the config file's directory if they exist.
PATH_KEYS = {("model", "path"), ("data", "path"), ("segment", "adaptive_model")}


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def preset_path(name: str) -> Path:
    path = PRESET_DIR / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(
            f"no preset named {name!r} in {PRESET_DIR}",
            f"available presets: {', '.join(available_presets()) or 'none'}; or pass --config FILE",
        )
    return path


def _suggest(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def _section_fields(section_cls) -> dict[str, tuple[type, dataclasses.Field]]:
    hints = get_type_hints(section_cls)
    return {f.name: (hints[f.name], f) for f in dataclasses.fields(section_cls)}


def _coerce(value: Any, typ: type, where: str) -> Any:
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is bool and not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, got {value!r}", "write true or false")
    if typ is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where} must be an integer, got {value!r}", "write a whole number, e.g. 5")
    if typ is float and not isinstance(value, float):
        raise ConfigError(f"{where} must be a number, got {value!r}", "write a number, e.g. 2.0")
    if typ is str and not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {value!r}", 'quote it, e.g. "value"')
    if typ is tuple and not (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)):
        raise ConfigError(f"{where} must be a list of strings, got {value!r}", 'write a TOML list, e.g. ["segment", "train-rm"]')
    return value


def _resolve_path(value: str, base: Path) -> str:
    """A path relative to ``base`` when it exists there or plainly names a file; else as given (hub id)."""
    if not value:
        return value
    candidate = (base / Path(value).expanduser()).resolve()
    if candidate.exists() or looks_local(value):
        return str(candidate)
    return value


def _merge(raw: dict, source: str, into: dict, base: Path) -> None:
    sections = {f.name: f.type for f in dataclasses.fields(Config)}
    hints = get_type_hints(Config)
    for section, table in raw.items():
        if section not in sections:
            raise ConfigError(
                f"{source}: unknown section [{section}]",
                f"{_suggest(section, sections)}valid sections: {', '.join(sections)}",
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{section}] must be a table", f"write [{section}] then key = value lines")
        fields = _section_fields(hints[section])
        for key, value in table.items():
            if key not in fields:
                raise ConfigError(
                    f"{source}: unknown key {section}.{key}",
                    f"{_suggest(key, fields)}valid keys in [{section}]: {', '.join(fields)}",
                )
            typ, knob_field = fields[key]
            value = _coerce(value, typ, f"{source}: {section}.{key}")
            err = limits_error(section, knob_field, value)
            if err is not None:
                raise ConfigError(f"{source}: {err.message}", err.hint)
            if (section, key) in PATH_KEYS:
                value = _resolve_path(value, base)
            into.setdefault(section, {})[key] = value


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}", "fix the syntax at the line shown") from None


def _preset_chain(path: Path) -> list[Path]:
    """The files to merge, base first: a file may say ``extends = "NAME"`` (a preset name, or a
    .toml path relative to the file) and override only what differs."""
    chain = [path]
    while True:
        parent = _read_toml(chain[-1]).get("extends")
        if parent is None:
            return list(reversed(chain))
        if not isinstance(parent, str):
            raise ConfigError(f"{chain[-1]}: extends must be a preset name or a .toml path", 'e.g. extends = "tiny"')
        nxt = (chain[-1].parent / parent).resolve() if parent.endswith(".toml") else preset_path(parent)
        if nxt in chain:
            raise ConfigError(f"{chain[-1]}: extends makes a cycle through {nxt}", "remove one of the extends keys")
        chain.append(nxt)


def parse_override(text: str) -> tuple[str, str, Any]:
    """``section.key=value`` -> (section, key, value); the value is read as TOML, else as a string."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"--set {text!r} is not of the form section.key=value", "e.g. --set segment.c_ent=2.0")
    dotted, raw_value = text.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw_value}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw_value
    return section, key, value


def load_config(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] = (),
    data: str | None = None,
    workdir: str | None = None,
    skip_invalid: bool = False,
    base: dict | None = None,
) -> tuple[Config, str]:
    """Build the resolved Config; returns it with a short name of its source (for run directories).

    ``base`` (an already resolved config, e.g. the one a run directory last ran with) is the
    starting point when neither a preset nor a config file is given.
    """
    if preset and config_file:
        raise ConfigError("give either --preset or --config, not both", "drop one of them")
    merged: dict = {}
    name = "custom"
    cwd = Path.cwd()
    if base and not (preset or config_file):
        _merge(base, "the run directory's saved config", merged, cwd)
    if preset or config_file:
        path = preset_path(preset) if preset else Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found", "check the path passed to --config")
        for layer in _preset_chain(path):
            raw = _read_toml(layer)
            raw.pop("extends", None)
            _merge(raw, str(layer), merged, layer.parent.resolve())
        name = preset or path.stem
    for text in overrides:
        section, key, value = parse_override(text)
        _merge({section: {key: value}}, f"--set {text}", merged, cwd)
    if data:
        _merge({"data": {"path": data}}, "--data", merged, cwd)
    if workdir:
        merged.setdefault("run", {})["workdir"] = str(Path(workdir).expanduser().resolve())
    if skip_invalid:
        merged.setdefault("data", {})["skip_invalid"] = True
    hints = get_type_hints(Config)
    sections = {s: hints[s](**merged.get(s, {})) for s in (f.name for f in dataclasses.fields(Config))}
    cfg = Config(**sections)
    # Run directories are relative to the working directory, wherever they were written.
    workdir_path = (cwd / Path(cfg.run.workdir).expanduser()) if cfg.run.workdir else cwd / "runs" / name
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, workdir=str(workdir_path.resolve())))
    return cfg, name


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def config_from_dict(data: dict) -> Config:
    hints = get_type_hints(Config)
    return Config(**{s: hints[s](**data.get(s, {})) for s in (f.name for f in dataclasses.fields(Config))})


def identity_view(cfg: Config, sections: tuple[str, ...]) -> dict:
    """The parts of the config that decide a stage's output (execution knobs dropped)."""
    out = {}
    for section in sections:
        obj = getattr(cfg, section)
        out[section] = {
            f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.metadata.get("identity", True)
        }
    return out
