"""segtool.config.loader: presets, config files, --set overrides, strict validation."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from segtool.config.knobs import value_at
from segtool.config.loader import (
    PRESET_DIR,
    available_presets,
    config_to_dict,
    identity_view,
    load_config,
    parse_override,
)
from segtool.config.schema import Config
from segtool.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]


def write_toml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def dotted(table: dict, prefix: str = ""):
    """(dotted key, value) of a TOML table, nested tables (train_rm.optim) included."""
    for key, value in table.items():
        if isinstance(value, dict):
            yield from dotted(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def config_error(**kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as exc:
        load_config(**kwargs)
    return exc.value


# --------------------------------------------------------------------------------------------
# presets and path resolution


def test_tiny_preset_resolves_paths_relative_to_the_preset(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.chdir(tmp_path)  # the preset must work from any working directory
    cfg, name = load_config(preset="tiny")
    assert name == "tiny"
    assert cfg.model.path == str(tiny_model_dir.resolve())
    assert cfg.model.path.endswith("data/models/tinystories-656k")
    assert Path(cfg.model.path).is_dir()
    assert cfg.data.path == str((tiny_model_dir.parents[1] / "credit" / "tiny-story-pairs.jsonl.gz").resolve())
    assert Path(cfg.data.path).is_file()
    # every other value is the file's own (or the schema default)
    raw = tomllib.loads((PRESET_DIR / "tiny.toml").read_text())
    for section, table in raw.items():
        for key, value in dotted(table):
            if key != "path":
                expected = tuple(value) if isinstance(value, list) else value  # lists are kept as tuples (frozen)
                assert value_at(getattr(cfg, section), key) == expected, f"{section}.{key}"
    assert (cfg.tokenize.max_len, cfg.tokenize.max_prompt_len) == (512, 384)
    assert cfg.model.device == "cpu"
    assert cfg.model.revision == "main"  # not in the preset: schema default
    # default run directory: <cwd>/runs/<preset name>
    assert cfg.run.workdir == str(tmp_path / "runs" / "tiny")


def test_available_presets_lists_tiny():
    assert "tiny" in available_presets()
    assert available_presets() == sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def test_unknown_preset_lists_available():
    err = config_error(preset="tinny")
    assert err.message == f"no preset named 'tinny' in {PRESET_DIR}"
    assert "tiny" in err.hint
    assert err.hint.startswith("available presets: ")
    for name in available_presets():
        assert name in err.hint


def test_preset_and_config_together(tmp_path):
    path = write_toml(tmp_path / "c.toml", "[run]\nseed = 1\n")
    err = config_error(preset="tiny", config_file=path)
    assert err.message == "give either --preset or --config, not both"


def test_config_file_paths_resolve_against_its_folder(tmp_path, monkeypatch):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (tmp_path / "conf" / "models" / "m").mkdir(parents=True)
    path = write_toml(
        tmp_path / "conf" / "my.toml",
        '[model]\npath = "models/m"\n[data]\npath = "prefs.jsonl"\n',
    )
    cfg, name = load_config(config_file=path)
    assert name == "my"
    assert cfg.model.path == str(tmp_path / "conf" / "models" / "m")  # exists there
    assert cfg.data.path == str(tmp_path / "conf" / "prefs.jsonl")  # plainly a file name
    assert cfg.run.workdir == str(elsewhere / "runs" / "my")


def test_hub_ids_are_kept_as_given(tmp_path):
    path = write_toml(tmp_path / "hub.toml", '[model]\npath = "org/model"\n[data]\npath = "Anthropic/hh-rlhf"\n')
    cfg, _ = load_config(config_file=path)
    assert (cfg.model.path, cfg.data.path) == ("org/model", "Anthropic/hh-rlhf")


def test_command_line_paths_resolve_against_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg, _ = load_config(preset="tiny", data="mine.jsonl", workdir="out/run", skip_invalid=True)
    assert cfg.data.path == str(tmp_path / "mine.jsonl")
    assert cfg.run.workdir == str(tmp_path / "out" / "run")
    assert cfg.data.skip_invalid is True
    cfg, _ = load_config(preset="tiny", overrides=["model.path=../elsewhere"])
    assert cfg.model.path == str(tmp_path.parent / "elsewhere")


def test_missing_config_file(tmp_path):
    err = config_error(config_file=tmp_path / "nope.toml")
    assert err.message == f"config file {tmp_path / 'nope.toml'} not found"


def test_invalid_toml(tmp_path):
    path = write_toml(tmp_path / "broken.toml", "[segment\nc_ent = 2\n")
    err = config_error(config_file=path)
    assert err.message.startswith(f"{path}: invalid TOML: ")


# --------------------------------------------------------------------------------------------
# unknown sections and keys (never silently ignored)


def test_unknown_key_names_file_and_key_with_suggestion(tmp_path):
    path = write_toml(tmp_path / "typo.toml", "[segment]\ncent = 2.0\n")
    err = config_error(config_file=path)
    assert err.message == f"{path}: unknown key segment.cent"
    assert err.hint.startswith("did you mean 'c_ent'? ")
    assert "valid keys in [segment]: strategy, c_ent, n," in err.hint


def test_unknown_key_without_near_miss_has_no_suggestion(tmp_path):
    path = write_toml(tmp_path / "typo.toml", "[run]\nzzzzzz = 1\n")
    err = config_error(config_file=path)
    assert err.message == f"{path}: unknown key run.zzzzzz"
    assert err.hint == "valid keys in [run]: workdir, seed, stages"


def test_unknown_section(tmp_path):
    path = write_toml(tmp_path / "typo.toml", "[segmnt]\nc_ent = 2.0\n")
    err = config_error(config_file=path)
    assert err.message == f"{path}: unknown section [segmnt]"
    assert err.hint == "did you mean 'segment'? valid sections: model, data, tokenize, segment, train_rm, normalizer, ppo, eval, dpo, rs, run"


def test_top_level_key_is_not_a_table(tmp_path):
    path = write_toml(tmp_path / "flat.toml", "segment = 3\n")
    err = config_error(config_file=path)
    assert err.message == f"{path}: [segment] must be a table"


@pytest.mark.parametrize(
    "toml, message",
    [
        ('[segment]\nn = "5"\n', "segment.n must be an integer, got '5'"),
        ("[segment]\nn = 5.0\n", "segment.n must be an integer, got 5.0"),
        ("[segment]\nn = true\n", "segment.n must be an integer, got True"),
        ('[segment]\nc_ent = "2"\n', "segment.c_ent must be a number, got '2'"),
        ("[segment]\nc_ent = false\n", "segment.c_ent must be a number, got False"),
        ("[segment]\neos_in_last_segment = 1\n", "segment.eos_in_last_segment must be true or false, got 1"),
        ("[model]\ndtype = 32\n", "model.dtype must be a string, got 32"),
        ("[model]\npath = 1\n", "model.path must be a string, got 1"),
    ],
)
def test_type_errors(tmp_path, toml, message):
    path = write_toml(tmp_path / "types.toml", toml)
    err = config_error(config_file=path)
    assert err.message == f"{path}: {message}"


# --------------------------------------------------------------------------------------------
# --set overrides


def test_set_coerces_int_to_float():
    cfg, _ = load_config(preset="tiny", overrides=["segment.c_ent=2"])
    assert cfg.segment.c_ent == 2.0
    assert type(cfg.segment.c_ent) is float


def test_set_values_are_toml_else_strings():
    cfg, _ = load_config(
        preset="tiny",
        overrides=["model.device=cuda:1", "segment.strategy=token", "data.max_rows=7", "segment.eos_in_last_segment=true", 'model.revision="x y"'],
    )
    assert cfg.model.device == "cuda:1"  # not TOML -> the raw string
    assert cfg.segment.strategy == "token"
    assert cfg.data.max_rows == 7
    assert cfg.segment.eos_in_last_segment is True
    assert cfg.model.revision == "x y"


def test_set_later_wins():
    cfg, _ = load_config(preset="tiny", overrides=["segment.c_ent=1.5", "segment.c_ent=3.25"])
    assert cfg.segment.c_ent == 3.25


def test_parse_override():
    assert parse_override("segment.c_ent=2") == ("segment", "c_ent", 2)
    assert parse_override(" segment.c_ent = 2.5") == ("segment", "c_ent", 2.5)
    assert parse_override("data.split=train[:10%]") == ("data", "split", "train[:10%]")
    assert parse_override("data.name=a=b") == ("data", "name", "a=b")


def test_set_unknown_key():
    err = config_error(preset="tiny", overrides=["segment.cent=2"])
    assert err.message == "--set segment.cent=2: unknown key segment.cent"
    assert err.hint.startswith("did you mean 'c_ent'? ")


def test_set_unknown_section():
    err = config_error(preset="tiny", overrides=["segmnt.c_ent=2"])
    assert err.message == "--set segmnt.c_ent=2: unknown section [segmnt]"
    assert err.hint.startswith("did you mean 'segment'? ")


@pytest.mark.parametrize("text", ["segment.c_ent", "c_ent=2", "segment c_ent 2"])
def test_set_malformed(text):
    err = config_error(preset="tiny", overrides=[text])
    assert err.message == f"--set {text!r} is not of the form section.key=value"
    assert err.hint == "e.g. --set segment.c_ent=2.0"


def test_set_type_error():
    err = config_error(preset="tiny", overrides=["segment.n=five"])
    assert err.message == "--set segment.n=five: segment.n must be an integer, got 'five'"


# --------------------------------------------------------------------------------------------
# base config (e.g. the one a run directory last ran with)


def test_base_used_without_preset_or_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first, _ = load_config(preset="tiny", overrides=["segment.c_ent=4.5", "segment.n=9"], workdir="runs/a")
    base = config_to_dict(first)
    cfg, name = load_config(base=base, overrides=["segment.n=3"])
    assert name == "custom"
    assert cfg.segment.n == 3  # --set on top of the base
    assert cfg.segment.c_ent == 4.5  # from the base, not the preset
    assert cfg.model.path == first.model.path
    assert cfg.run.workdir == str(tmp_path / "runs" / "a")
    assert load_config(base=base)[0] == first
    # base is not mutated
    assert base["segment"]["n"] == 9


def test_base_ignored_when_preset_given():
    base = config_to_dict(load_config(preset="tiny", overrides=["segment.n=9"])[0])
    cfg, name = load_config(preset="tiny", base=base)
    assert name == "tiny"
    assert cfg.segment.n == Config().segment.n == 5


def test_no_source_gives_schema_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg, name = load_config()
    assert name == "custom"
    assert cfg.segment == Config().segment
    assert cfg.run.workdir == str(tmp_path / "runs" / "custom")


def test_base_with_unknown_key_is_config_error():
    base = config_to_dict(load_config(preset="tiny")[0])
    base["segment"]["old_knob"] = 1
    with pytest.raises(ConfigError):
        load_config(base=base)


# --------------------------------------------------------------------------------------------
# identity view


def test_identity_view_drops_execution_knobs():
    cfg, _ = load_config(preset="tiny", workdir="/tmp/somewhere")
    view = identity_view(cfg, ("model", "data", "tokenize", "segment", "run"))
    assert set(view) == {"model", "data", "tokenize", "segment", "run"}
    assert set(view["segment"]) == {"strategy", "c_ent", "n", "sat_model", "eos_in_last_segment", "adaptive_source",
                                     "adaptive_model", "baseline", "delta", "td_alpha"}
    # segment.plan drops the adaptive ones for other strategies, and sat_model unless the strategy is sat
    assert set(view["model"]) == {"path", "revision", "gguf_file", "dtype", "trust_remote_code"}
    assert view["run"] == {"seed": 0}
    assert view["tokenize"] == {"max_len": 512, "max_prompt_len": 384, "template": "auto"}
    assert view["data"] == {
        "path": cfg.data.path, "name": "", "split": "train", "format": "auto", "max_rows": 0, "skip_invalid": False,
    }


def test_identity_view_unchanged_by_knobs_changed_by_identity_fields():
    sections = ("model", "data", "tokenize", "segment", "run")
    base = identity_view(load_config(preset="tiny")[0], sections)
    knobs = load_config(
        preset="tiny",
        overrides=["segment.chunk_size=7", "segment.batch_tokens=99", "segment.shard_rows=3", "model.device=cuda"],
        workdir="/tmp/elsewhere",
    )[0]
    assert identity_view(knobs, sections) == base
    assert identity_view(load_config(preset="tiny", overrides=["segment.n=6"])[0], sections) != base
    assert identity_view(load_config(preset="tiny", overrides=["run.seed=1"])[0], sections) != base


def test_identity_view_only_requested_sections():
    cfg, _ = load_config(preset="tiny")
    assert list(identity_view(cfg, ("segment",))) == ["segment"]


# --------------------------------------------------------------------------------------------
# validation in the schema (__post_init__)


@pytest.mark.parametrize(
    "override, message",
    [
        ("segment.strategy=words", "segment.strategy = 'words' is not known"),
        ("model.dtype=int8", "model.dtype = 'int8' is not supported"),
        ("tokenize.max_len=385", "tokenize.max_len (385) must exceed max_prompt_len (384) by >= 2"),
        ("tokenize.max_prompt_len=0",
         "--set tokenize.max_prompt_len=0: tokenize.max_prompt_len = 0 is out of range: it must be >= 1"),
        ("tokenize.template=chatml", "tokenize.template = 'chatml' is not known"),
        ("data.format=csv", "data.format = 'csv' is not known"),
        ("data.max_rows=-1", "--set data.max_rows=-1: data.max_rows = -1 is out of range: it must be >= 0"),
        ("segment.n=0", "--set segment.n=0: segment.n = 0 is out of range: it must be >= 1"),
        ("segment.chunk_size=0", "--set segment.chunk_size=0: segment.chunk_size = 0 is out of range: it must be >= 1"),
    ],
)
def test_schema_validation(override, message):
    err = config_error(preset="tiny", overrides=[override])
    assert err.message == message
    assert err.hint


def test_max_len_two_above_prompt_is_the_minimum():
    cfg, _ = load_config(preset="tiny", overrides=["tokenize.max_len=386"])
    assert (cfg.tokenize.max_len, cfg.tokenize.max_prompt_len) == (386, 384)


# --------------------------------------------------------------------------------------------
# packaging: the TOML parser must exist on every Python the package claims to support


def test_toml_parser_available_on_declared_python_floor():
    import re

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    floor = tuple(int(x) for x in re.fullmatch(r">=\s*(\d+)\.(\d+).*", project["requires-python"].strip()).groups())
    has_tomli = any(re.match(r"tomli\b", dep) for dep in project["dependencies"])
    assert floor >= (3, 11) or has_tomli, f"requires-python {project['requires-python']!r} but no tomli dependency"


def test_relative_workdir_is_made_absolute_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg, _ = load_config(preset="tiny", overrides=["run.workdir=rel/run"])
    assert cfg.run.workdir == str(tmp_path / "rel" / "run")
    assert load_config(preset="tiny")[0].run.workdir == str(tmp_path / "runs" / "tiny")


def test_every_shipped_preset_loads():
    from segtool.config.loader import available_presets

    names = available_presets()
    assert {"tiny", "smollm2", "paper-phi3", "paper-llama3", "tiny-bandit", "tiny-token"} <= set(names)
    for name in names:
        load_config(preset=name)


def test_extends_chain_relative_path_and_cycle(tmp_path):
    (tmp_path / "base.toml").write_text('extends = "tiny"\n[segment]\nc_ent = 3.0\nn = 7\n')
    (tmp_path / "child.toml").write_text('extends = "base.toml"\n[segment]\nn = 9\n')
    cfg, _ = load_config(config_file=tmp_path / "child.toml")
    assert (cfg.segment.c_ent, cfg.segment.n, cfg.segment.strategy) == (3.0, 9, "entropy")
    assert cfg.model.path.endswith("data/models/tinystories-656k")  # tiny's own relative path still resolves
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n')
    with pytest.raises(ConfigError, match="cycle"):
        load_config(config_file=tmp_path / "a.toml")
    (tmp_path / "bad.toml").write_text("extends = 3\n")
    with pytest.raises(ConfigError, match="extends must be"):
        load_config(config_file=tmp_path / "bad.toml")


@pytest.mark.parametrize("url", ["https://user:sk-SECRET123@judge.example/v1", "https://judge.example/v1?api_key=sk-SECRET123",
                                 "http://localhost:8000/v1?token=sk-SECRET123"])
def test_a_judge_url_with_a_credential_is_refused_without_repeating_it(url):
    # configs are written to manifest.json: a key inside the URL would land there
    with pytest.raises(ConfigError) as exc:
        load_config(preset="tiny", overrides=[f"eval.base_url={url!r}"])
    assert "credential" in exc.value.message
    assert "SECRET" not in exc.value.message + (exc.value.hint or "")


def test_a_judge_url_without_credentials_is_kept():
    cfg, _ = load_config(preset="tiny", overrides=["eval.base_url='https://judge.example/v1?api-version=2024-06-01'"])
    assert cfg.eval.base_url == "https://judge.example/v1?api-version=2024-06-01"
