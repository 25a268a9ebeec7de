"""Compiled decoder layers (models.compiling): a packed training pass under gradient checkpointing
gives eager's values and gradients, traces whole (no graph break: per-sequence attention is a custom
operator) and does not recompile for a new packed layout; passes without gradients stay eager."""

import copy
from pathlib import Path

import pytest
import torch

from segtool.errors import ConfigError
from segtool.models import compiling
from segtool.models.compiling import compile_for_training, decoder_layers
from segtool.models.packing import backbone_hidden, plan_packing
from segtool.models.varlen import enable_varlen
from segtool.training.loading import enable_gradient_checkpointing

TINY = Path(__file__).resolve().parents[2] / "data" / "models" / "tinystories-656k"


def tiny():
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(TINY, dtype=torch.float32)
    assert enable_varlen(m.model)
    return m


def packed_batch(seed: int, lengths: list[int]):
    gen = torch.Generator().manual_seed(seed)
    lens = torch.tensor(lengths)
    ids = torch.randint(3, 2048, (len(lengths), max(lengths)), generator=gen)
    return ids, plan_packing(ids, lens, 64, 0), lens


def loss_and_grads(model, ids, plan, lens):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = backbone_hidden(model.model, ids, None, plan)
        loss = hidden[torch.arange(len(lens)), lens - 1].float().pow(2).mean()
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def test_compiled_layers_match_eager_without_graph_breaks_or_recompiles():
    from torch._dynamo.utils import counters

    if not compiling.has_cxx_compiler():
        pytest.fail("no C++ compiler on this machine: torch.compile cannot build CPU code (install g++)")
    eager = tiny()
    enable_gradient_checkpointing(eager)
    eager.train()
    compiled = copy.deepcopy(eager)
    torch._dynamo.reset()
    counters.clear()
    assert compile_for_training({"policy": compiled}, "on", "cpu", "ppo.compile") == ""
    assert len(decoder_layers(compiled)) == compiled.config.num_hidden_layers
    for seed, lengths in ((0, [20, 7, 13, 30]), (1, [9, 25, 31, 4, 16])):  # two packed layouts
        batch = packed_batch(seed, lengths)
        want, got = loss_and_grads(eager, *batch), loss_and_grads(compiled, *batch)
        torch.testing.assert_close(got[0], want[0], rtol=2e-2, atol=1e-3)
        for g, w in zip(got[1], want[1], strict=True):
            torch.testing.assert_close(g, w, rtol=5e-2, atol=5e-3)
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] == 1  # one graph for both layers and both layouts
    with torch.no_grad():  # scoring and generation: eager, nothing new compiled
        compiled.model(input_ids=batch[0], use_cache=False)
        compiled.generate(batch[0][:1, :5], max_new_tokens=3, do_sample=False)
    assert counters["stats"]["unique_graphs"] == 1


def test_auto_leaves_small_models_and_gpus_eager_and_on_needs_a_compiler(monkeypatch):
    m = tiny()
    assert sum(p.numel() for p in m.parameters()) < compiling.AUTO_MIN_PARAMS
    assert compile_for_training({"policy": m}, "auto", "cpu", "ppo.compile") == ""
    assert all(layer._compiled_call_impl is None for layer in decoder_layers(m))
    monkeypatch.setattr(compiling, "AUTO_MIN_PARAMS", 1)
    assert compile_for_training({"policy": m}, "auto", "cuda", "ppo.compile") == ""
    assert all(layer._compiled_call_impl is None for layer in decoder_layers(m))
    monkeypatch.setattr(compiling, "has_cxx_compiler", lambda: False)
    note = compile_for_training({"policy": m}, "auto", "cpu", "train_rm.compile")
    assert "C++ compiler" in note and "train_rm.compile" in note
    with pytest.raises(ConfigError) as err:
        compile_for_training({"policy": m}, "on", "cpu", "train_rm.compile")
    assert "train_rm.compile" in err.value.hint
    assert all(layer._compiled_call_impl is None for layer in decoder_layers(m))
