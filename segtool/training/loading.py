"""The models a training stage trains: float32 weights (bf16 is autocast only, since small updates
vanish in bf16 weights), and the frozen reference beside them."""

from __future__ import annotations

import dataclasses

from segtool.config.schema import Config, ModelConfig
from segtool.console import STDERR
from segtool.models.compiling import compile_for_training
from segtool.models.loading import load_causal_lm, load_tokenizer, resolve_model_source


def load_trainable(source, model_cfg: ModelConfig, device: str):
    """The causal LM of ``source`` with float32 weights, whatever ``model_cfg.dtype`` says."""
    return load_causal_lm(source, dataclasses.replace(model_cfg, dtype="float32"), device)


def load_policy_and_reference(cfg: Config, device: str):
    """(pi_SFT to train, float32; frozen pi_SFT reference in model.dtype; tokenizer; model source)."""
    source = resolve_model_source(cfg.model)
    tokenizer = load_tokenizer(source, cfg.model)
    ref = load_causal_lm(source, cfg.model, device)
    policy = load_trainable(source, cfg.model, device)
    for p in ref.parameters():
        p.requires_grad_(False)
    return policy, ref, tokenizer, source


def enable_gradient_checkpointing(hf_model) -> None:
    """Activation checkpointing (transformers >= 5 renamed it; older versions have the old name)."""
    if hasattr(hf_model, "activation_checkpointing_enable"):
        hf_model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        hf_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def compile_trainable(models: dict, mode: str, device: str, knob: str) -> None:
    """models.compiling.compile_for_training, its note (auto left the models eager) printed."""
    note = compile_for_training(models, mode, device, knob)
    if note:
        STDERR.print(f"[yellow]note:[/] {note}", highlight=False)
