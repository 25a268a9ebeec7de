"""Presets and config files (TOML), dotted ``--set`` overrides, and strict validation.

Unknown sections and keys are errors (a typo must never be silently ignored). Relative model and
data paths in a config file are resolved against that file's directory, so a preset works from any
working directory; paths given on the command line, and run directories, are resolved against the
working directory.

Sections may hold tables (``[train_rm.optim]``, or dotted keys ``optim.lr = 1e-5`` inside
``[train_rm]``); a ``--set`` key is the same dotted path (``train_rm.optim.lr=1e-5``). The flat keys
of config version 1 (``train_rm.lr``, ``ppo.actor_lr``) still set their new keys (config.legacy).
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import tomllib
from pathlib import Path
from typing import Any, get_type_hints

from segtool.config import legacy
from segtool.config.knobs import build, limits_error, section_knobs, value_at
from segtool.config.schema import CONFIG_VERSION, Config
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


def _suggest_key(word: str, keys) -> str:
    """A close knob key, also when only the last part is close (``lrr`` -> ``optim.lr``)."""
    by_leaf = {}
    for key in keys:
        by_leaf.setdefault(key.rsplit(".", 1)[-1], key)
    close = difflib.get_close_matches(word, list(keys), n=1) or [
        by_leaf[m] for m in difflib.get_close_matches(word.rsplit(".", 1)[-1], list(by_leaf), n=1)]
    return f"did you mean {close[0]!r}? " if close else ""


def _section_classes() -> dict[str, type]:
    hints = get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


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


def _flatten(table: dict, prefix: str = ""):
    """(dotted key, value) of every value in a section's table and its nested tables."""
    for key, value in table.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _merge(raw: dict, source: str, into: dict, base: Path | None, given: dict, notes: list | None) -> None:
    """Check the sections in ``raw`` and set their values into ``into`` (section -> dotted key -> value).

    ``base`` resolves relative paths (None: kept as they are); ``given`` maps each key set by the
    sources read together (one file, or all --set) to the key written, so an old key and its new
    one written together are refused; ``notes`` collects the old keys used (None: read silently).
    """
    sections = _section_classes()
    for section, table in raw.items():
        if section not in sections:
            raise ConfigError(
                f"{source}: unknown section [{section}]",
                f"{_suggest(section, sections)}valid sections: {', '.join(sections)}",
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{section}] must be a table", f"write [{section}] then key = value lines")
        knobs = section_knobs(sections[section])
        for written, value in _flatten(table):
            targets = legacy.new_keys(section, written) or (written,)
            if targets[0] not in knobs:
                _unknown_key(source, section, written, knobs)
            _claim(given, source, section, written, targets)
            if notes is not None and targets != (written,):
                notes.append((f"{section}.{written}", [f"{section}.{t}" for t in targets]))
            where = f"{section}.{written}"
            value = _coerce(value, knobs[targets[0]].type, f"{source}: {where}")
            err = limits_error(where, knobs[targets[0]], value)
            if err is not None:
                raise ConfigError(f"{source}: {err.message}", err.hint)
            if (section, written) in PATH_KEYS and base is not None:
                value = _resolve_path(value, base)
            for target in targets:
                into.setdefault(section, {})[target] = value


def _claim(given: dict, source: str, section: str, written: str, targets: tuple[str, ...]) -> None:
    """Record that ``written`` sets ``targets``; refuse an old key and its new key written together."""
    for target in targets:
        first = given.setdefault((section, target), written)
        if first != written:
            old, new = (first, written) if legacy.new_keys(section, first) else (written, first)
            raise ConfigError(
                f"{source}: {section}.{old} and {section}.{new} are both set",
                f"{section}.{old} is the old key for "
                f"{' and '.join(f'{section}.{t}' for t in legacy.new_keys(section, old))}: write only the new key")


def _unknown_key(source: str, section: str, written: str, knobs: dict) -> None:
    inside = [key for key in knobs if key.startswith(f"{written}.")]
    if inside:
        names = ", ".join(key.split(".", 1)[1] for key in inside)
        raise ConfigError(f"{source}: {section}.{written} must be a table",
                          f"write [{section}.{written}] then key = value lines (keys: {names})")
    raise ConfigError(
        f"{source}: unknown key {section}.{written}",
        f"{_suggest_key(written, knobs)}valid keys in [{section}]: {', '.join(knobs)}",
    )


def _saved_sections(data: dict, source: str) -> dict:
    """A saved config's sections (config_to_dict's output, of any version up to this one)."""
    sections = dict(data)
    version = sections.pop("config_version", 1)  # version 1 did not record it
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= CONFIG_VERSION:
        raise ConfigError(f"{source} has config version {version!r}; this segtool reads versions 1 to {CONFIG_VERSION}",
                          "use the segtool version that wrote it, or start a new --workdir")
    return sections


def _build(merged: dict) -> Config:
    return Config(**{name: build(cls, merged.get(name, {})) for name, cls in _section_classes().items()})


NOTED: set[str] = set()  # old keys already noted by this process


def _note_old_keys(notes: list) -> None:
    """Tell once per process and key that an old flat key was read (stderr: stdout may carry JSON)."""
    for old, new in notes:
        if old not in NOTED:
            NOTED.add(old)
            print(f"note: {old} is an old key, read this release only: write {' and '.join(new)}", file=sys.stderr)


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
    """``section.key=value`` -> (section, key, value), ``key`` dotted inside a table
    (``train_rm.optim.lr=1e-5``); the value is read as TOML, else as a string."""
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
    notes: list = []
    name = "custom"
    cwd = Path.cwd()
    if base and not (preset or config_file):
        source = "the run directory's saved config"
        _merge(_saved_sections(base, source), source, merged, cwd, {}, None)
    if preset or config_file:
        path = preset_path(preset) if preset else Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found", "check the path passed to --config")
        for layer in _preset_chain(path):
            raw = _read_toml(layer)
            raw.pop("extends", None)
            _merge(raw, str(layer), merged, layer.parent.resolve(), {}, notes)
        name = preset or path.stem
    on_command_line: dict = {}
    for text in overrides:
        section, key, value = parse_override(text)
        _merge({section: {key: value}}, f"--set {text}", merged, cwd, on_command_line, notes)
    if data:
        _merge({"data": {"path": data}}, "--data", merged, cwd, {}, None)
    if workdir:
        merged.setdefault("run", {})["workdir"] = str(Path(workdir).expanduser().resolve())
    if skip_invalid:
        merged.setdefault("data", {})["skip_invalid"] = True
    cfg = _build(merged)
    # Run directories are relative to the working directory, wherever they were written.
    workdir_path = (cwd / Path(cfg.run.workdir).expanduser()) if cfg.run.workdir else cwd / "runs" / name
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, workdir=str(workdir_path.resolve())))
    _note_old_keys(notes)
    return cfg, name


def config_to_dict(cfg: Config) -> dict:
    """The config as written to manifest.json: nested tables as nested objects, and its layout version."""
    return {"config_version": CONFIG_VERSION, **dataclasses.asdict(cfg)}


def config_from_dict(data: dict) -> Config:
    """A saved config (config_to_dict's output, of this or an older layout), checked as a config file is."""
    merged: dict = {}
    _merge(_saved_sections(data, "a saved config"), "a saved config", merged, None, {}, None)
    return _build(merged)


def identity_view(cfg: Config, sections: tuple[str, ...]) -> dict:
    """The parts of the config that decide a stage's output (execution knobs dropped), under the key
    names of config version 1 (config.legacy), so that artifact ids do not depend on the layout."""
    out = {}
    for section in sections:
        obj = getattr(cfg, section)
        values = {key: value_at(obj, key) for key, spec in section_knobs(type(obj)).items() if spec.identity}
        out[section] = legacy.identity_names(section, values)
    return out
