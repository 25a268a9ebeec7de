"""Load pi_SFT and its tokenizer from a local folder, a Hugging Face hub id, or a GGUF file.

Hub ids use the real ``from_pretrained`` download path (not exercised offline); GGUF files are
dequantised by transformers (needs the ``gguf`` extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from segtool.artifacts.fingerprint import fingerprint_path
from segtool.config.schema import ModelConfig
from segtool.errors import ConfigError, InputError
from segtool.paths import looks_local

DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


@dataclass(frozen=True)
class ModelSource:
    kind: str  # "local", "gguf" or "hub"
    location: str  # folder, or hub id
    gguf_file: str = ""
    revision: str = "main"

    def fingerprint(self) -> dict:
        """Content identity: file hashes for local models, id + revision for hub models."""
        if self.kind == "hub":
            return {"kind": "hub", "id": self.location, "revision": self.revision}
        if self.kind == "gguf":
            return {"kind": "gguf", "sha256": fingerprint_path(Path(self.location) / self.gguf_file)}
        return {"kind": "local", "sha256": fingerprint_path(self.location)}

    def pretrained_kwargs(self, cfg: ModelConfig) -> dict:
        kwargs = {"trust_remote_code": cfg.trust_remote_code}
        if self.kind == "hub":
            kwargs["revision"] = self.revision
        if self.gguf_file:
            kwargs["gguf_file"] = self.gguf_file
        return kwargs


def resolve_model_source(cfg: ModelConfig) -> ModelSource:
    if not cfg.path:
        raise ConfigError("no model given", "set model.path in the preset or pass --set model.path=DIR")
    path = Path(cfg.path).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise ConfigError(f"model path {cfg.path} is a file but not a .gguf file", "give a model folder, a hub id, or a .gguf file")
        return ModelSource("gguf", str(path.parent), path.name)
    if path.is_dir():
        if cfg.gguf_file:
            if not (path / cfg.gguf_file).is_file():
                raise ConfigError(f"{path / cfg.gguf_file} not found", "check model.gguf_file")
            return ModelSource("gguf", str(path), cfg.gguf_file)
        if not (path / "config.json").is_file():
            raise ConfigError(f"model folder {path} has no config.json", "point model.path at a Hugging Face model folder")
        return ModelSource("local", str(path))
    if looks_local(cfg.path, (".gguf",)):  # of the local suffixes, only a GGUF file can be a model
        raise ConfigError(f"model path {cfg.path} not found", "check model.path (relative paths in a preset are relative to the preset file)")
    return ModelSource("hub", cfg.path, cfg.gguf_file, cfg.revision)


def pick_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"model.device = {name!r} but no CUDA device is available", "use model.device=cpu or auto")
    return name


def quiet_transformers() -> None:
    """Our own progress bar is on stderr; transformers' per-load bars only add noise."""
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def load_tokenizer(source: ModelSource, cfg: ModelConfig):
    quiet_transformers()
    try:
        return AutoTokenizer.from_pretrained(source.location, **source.pretrained_kwargs(cfg))
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot load the tokenizer from {source.location}: {err}", "check model.path") from None


def pad_id_of(tokenizer) -> int:
    """The id batches are padded with: the tokenizer's pad token, else its EOS (padding is masked)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def check_weight_files(folder: str | Path) -> None:
    """Raise an InputError naming the first truncated or damaged .safetensors file in ``folder``."""
    for path in sorted(Path(folder).glob("*.safetensors")):
        try:
            with safe_open(str(path), "pt"):
                pass
        except SafetensorError as err:
            raise InputError(f"{path} is truncated or damaged ({err})",
                             "copy or download the model folder again (its sizes must match the original)") from None


def load_causal_lm(source: ModelSource, cfg: ModelConfig, device: str):
    """The model in eval mode on ``device`` with ``cfg.dtype`` weights."""
    quiet_transformers()
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source.location, dtype=getattr(torch, DTYPES[cfg.dtype]), **source.pretrained_kwargs(cfg)
        )
    except (OSError, ValueError, SafetensorError) as err:
        if source.kind == "local":
            check_weight_files(source.location)  # name the damaged file when that is the cause
        raise ConfigError(f"cannot load a causal LM from {source.location}: {err}", "check model.path") from None
    return model.to(device).eval()
