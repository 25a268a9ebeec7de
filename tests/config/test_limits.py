"""Every numeric knob of every config section declares its limits; NaN, infinities and values just
outside the limits are ConfigErrors naming the source, the key and the range, whether they come
from --set / a config file (the loader) or straight into the dataclass (a saved config)."""

from __future__ import annotations

import dataclasses
from typing import get_type_hints

import pytest

from segtool.config.knobs import build, section_knobs
from segtool.config.loader import load_config
from segtool.config.schema import Config, Limits
from segtool.errors import ConfigError


def numeric_knobs():
    """Every numeric knob, those of nested tables (train_rm.optim.lr) by their dotted key."""
    hints = get_type_hints(Config)
    for section in dataclasses.fields(Config):
        cls = hints[section.name]
        for knob in section_knobs(cls).values():
            if knob.type in (int, float):
                yield pytest.param(section.name, cls, knob, knob.type, id=f"{section.name}.{knob.key}")


KNOBS = list(numeric_knobs())


def outside(limits: Limits, typ: type) -> list:
    """The values just beyond each finite bound (the bound itself when it is open)."""
    step = 1 if typ is int else 0.001
    values = []
    if limits.low is not None:
        values.append(limits.low if limits.low_open else limits.low - step)
    if limits.high is not None:
        values.append(limits.high if limits.high_open else limits.high + step)
    return [typ(v) for v in values]


def test_the_schema_has_numeric_knobs_in_every_section_that_takes_numbers():
    sections = {p.values[0] for p in KNOBS}
    assert len(KNOBS) >= 100
    assert sections == {"data", "tokenize", "segment", "train_rm", "normalizer", "ppo", "eval", "dpo", "rs", "run"}


@pytest.mark.parametrize("section, cls, knob, typ", KNOBS)
def test_every_numeric_knob_has_limits_that_hold_its_default(section, cls, knob, typ):
    limits = knob.field.metadata.get("limits")
    assert isinstance(limits, Limits), f"{section}.{knob.key} declares no limits"
    assert limits.admits(knob.default)
    assert outside(limits, typ), f"{section}.{knob.key}: limits without a finite bound"


@pytest.mark.parametrize("section, cls, knob, typ", KNOBS)
def test_nan_and_out_of_range_values_are_refused(section, cls, knob, typ):
    key = f"{section}.{knob.key}"
    limits = knob.field.metadata["limits"]
    for text in ("nan", "inf", "-inf"):
        with pytest.raises(ConfigError) as exc:
            load_config(overrides=[f"{key}={text}"])
        expected = (f"{key} must be an integer, got {float(text)!r}" if typ is int
                    else f"{key} = {float(text)!r} is not a finite number: it must be {limits}")
        assert exc.value.message == f"--set {key}={text}: {expected}"
    for value in outside(limits, typ):
        with pytest.raises(ConfigError) as exc:
            load_config(overrides=[f"{key}={value!r}"])
        assert exc.value.message == f"--set {key}={value!r}: {key} = {value!r} is out of range: it must be {limits}"
        assert str(limits) in exc.value.hint
        # a saved config (manifest) goes straight into the dataclass: refused there too
        with pytest.raises(ConfigError, match=f"^{key} = "):
            build(cls, {knob.key: value})
    if typ is float:
        with pytest.raises(ConfigError, match=f"^{key} = nan is not a finite number"):
            build(cls, {knob.key: float("nan")})


def test_limits_read_as_intervals():
    assert [str(x) for x in (Limits(0), Limits(0, low_open=True), Limits(0, 1, low_open=True), Limits(0, 0.5, high_open=True),
                            Limits(1, 12))] == [">= 0", "> 0", "in (0, 1]", "in [0, 0.5)", "in [1, 12]"]


def test_a_config_file_value_out_of_range_names_the_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("[segment]\nc_ent = -1\n")
    with pytest.raises(ConfigError) as exc:
        load_config(config_file=path)
    assert exc.value.message == f"{path}: segment.c_ent = -1.0 is out of range: it must be >= 0"
    assert exc.value.hint == "use a number >= 0 (default 1.75)"
