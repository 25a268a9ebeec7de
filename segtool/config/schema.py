"""One frozen dataclass per config section. Each field documents itself once, here.

Fields marked ``identity=False`` are execution knobs (devices, batch sizes, chunking): they change
how fast a stage runs, not what it produces, so they are left out of an artifact's identity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from segtool.core.boundaries import STRATEGIES
from segtool.errors import ConfigError


def knob(default, help: str, identity: bool = True):
    return field(default=default, metadata={"help": help, "identity": identity})


@dataclass(frozen=True)
class ModelConfig:
    path: str = knob("", "local model directory, Hugging Face hub id, or .gguf file (pi_SFT)")
    revision: str = knob("main", "hub revision (branch, tag or commit); ignored for local paths")
    gguf_file: str = knob("", "GGUF file name inside `path` (or give the .gguf file as `path`)")
    dtype: str = knob("float32", "weights/compute dtype: float32, bfloat16 or float16")
    device: str = knob("auto", "cpu, cuda, cuda:N, or auto (cuda when available)", identity=False)
    trust_remote_code: bool = knob(False, "allow custom modelling code from the hub")

    def __post_init__(self):
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(
                f"model.dtype = {self.dtype!r} is not supported",
                "use float32, bfloat16 or float16",
            )


@dataclass(frozen=True)
class DataConfig:
    path: str = knob("", "preference data: .jsonl, .jsonl.gz, .parquet, or a Hugging Face dataset name")
    name: str = knob("", "Hugging Face dataset config name (hub datasets only)")
    split: str = knob("train", "dataset split (hub datasets only)")
    format: str = knob("auto", "row format: auto, pairs (prompt/chosen/rejected) or hh (HH-RLHF transcripts)")
    max_rows: int = knob(0, "use only the first N rows (0 = all)")
    skip_invalid: bool = knob(False, "skip and count invalid rows instead of failing on the first one")

    def __post_init__(self):
        if self.format not in ("auto", "pairs", "hh"):
            raise ConfigError(f"data.format = {self.format!r} is not known", "use auto, pairs or hh")
        if self.max_rows < 0:
            raise ConfigError("data.max_rows must be >= 0", "use 0 for all rows")


@dataclass(frozen=True)
class TokenizeConfig:
    max_len: int = knob(2048, "max prompt + response tokens (METHOD §1)")
    max_prompt_len: int = knob(1728, "max prompt tokens; longer prompts keep their right end")
    template: str = knob("auto", "auto (chat template when the tokenizer has one, else plain) or plain")

    def __post_init__(self):
        if self.template not in ("auto", "plain"):
            raise ConfigError(f"tokenize.template = {self.template!r} is not known", "use auto or plain")
        if self.max_prompt_len < 1 or self.max_len - self.max_prompt_len < 2:
            raise ConfigError(
                f"tokenize.max_len ({self.max_len}) must exceed max_prompt_len ({self.max_prompt_len}) by >= 2",
                "every response keeps at least one token plus its EOS; raise max_len or lower max_prompt_len",
            )


@dataclass(frozen=True)
class SegmentConfig:
    strategy: str = knob("entropy", "entropy, token, bandit, ngram or punct (METHOD §2)")
    c_ent: float = knob(1.75, "entropy cutoff: position j ends a segment iff H_j > c_ent (paper: 1.75 Phi-3, 2.0 Llama-3)")
    n: int = knob(5, "segment length in tokens for the ngram strategy")
    eos_in_last_segment: bool = knob(False, "end the last segment at EOS instead of the token before it")
    chunk_size: int = knob(256, "positions per LM-head chunk in the entropy computation", identity=False)
    batch_tokens: int = knob(16384, "padded tokens per forward batch (length-sorted batches)", identity=False)
    shard_rows: int = knob(1024, "input rows per output shard (the unit of --resume)", identity=False)

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"segment.strategy = {self.strategy!r} is not known", f"use one of: {', '.join(STRATEGIES)}"
            )
        if self.n < 1:
            raise ConfigError(f"segment.n = {self.n} must be >= 1", "ngram segments need at least one token")
        if self.chunk_size < 1 or self.batch_tokens < 1 or self.shard_rows < 1:
            raise ConfigError(
                "segment.chunk_size, batch_tokens and shard_rows must be >= 1", "use positive integers"
            )


@dataclass(frozen=True)
class RunConfig:
    workdir: str = knob("", "run directory (default: runs/<preset name>)", identity=False)
    seed: int = knob(0, "random seed for every stage")


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration: one section per table in a preset file."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tokenize: TokenizeConfig = field(default_factory=TokenizeConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    run: RunConfig = field(default_factory=RunConfig)
