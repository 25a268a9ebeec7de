"""The one knob that picks how a stage samples (``ppo.generator``, ``rs.generator``, ``eval.generator``):
``hf`` (transformers generate, ``models.generation``) or ``vllm`` (``models.vllm_engine``)."""

from __future__ import annotations

from segtool import distributed
from segtool.errors import ConfigError
from segtool.models.generation import HFGenerator
from segtool.models.vllm_engine import VLLMGenerator


def make_generator(name: str, model, *, max_model_len: int, max_batch: int, seed: int, knob: str, dtype=None):
    """A generator sampling from ``model``'s current weights. For vllm: ``max_model_len`` covers the
    longest prompt + max_new_tokens of the stage, ``max_batch`` sequences run at once, and ``dtype``
    (default: the weights') is what the engine computes in, the stage's autocast dtype."""
    if name == "hf":
        return HFGenerator(model)
    if distributed.launched():
        raise ConfigError(f"{knob} = \"vllm\" runs in one process, not under a data-parallel launcher "
                          f"(WORLD_SIZE={distributed.world()})", f"set {knob} = \"hf\" or run without the launcher")
    return VLLMGenerator(model, max_model_len=max_model_len, max_batch=max_batch, seed=seed, knob=knob, dtype=dtype)
