import re
import tomllib
from pathlib import Path

import pytest

from segtool.config.schema import ModelConfig
from segtool.errors import ConfigError
from segtool.models.loading import load_causal_lm, load_tokenizer, resolve_model_source

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "data" / "models" / "tinystories-656k"


def test_local_folder_loads_with_dtype(monkeypatch, tmp_path):
    import torch

    monkeypatch.setenv("SEGTOOL_CACHE", str(tmp_path))
    cfg = ModelConfig(path=str(TINY), dtype="bfloat16")
    src = resolve_model_source(cfg)
    assert src.kind == "local" and src.fingerprint()["kind"] == "local"
    model = load_causal_lm(src, cfg, "cpu")
    assert next(model.parameters()).dtype == torch.bfloat16 and not model.training
    assert load_tokenizer(src, cfg).eos_token_id == 2


def test_hub_id_is_kept_as_hub_source_with_revision():
    src = resolve_model_source(ModelConfig(path="HuggingFaceTB/SmolLM2-135M-Instruct", revision="abc123"))
    assert (src.kind, src.location, src.revision) == ("hub", "HuggingFaceTB/SmolLM2-135M-Instruct", "abc123")
    assert src.fingerprint() == {"kind": "hub", "id": "HuggingFaceTB/SmolLM2-135M-Instruct", "revision": "abc123"}
    assert src.pretrained_kwargs(ModelConfig(path="x", revision="abc123"))["revision"] == "abc123"


def test_gguf_file_and_folder_forms(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGTOOL_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "m" / "model.Q4.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF fake")
    a = resolve_model_source(ModelConfig(path=str(gguf)))
    b = resolve_model_source(ModelConfig(path=str(gguf.parent), gguf_file="model.Q4.gguf"))
    assert a == b and a.kind == "gguf"
    assert a.pretrained_kwargs(ModelConfig(path="x"))["gguf_file"] == "model.Q4.gguf"
    assert a.fingerprint()["sha256"] == __import__("hashlib").sha256(b"GGUF fake").hexdigest()


@pytest.mark.parametrize(
    "path,message",
    [
        ("", "no model given"),
        ("./missing/model", "not found"),
        ("/nowhere/at/all", "not found"),
        ("missing.gguf", "not found"),
    ],
)
def test_bad_model_paths(path, message):
    with pytest.raises(ConfigError, match=message):
        resolve_model_source(ModelConfig(path=path))


def test_folder_without_config_and_non_gguf_file(tmp_path):
    with pytest.raises(ConfigError, match="no config.json"):
        resolve_model_source(ModelConfig(path=str(tmp_path)))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ConfigError, match="not a .gguf"):
        resolve_model_source(ModelConfig(path=str(tmp_path / "weights.bin")))


@pytest.mark.parametrize("keep", [1000, 2_000_000], ids=["header-cut", "tensors-cut"])
def test_truncated_safetensors_is_named(tmp_path, keep):
    import shutil

    from segtool.errors import InputError
    from segtool.models.reward import METADATA, load_reward_model

    folder = tmp_path / "model"
    shutil.copytree(TINY, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:keep])
    (folder / METADATA).write_text("{}")
    source = resolve_model_source(ModelConfig(path=str(folder)))
    loaders = [lambda: load_causal_lm(source, ModelConfig(path=str(folder)), "cpu"), lambda: load_reward_model(folder)]
    for load in loaders:  # pi_SFT (model.path) and a reward model folder (--rm)
        with pytest.raises(InputError) as exc:
            load()
        assert exc.value.message.startswith(f"{weights} is truncated or damaged (")
        assert "copy or download" in exc.value.hint


def test_gguf_extra_installs_what_transformers_needs_to_load_a_gguf_file():
    # from_pretrained(..., gguf_file=...) reads the file with `gguf` and refuses to run without `accelerate`
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gguf"]
    names = {re.match(r"[A-Za-z0-9_.-]+", dep).group(0).lower() for dep in extra}
    assert {"gguf", "accelerate"} <= names, extra
