"""How a config knob is declared and checked: one mechanism for every section.

A knob is a dataclass field declared with ``knob`` (help, identity, and what values it admits:
numeric ``limits`` or string ``choices``); a nested table of knobs (``train_rm.optim``) is declared
with ``table``. A section derives from ``Section``: constructing it checks every knob, nested ones
included, naming each by its dotted key, then the section's cross-knob ``rules``. The loader also
checks each number's limits as it reads it, so that error names the file or --set it came from.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, get_type_hints

from segtool.errors import ConfigError


@dataclass(frozen=True)
class Limits:
    """The values a numeric knob admits: low/high bounds (None = unbounded), each closed unless open."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def admits(self, value) -> bool:
        if isinstance(value, float) and math.isnan(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        return f"{'<' if self.high_open else '<='} {self.high}"


NON_NEGATIVE = Limits(0)
AT_LEAST_ONE = Limits(1)
POSITIVE = Limits(0, low_open=True)
UNIT_INTERVAL = Limits(0, 1)
UPPER_UNIT = Limits(0, 1, low_open=True)
OPEN_UNIT = Limits(0, 1, low_open=True, high_open=True)
ADAM_BETA = Limits(0, 1, high_open=True)


@dataclass(frozen=True)
class Choices:
    """The names a string knob admits; ``problem`` words the error for any other value."""

    names: tuple[str, ...]
    problem: str = "is not known"

    def __str__(self) -> str:
        return ", ".join(self.names)


def knob(default, help: str, identity: bool = True, limits: Limits | None = None,
         choices: tuple[str, ...] | Choices | None = None):
    if isinstance(choices, tuple):
        choices = Choices(choices)
    return field(default=default, metadata={"help": help, "identity": identity, "limits": limits, "choices": choices})


def table(cls, help: str, **defaults):
    """A nested table of ``cls``'s knobs, with this section's defaults where they differ from the class's."""
    return field(default_factory=functools.partial(cls, **defaults), metadata={"help": help, "table": cls})


@dataclass(frozen=True)
class Knob:
    """One knob as a section sees it: dotted key inside the section, field, type, and this section's default."""

    key: str
    field: dataclasses.Field
    type: type
    default: Any

    @property
    def identity(self) -> bool:
        return self.field.metadata.get("identity", True)


@functools.cache
def section_knobs(cls) -> dict[str, Knob]:
    """Every knob of a section class (or table class) by dotted key, nested tables flattened, in order."""
    hints = get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        inner_cls = f.metadata.get("table")
        if inner_cls is None:
            out[f.name] = Knob(f.name, f, hints[f.name], f.default)
            continue
        defaults = f.default_factory()
        for inner in section_knobs(inner_cls).values():
            key = f"{f.name}.{inner.key}"
            out[key] = Knob(key, inner.field, inner.type, value_at(defaults, inner.key))
    return out


def value_at(obj, key: str):
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def knob_error(name: str, knob: Knob, value) -> ConfigError | None:
    """The error for a value its knob does not admit (not one of its choices, or out of its limits),
    else None. ``name`` is the key as the user knows it, e.g. ``ppo.sampling.top_p``."""
    choices = knob.field.metadata.get("choices")
    if choices is not None and value not in choices.names:
        return ConfigError(f"{name} = {value!r} {choices.problem}", f"use one of: {choices}")
    return limits_error(name, knob, value)


def limits_error(name: str, knob: Knob, value) -> ConfigError | None:
    """The error for a number outside its knob's limits (or not finite), else None."""
    limits = knob.field.metadata.get("limits")
    if limits is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        problem = "is not a finite number"
    elif not limits.admits(value):
        problem = "is out of range"
    else:
        return None
    return ConfigError(f"{name} = {value!r} {problem}: it must be {limits}",
                       f"use a number {limits} (default {knob.default!r})")


Rule = tuple[bool, str, str]  # (holds, message, hint)


def multiple_rule(section: str, big: str, big_value: int, small: str, small_value: int) -> Rule:
    """``section.big`` must be a multiple of ``section.small`` (batch sizes split into smaller ones)."""
    return (big_value % small_value == 0,
            f"{section}.{big} ({big_value}) must be a multiple of {small} ({small_value})",
            f"pick {small} dividing {big}")


@dataclass(frozen=True)
class Section:
    """A top-level config section: constructing one checks its knobs, then its ``rules``."""

    section: ClassVar[str] = ""  # its table name in a preset

    def rules(self) -> list[Rule]:
        """Checks that relate several knobs (each knob alone is already admitted)."""
        return []

    def __post_init__(self):
        for key, spec in section_knobs(type(self)).items():
            err = knob_error(f"{self.section}.{key}", spec, value_at(self, key))
            if err is not None:
                raise err
        for holds, message, hint in self.rules():
            if not holds:
                raise ConfigError(message, hint)


def build(cls, values: dict[str, Any], base=None):
    """An instance of ``cls`` from dotted-key values over ``base`` (default: the class defaults);
    a nested table starts from its section's default, so unset keys keep that section's values."""
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            top[head] = value
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name, inner in nested.items():
        current = getattr(base, name) if base is not None else fields[name].default_factory()
        top[name] = build(type(current), inner, current)
    return dataclasses.replace(base, **top) if base is not None else cls(**top)
