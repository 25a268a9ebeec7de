"""torch.compile of decoder layers for passes with gradients: the ``compile`` knob of the training stages.

Each decoder layer is compiled on its own (they share one graph, so the first step compiles once, about
15 s for SmolLM2-135M on a 2-core Intel Xeon), with dynamic shapes, so packed rows of a new length
do not recompile. Inductor fuses the norms, rotary embedding, activations and autocast casts around the
matmuls; under gradient checkpointing the recomputation is compiled too. Per-sequence attention
(``models.varlen``) is a custom operator, so it sits inside the graph without breaking it.

Only passes with gradients take the compiled layers: generation (KV cache) and scoring under
``torch.no_grad`` stay eager, so a policy that also samples never traces its cache code.

``auto`` compiles on a CPU for models of at least ``AUTO_MIN_PARAMS`` parameters (train-rm,
SmolLM2-135M, 2-core Intel Xeon: 1.35x eager's tokens/s with gradient checkpointing, 1.23x without);
small models, GPUs (not measured there; the CUDA attention path, ``models.varlen._attend_rows``, breaks
the graph) and DeepSpeed runs stay eager.
"""

from __future__ import annotations

import os
import shutil

import torch

from segtool import distributed
from segtool.errors import ConfigError

AUTO_MIN_PARAMS = 50_000_000


def decoder_layers(model) -> list[torch.nn.Module]:
    """The repeated blocks of a transformers model (its ``GradientCheckpointingLayer`` modules)."""
    # lazy: transformers.modeling_layers is newer than the oldest transformers pyproject allows
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]


def has_cxx_compiler() -> bool:
    """Inductor's CPU code is C++: it needs a compiler on the PATH (``CXX`` or g++/clang++)."""
    return any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "clang++", "c++") if c)


def compile_for_training(models: dict, mode: str, device: str, knob: str) -> str:
    """Compile the decoder layers of each of ``models`` (name -> transformers model) for passes with
    gradients, per ``mode`` (auto, on, off); the note to print when auto leaves them eager for a
    reason the user may not expect (no C++ compiler), else ""."""
    if mode == "off":
        return ""
    on_cpu = torch.device(device).type == "cpu"
    if distributed.launched():
        if mode == "on":
            raise ConfigError(f"{knob} = \"on\" is not supported under DeepSpeed", f'set {knob} = "off" or "auto"')
        return ""
    if mode == "auto":
        size = max(sum(p.numel() for p in m.parameters()) for m in models.values())
        if not on_cpu or size < AUTO_MIN_PARAMS:
            return ""
    if on_cpu and not has_cxx_compiler():
        why = "torch.compile needs a C++ compiler (g++ or clang++) for CPU code and none is on the PATH"
        if mode == "on":
            raise ConfigError(why, f'install g++ or set {knob} = "off"')
        return f"{knob}: {why}; training runs eager (install g++, or set {knob} = \"off\" to silence this)"
    layers = {name: decoder_layers(model) for name, model in models.items()}
    for name, found in layers.items():  # all models checked before any is compiled
        if not found:
            what = f"the {name} ({type(models[name]).__name__}) has no transformers decoder layers to compile"
            if mode == "on":
                raise ConfigError(what, f'set {knob} = "off"')
            return f"{knob}: {what}; training runs eager"
    for found in layers.values():
        for layer in found:
            _compile_with_grad(layer)
    return ""


def _compile_with_grad(layer: torch.nn.Module) -> None:
    """``layer``'s calls run compiled when gradients are on, eager otherwise (nn.Module.compile, with the choice)."""
    eager = layer._call_impl
    compiled = torch.compile(eager, dynamic=True)
    layer._compiled_call_impl = lambda *args, **kwargs: (compiled if torch.is_grad_enabled() else eager)(*args, **kwargs)
