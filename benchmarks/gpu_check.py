r"""The GPU check: correctness of the device code paths on CUDA, then bf16 train-rm and a short PPO, with
tokens/s, model FLOP/s as a share of the GPU's measured bf16 matmul rate, and peak GPU memory.

Made for a single-GPU machine that has CUDA torch, transformers, pyarrow, typer, rich, safetensors and
scikit-learn but no package registry and no model weights: every model is built here, randomly
initialised, from a config (SmolLM2-135M's architecture and a ~1.2B Llama), with the repo's own
TinyStories tokenizer (token ids < 2,048 fit any vocabulary). Random weights make the rewards
meaningless; the check measures speed and memory, and that the stages run end to end on the device.
Run it through `benchmarks/gpu_check.sh` (which sets up paths and a time limit):

    bash benchmarks/gpu_check.sh                 # on the GPU machine, from the repo root (~5 min)
    python benchmarks/gpu_check.py --device cpu --quick   # the same flow on a CPU, tiny sizes (a dry run)

Steps (each prints one line; a failing step prints its error and the script goes on, exit 1 at the end):
1. the device: name, torch/transformers versions, the best of several 8192^3 bf16 matmuls (TFLOP/s);
2. packed = padded on the device: reward-model scores and gradients, and pi_SFT's entropies, through
   the same functions the stages use (float32, per-sequence attention on packed rows);
3. `segtool segment` + `segtool train-rm` (bf16 autocast, float32 weights, packing auto) on the bundled
   HH pairs for SmolLM2-135M's architecture and the ~1.2B Llama: train-rm tokens/s (non-pad, its own
   metrics), model FLOP/s = 6 x non-embedding parameters x tokens/s as a share of the matmul rate, peak
   GPU memory (torch.cuda.max_memory_allocated of the stage, run in this process);
4. `segtool ppo` (bandit rewards, 2 iterations) on the SmolLM2 architecture: episodes/s, new tokens/s and
   peak memory.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
TOKENIZER = REPO / "data" / "models" / "tinystories-656k"
DATA = REPO / "data" / "prefs" / "hh-helpful-tiny.jsonl.gz"

ARCHS = {  # LlamaConfig keys; SmolLM2-135M's published architecture and a ~1.2B Llama
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192, rope_theta=100000.0,
                         rms_norm_eps=1e-5, tie_word_embeddings=True),
    "llama-1.2b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                       num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0,
                       rms_norm_eps=1e-5, tie_word_embeddings=True),
    "tiny-test": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=4096, max_position_embeddings=2048, tie_word_embeddings=True),
}

FAILURES: list[str] = []


def step(name: str):
    """Run a check, print its line; a failure is printed and counted, and the script goes on."""
    def wrap(fn):
        def run(*args, **kw):
            t0 = time.perf_counter()
            try:
                out = fn(*args, **kw)
                print(f"[ok]   {name} ({time.perf_counter() - t0:.0f} s)", flush=True)
                return out
            except Exception as err:  # noqa: BLE001 - report every failing step, then go on
                FAILURES.append(name)
                print(f"[FAIL] {name}: {type(err).__name__}: {err}", flush=True)
                traceback.print_exc(limit=4)
                return None
        return run
    return wrap


def matmul_tflops(device: str, n: int) -> float:
    a = torch.randn(n, n, dtype=torch.bfloat16, device=device)
    b = torch.randn(n, n, dtype=torch.bfloat16, device=device)
    best = float("inf")
    for i in range(8):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        if i >= 2:  # warm-up
            best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e12


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def build_model(arch: str, folder: Path) -> Path:
    """A randomly initialised Llama of ``arch`` saved with the repo's tokenizer (no weights needed)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(**ARCHS[arch], bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder, safe_serialization=True)
    AutoTokenizer.from_pretrained(TOKENIZER).save_pretrained(folder)
    return folder


def non_embedding_params(arch: str) -> int:
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**ARCHS[arch]))
    return sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n and "lm_head" not in n)


def segtool(args: list[str], device: str) -> dict:
    """One segtool command in this process (so its peak GPU memory is readable); its --json result.
    segtool writes its JSON to file descriptor 1 (console.own_stdout), so that is what is captured."""
    import os

    from segtool.cli.app import app

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryFile(mode="w+") as captured:
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(captured.fileno(), 1)
        try:
            app(args + ["--json"], standalone_mode=False)
        except SystemExit as exit_:
            if exit_.code:
                raise RuntimeError(f"segtool {' '.join(args)} exited {exit_.code}") from None
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        captured.seek(0)
        text = captured.read()
    if "{" not in text:
        raise RuntimeError(f"segtool {' '.join(args)} printed no JSON result: {text[-300:]!r}")
    result, _ = json.JSONDecoder().raw_decode(text[text.index("{"):])
    result["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None  # CUDA only
    return result


def peak_text(result: dict) -> str:
    return "n/a (CPU)" if result["peak_gib"] is None else f"{result['peak_gib']:.1f} GiB"


def base_sets(model: Path, device: str, rows: int) -> list[str]:
    sets = {"model.path": f'"{model}"', "model.dtype": '"float32"', "model.device": f'"{device}"',
            "data.path": f'"{DATA}"', "data.max_rows": str(rows), "tokenize.max_len": "1024",
            "tokenize.max_prompt_len": "768"}
    return [x for key, value in sets.items() for x in ("--set", f"{key}={value}")]


@step("packed = padded on the device (reward-model scores and gradients, entropies)")
def check_packing(device: str, arch: str) -> None:
    import numpy as np
    from transformers import LlamaConfig, LlamaForCausalLM

    from segtool.config.schema import Config
    from segtool.core.rewards import bradley_terry
    from segtool.models.reward import build_from_causal_lm
    from segtool.models.rm_batches import Example, collate, sequence_scores
    from segtool.models.segmentation import Sequence, compute_entropies
    from segtool.models.varlen import enable_varlen

    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(**ARCHS[arch])).to(device)
    rng = np.random.default_rng(0)
    examples = []
    for n_prompt, n_resp in ((120, 90), (40, 300), (200, 33), (17, 150)):
        ends = np.unique(np.r_[rng.integers(0, n_resp, 6), n_resp - 1])
        examples.append(Example(rng.integers(3, 2000, n_prompt), rng.integers(3, 2000, n_resp), ends))

    def scores_and_grads(rm, width):
        rm.zero_grad(set_to_none=True)
        e = sequence_scores(rm, collate(examples, 0, width), "end", "avg", device)
        bradley_terry(e[:2], e[2:], 0.0)[0].backward()
        return e.detach(), torch.cat([p.grad.flatten() for p in rm.parameters() if p.grad is not None])

    rm = build_from_causal_lm(lm, 0, attention=False, seed=0).train()
    padded = scores_and_grads(rm, 0)
    assert enable_varlen(rm.backbone), "the reward model is not on SDPA"
    packed = scores_and_grads(rm, 1024)
    for what, a, b in (("scores", padded[0], packed[0]), ("gradients", padded[1], packed[1])):
        rel = float((a - b).norm() / b.norm().clamp_min(1e-12))
        print(f"       reward model {what}: relative difference packed vs padded {rel:.2e}")
        assert rel < 1e-3, f"reward-model {what} differ packed vs padded ({rel:.2e})"
    seqs = [Sequence(k, "chosen", ex.prompt.tolist(), ex.response.tolist()) for k, ex in enumerate(examples)]
    ent_padded = np.concatenate(compute_entropies(lm.eval(), seqs, Config(), device))
    enable_varlen(lm.model)
    ent_packed = np.concatenate(compute_entropies(lm, seqs, Config(), device, pack_width=1024))
    diff = float(np.abs(ent_packed - ent_padded).max())
    print(f"       entropies: max abs difference packed vs padded {diff:.2e} nats")
    assert diff < 1e-3, f"entropies differ packed vs padded ({diff:.2e})"


@step("segment + train-rm (bf16 autocast, packing auto)")
def check_train_rm(arch: str, model: Path, work: Path, device: str, rows: int, steps: int, peak: float) -> dict:
    sets = base_sets(model, device, rows) + [
        "--set", "segment.strategy=\"entropy\"", "--set", "segment.c_ent=3.75", "--set", "train_rm.bf16=\"true\"",
        "--set", "train_rm.global_batch=16", "--set", "train_rm.micro_batch=16", "--set", f"train_rm.max_steps={steps}",
        "--set", "train_rm.optim.lr=1e-5", "--set", "train_rm.eval_fraction=0.05"]
    segtool(["segment", "--preset", "smollm2", "--workdir", str(work), *sets], device)
    result = segtool(["train-rm", "--preset", "smollm2", "--workdir", str(work), *sets], device)
    tok_s = result["metrics"]["tokens_per_s"]
    mfu = 6 * non_embedding_params(arch) * tok_s / (peak * 1e12)
    row = {"stage": "train-rm", "model": arch, "tokens_per_s": tok_s, "mfu": mfu, "peak_gib": result["peak_gib"]}
    print(f"       {arch}: train-rm {tok_s:,.0f} tokens/s, {mfu:.1%} of the bf16 matmul rate, peak {peak_text(result)}")
    return row


@step("ppo (bandit rewards, 2 iterations)")
def check_ppo(arch: str, model: Path, work: Path, device: str, rows: int, peak: float) -> dict:
    sets = base_sets(model, device, rows) + [
        "--set", "segment.strategy=\"bandit\"", "--set", "train_rm.aggregation=\"last\"", "--set", "train_rm.max_steps=2",
        "--set", "train_rm.global_batch=16", "--set", "train_rm.micro_batch=16",
        "--set", "ppo.reward_mode=\"bandit\"", "--set", "ppo.iterations=2", "--set", "ppo.rollout_batch=64",
        "--set", "ppo.train_batch=32", "--set", "ppo.micro_batch=16", "--set", "ppo.forward_batch=64",
        "--set", "ppo.generate_batch=64", "--set", "ppo.sampling.max_new_tokens=128", "--set", "ppo.eval_prompts=16",
        "--set", "ppo.bf16=\"true\""]
    result = segtool(["ppo", "--preset", "smollm2", "--workdir", str(work), *sets], device)
    m = result["metrics"]
    row = {"stage": "ppo", "model": arch, "episodes_per_s": m["episodes_per_s"], "peak_gib": result["peak_gib"],
           "new_tokens_per_s": m["tokens_per_s"]}  # PPO's tokens_per_s: new tokens per second of generation
    print(f"       {arch}: ppo {row['episodes_per_s']} episodes/s, {row['new_tokens_per_s']} new tokens/s, "
          f"peak {peak_text(result)}")
    return row


def cell(row: dict, key: str, fmt: str) -> str:
    return fmt.format(row[key]) if row.get(key) is not None else ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a dry run of the flow (CPU)")
    ap.add_argument("--work", default="", help="where models and run directories go (default: a temp dir)")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device visible to torch", file=sys.stderr)
        return 1
    import transformers

    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    peak = matmul_tflops(args.device, 1024 if args.quick else 8192)
    print(f"device {name}; torch {torch.__version__}; transformers {transformers.__version__}; "
          f"bf16 matmul {peak:.1f} TFLOP/s (best of 6, {1024 if args.quick else 8192}^3)", flush=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="segtool-gpu-check-"))
    archs = ["tiny-test"] if args.quick else ["smollm2-135m", "llama-1.2b"]
    check_packing(args.device, archs[0])
    rows = []
    for arch in archs:
        model = build_model(arch, work / "models" / arch)
        steps = 3 if args.quick else 12
        rows.append(check_train_rm(arch, model, work / f"rm-{arch}", args.device, 64 if args.quick else 512, steps, peak))
    rows.append(check_ppo(archs[0], work / "models" / archs[0], work / "ppo", args.device, 96 if args.quick else 256, peak))
    print("\n| stage | model | tokens/s | share of bf16 matmul | episodes/s | new tokens/s | peak GPU memory |")
    print("|---|---|---|---|---|---|---|")
    for r in filter(None, rows):
        cells = [cell(r, "tokens_per_s", "{:,.0f}"), cell(r, "mfu", "{:.1%}"), cell(r, "episodes_per_s", "{:.2f}"),
                 cell(r, "new_tokens_per_s", "{:,.0f}"), cell(r, "peak_gib", "{:.1f} GiB")]
        print(f"| {r['stage']} | {r['model']} | {' | '.join(cells)} |")
    if FAILURES:
        print(f"\n{len(FAILURES)} step(s) failed: {', '.join(FAILURES)}")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
