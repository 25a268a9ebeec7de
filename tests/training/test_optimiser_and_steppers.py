"""The optimiser builder and the local stepper (the DeepSpeed stepper is exercised by the
data-parallel stage tests)."""

import contextlib
import math

import pytest
import torch

from segtool.config.schema import OptimConfig
from segtool.core.schedule import warmup_cosine
from segtool.models.precision import make_autocast, no_autocast
from segtool.training.optim import build_optimiser
from segtool.training.steppers import LocalStepper

SETTINGS = OptimConfig(lr=1.0, min_lr_ratio=0.1, warmup_ratio=0.25, adam_beta1=0.8, adam_beta2=0.9, weight_decay=0.01,
                       grad_clip=0.0)


def test_adamw_with_warmup_then_cosine():
    model = torch.nn.Linear(2, 1)
    opt, sched = build_optimiser(model, SETTINGS, total_steps=8)
    assert opt.param_groups[0]["betas"] == (0.8, 0.9) and opt.param_groups[0]["weight_decay"] == 0.01
    assert opt.defaults["fused"] is True  # CPU parameters: torch's fused kernel
    assert build_optimiser(model, SETTINGS, total_steps=8, fused=False)[0].defaults["fused"] is None
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([warmup_cosine(s, 8, 0.25, 0.1) for s in range(8)])
    assert lrs[0] == 0.5 and lrs[-1] == pytest.approx(0.1)  # warm-up of ceil(0.25 * 8) = 2 steps; floor 0.1


def test_weighted_micro_batches_give_the_whole_batch_gradient():
    torch.manual_seed(0)
    x, y = torch.randn(6, 3), torch.randn(6, 1)
    grads = []
    for split in ((6,), (2, 4)):
        torch.manual_seed(1)
        model = torch.nn.Linear(3, 1)
        stepper = LocalStepper(model, *build_optimiser(model, SETTINGS, 4), grad_clip=0.0)
        for xs, ys in zip(x.split(split), y.split(split)):
            stepper.backward((model(xs) - ys).pow(2).mean(), len(xs) / len(x))
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
        norm = stepper.step()
        assert math.isclose(norm, float(grads[-1].norm()), rel_tol=1e-6) and model.weight.grad is None
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_autocast_off_is_a_no_op_and_auto_on_cpu_is_bf16():
    assert make_autocast("false", "cpu", "x.bf16") is no_autocast
    assert isinstance(no_autocast(), contextlib.nullcontext)
    with make_autocast("auto", "cpu", "x.bf16")():
        assert torch.is_autocast_enabled("cpu")
