#!/usr/bin/env python
"""Throughput and peak memory of entropy segmentation, against a bare forward pass.

For each model, on the SAME batches (identical input_ids built from HH-RLHF
helpful-base test transcripts: a chat prompt, then a long response, EOS, right
padding), three methods are measured:

  (a) forward  model(input_ids, attention_mask) under inference_mode: the
               ordinary forward, logits in the model dtype;
  (b) segtool  segtool.models.entropy.response_entropy (backbone once, LM head
               in chunks over response positions only) + host copy +
               segtool.core.boundaries.entropy_segment_ends;
  (c) naive    full forward, logits.float(), log_softmax over [B, T, V],
               entropy, gather response positions, same boundary search.

Tokens are all non-pad input tokens. Every (model, method) pair runs in its own
subprocess, so that peak memory is honest on CPU: the worker loads the model,
builds the batches, records its RSS, resets the kernel's high-water mark
(/proc/self/clear_refs, so load-time transients do not count), warms up once,
times the batches, and reports peak RSS (getrusage ru_maxrss) minus the RSS
after loading.

A last block puts a randomly initialised, untied 128,256-token LM head on the
SmolLM2 backbone (or the tiny one) and runs one long sequence, to show that
(b)'s extra memory is bounded by chunk x vocab while (c)'s grows as
length x vocab.

Timings on a 2-core machine are fragile: before each measurement the script
waits for other processes to go quiet, records the share of the CPU they took
while it timed ("others CPU"), and re-measures when that share is over 10%.
It also reports minor page faults per batch: on CPU, tensors over 32 MiB are
mmap'd fresh by glibc on every allocation, and faulting them in is a large,
VM-dependent part of the cost. `--entropy-fn FILE.py:FUNC` swaps a candidate
chunked_entropy into (b) for A/B runs without editing segtool.

Examples:
    python benchmarks/segment_throughput.py                  # full run, ~5-10 min on 2 cores
    python benchmarks/segment_throughput.py --quick          # ~1 min smoke run
    python benchmarks/segment_throughput.py --models smollm2 --batches 3 --chunk-size 256
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch/numpy are imported lazily so that --help stays instant
    import numpy as np
    import torch

REPO = Path(__file__).resolve().parent.parent
HH_TEST = REPO / "data/prefs/hh-helpful-tiny.jsonl.gz"  # the bundled HH-RLHF pairs
TINY_DIRS = (REPO / "data/models/tinystories-656k",)
SMOLLM2_DIR = "~/.cache/segtool/smollm2-135m-instruct"
BIG_VOCAB = 128_256  # Llama-3 vocabulary size
METHODS = ("forward", "segtool", "naive")
MB = 1024 * 1024
OTHERS_CPU_OK = 0.10  # a measurement is redone when other processes used more of the machine


# --------------------------------------------------------------------------- arguments


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    p.add_argument("--models", default="tiny,smollm2", help="comma list of tiny, smollm2")
    p.add_argument("--smollm2-dir", default=SMOLLM2_DIR, help="converted SmolLM2 folder (prepare_smollm2.py)")
    p.add_argument(
        "--tiny-dir",
        default=None,
        help="tiny model folder (default: data/models/tinystories-656k)",
    )
    p.add_argument("--data", type=Path, default=HH_TEST, help="HH-RLHF style jsonl(.gz) with a 'chosen' field")
    p.add_argument("--seq-len", type=int, default=512, help="padded row length")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--batches", type=int, default=4, help="distinct timed batches (plus one warm-up)")
    p.add_argument(
        "--min-seconds",
        type=float,
        default=3.0,
        help="keep cycling over the batches until this much time is measured (fast models)",
    )
    p.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", "bfloat16", "float32"),
        help="auto: bfloat16 for SmolLM2 and the 128k row, float32 for the tiny model",
    )
    p.add_argument("--chunk-size", type=int, default=512, help="positions per LM-head chunk for (b) (segment.chunk_size's default)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--c-ent", type=float, default=2.0, help="entropy threshold for the boundary search")
    p.add_argument("--long-seq", type=int, default=2048, help="sequence length of the 128k-vocab row (batch 1)")
    p.add_argument("--long-chunks", default="128,256,512", help="chunk sizes tried in the 128k-vocab row")
    p.add_argument("--no-big-vocab", action="store_true", help="skip the 128k-vocab row")
    p.add_argument(
        "--max-wait",
        type=float,
        default=60.0,
        help="before each measurement wait up to this many s for other processes to go quiet (0: never)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=2,
        help=f"re-measure up to this many times when others used > {OTHERS_CPU_OK * 100:.0f}%% of the CPU",
    )
    p.add_argument(
        "--entropy-fn",
        metavar="FILE.py:FUNC",
        help="A/B a candidate chunked_entropy(hidden, weight, chunk_size, softcap=, bias=) in (b)",
    )
    p.add_argument(
        "--allocator",
        default="segtool",
        choices=("segtool", "default"),
        help="segtool: every worker (all methods alike) first applies segtool.runtime.tune_allocator, the malloc "
        "settings every segtool command runs with; default: glibc's own",
    )
    p.add_argument(
        "--packing",
        default="auto",
        choices=("auto", "off"),
        help="(b): auto runs as `segment` does by default (segment.packing: a batch with at least 10%% padding "
        "packed into rows of segment.pack_width tokens, per-sequence attention, when the probe passes); off: "
        "padded batches",
    )
    p.add_argument(
        "--interleave",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="also time the methods interleaved in one process: ROUNDS passes over the timed batches, each batch "
        "run by every method in turn (rotating which goes first); the ratio of per-batch medians is robust to the "
        "machine's drift between subprocesses, which on a shared 2-core VM can exceed the differences measured",
    )
    p.add_argument("--quick", action="store_true", help="~1 minute smoke run (small batches, fewer runs)")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: JSON spec of one measurement
    args = p.parse_args(argv)
    if args.quick:
        args.seq_len, args.batch_size, args.batches, args.min_seconds = 256, 2, 2, 0.0
        args.long_seq, args.long_chunks = 512, "128,512"
        args.max_wait, args.retries = min(args.max_wait, 5.0), 0
    return args


# --------------------------------------------------------------------------- memory


def rss_bytes() -> int:
    """Current resident set size."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def reset_peak_rss() -> bool:
    """Reset the high-water mark to the current RSS (Linux >= 4.0), so a
    load-time transient cannot hide the method's own peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_busy_seconds() -> float:
    """Machine-wide busy CPU seconds since boot (all cores, from /proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]  # idle + iowait
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def wait_for_quiet(max_wait: float, threshold: float = 0.15) -> float:
    """Wait (at most max_wait s) until other processes use < threshold of the machine for two
    one-second samples in a row. The machine may be shared (tests running next to us), and 2
    cores leave no headroom. Returns the busy fraction of the last sample."""
    deadline, quiet, frac = time.monotonic() + max_wait, 0, 0.0
    while True:
        b0 = cpu_busy_seconds()
        time.sleep(1.0)
        frac = (cpu_busy_seconds() - b0) / (os.cpu_count() or 1)
        quiet = quiet + 1 if frac < threshold else 0
        if quiet >= 2 or time.monotonic() > deadline:
            return frac


# --------------------------------------------------------------------------- data


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, T] long, right padded
    attention_mask: torch.Tensor  # [B, T] long
    response_mask: torch.Tensor  # [B, T] bool, response tokens incl. EOS
    lengths: np.ndarray  # [B] response length incl. EOS
    n_tokens: int  # non-pad tokens


def load_transcripts(path: Path, limit: int = 2000) -> list[tuple[list[dict], str]]:
    """(prompt messages, response) pairs from HH-RLHF 'chosen' transcripts, split at the last Assistant turn."""
    pairs = []
    with gzip.open(path, "rt") if path.suffix == ".gz" else open(path) as f:
        for line in f:
            text = json.loads(line)["chosen"]
            head, sep, response = text.rpartition("\n\nAssistant:")
            if not sep or not response.strip():
                continue
            messages = []
            for turn in head.split("\n\nHuman:")[1:]:
                user, _, assistant = turn.partition("\n\nAssistant:")
                messages.append({"role": "user", "content": user.strip()})
                if assistant.strip():
                    messages.append({"role": "assistant", "content": assistant.strip()})
            if messages:
                pairs.append((messages, response.strip()))
            if len(pairs) >= limit:
                break
    return pairs


def encode_prompt(tokenizer, messages: list[dict]) -> list[int]:
    """Chat template when the tokenizer has one (SmolLM2), else HH's plain transcript form (tiny)."""
    if tokenizer.chat_template:
        return list(
            tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        )
    text = "".join(f"\n\n{'Human' if m['role'] == 'user' else 'Assistant'}: {m['content']}" for m in messages)
    return tokenizer(text + "\n\nAssistant:").input_ids


def build_batches(tokenizer, pairs, n_batches: int, batch_size: int, seq_len: int, seed: int = 0) -> list[Batch]:
    """Deterministic batches: prompt (right end kept, at most seq_len/8 tokens), then a response window
    cut from the stream of all chosen responses, then EOS. Row lengths vary in [0.75, 1] x seq_len,
    the first row of each batch is full, so every batch has shape [batch_size, seq_len]."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    stream = []
    for _, response in pairs:
        stream.extend(tokenizer(response + "\n\n", add_special_tokens=False).input_ids)
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    max_prompt = max(8, seq_len // 8)
    cursor, row_i, batches = 0, 0, []
    for _ in range(n_batches):
        ids = torch.full((batch_size, seq_len), pad, dtype=torch.long)
        attn = torch.zeros_like(ids)
        resp = torch.zeros((batch_size, seq_len), dtype=torch.bool)
        lengths = np.zeros(batch_size, dtype=np.int64)
        for b in range(batch_size):
            prompt = encode_prompt(tokenizer, pairs[row_i % len(pairs)][0])[-max_prompt:]
            row_i += 1
            total = seq_len if b == 0 else int(rng.integers(int(0.75 * seq_len), seq_len + 1))
            n_resp = total - len(prompt)  # includes EOS
            if cursor + n_resp > len(stream):
                cursor = 0
            response = stream[cursor : cursor + n_resp - 1] + [eos]
            cursor += n_resp - 1
            ids[b, :total] = torch.tensor(prompt + response)
            attn[b, :total] = 1
            resp[b, len(prompt) : total] = True
            lengths[b] = n_resp
        batches.append(Batch(ids, attn, resp, lengths, int(attn.sum())))
    return batches


def batches_digest(batches: list[Batch]) -> str:
    """Hash of all input ids and masks, so the parent can check every method saw the same batches."""
    h = hashlib.sha256()
    for b in batches:
        for t in (b.input_ids, b.attention_mask, b.response_mask):
            h.update(t.numpy().tobytes())
    return h.hexdigest()[:12]


# --------------------------------------------------------------------------- models


def resolve_tiny_dir(arg: str | None) -> Path | None:
    candidates = [Path(arg).expanduser()] if arg else list(TINY_DIRS)
    return next((c for c in candidates if (c / "config.json").is_file()), None)


def resolve_dirs(args) -> dict[str, Path | None]:
    smol = Path(args.smollm2_dir).expanduser()
    return {"tiny": resolve_tiny_dir(args.tiny_dir), "smollm2": smol if (smol / "config.json").is_file() else None}


def pick_dtype(name: str, model_kind: str) -> str:
    if name != "auto":
        return name
    return "float32" if model_kind == "tiny" else "bfloat16"


def load_model(path: str, dtype_name: str, big_vocab: int = 0):
    """Model + tokenizer, eval mode. With big_vocab, replace the (tied) head by a seeded random
    untied nn.Linear(hidden, big_vocab): only the head's size matters for this benchmark."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = getattr(torch, dtype_name)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    if big_vocab:
        torch.manual_seed(0)
        head = torch.nn.Linear(model.config.hidden_size, big_vocab, bias=False)
        torch.nn.init.normal_(head.weight, std=model.config.initializer_range)
        model.config.tie_word_embeddings = False  # so nothing re-ties it to the input embedding
        model.set_output_embeddings(head.to(dtype))
        model.config.vocab_size = big_vocab
    page_in(model)
    return model, tokenizer


def page_in(model) -> None:
    """Read every weight once. When the requested dtype matches the file, transformers keeps the
    safetensors mmap: weights become resident only when first used, and without this the first
    forward would be charged ~270 MB (SmolLM2 bf16) of "peak memory" that is really the model."""
    import torch

    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            t.float().sum() if t.is_floating_point() else t.sum()


# --------------------------------------------------------------------------- methods


def run_forward(model, batch: Batch, spec: dict):
    # use_cache=False: (b) runs the backbone without a KV cache; building one here would charge
    # (a) for memory and time no segmentation pass needs.
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
    del out
    return None, None


def run_segtool(model, batch: Batch, spec: dict):
    from segtool.core.boundaries import entropy_segment_ends
    from segtool.models.entropy import response_entropy
    from segtool.models.packing import plan_if_padded

    width = spec.get("pack_width", 0)  # > 0: packing on, as `segment` runs by default
    plan = plan_if_padded(batch.input_ids, batch.attention_mask.sum(1), width, 0)  # packed only with enough padding
    ent = response_entropy(
        model, batch.input_ids, batch.attention_mask, batch.response_mask, chunk_size=spec["chunk_size"], plan=plan
    )
    ent = ent.cpu().numpy()  # host copy (a no-op view on CPU, a real copy on GPU)
    return ent, entropy_segment_ends(ent, batch.lengths, spec["c_ent"])


def run_naive(model, batch: Batch, spec: dict):
    import torch

    from segtool.core.boundaries import entropy_segment_ends

    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
    logp = torch.log_softmax(logits.float(), dim=-1)  # [B, T, V] float32, all positions
    ent = -(logp.exp() * logp).sum(-1)
    ent = ent[batch.response_mask].cpu().numpy()
    return ent, entropy_segment_ends(ent, batch.lengths, spec["c_ent"])


RUNNERS = {"forward": run_forward, "segtool": run_segtool, "naive": run_naive}


# --------------------------------------------------------------------------- worker (one subprocess)


def prepare(spec: dict):
    """The worker's process settings, model and batches (warm-up batch first)."""
    import torch

    torch.set_num_threads(spec["threads"])
    sys.path.insert(0, str(REPO))  # segtool from this checkout, installed or not
    if spec.get("allocator", "segtool") == "segtool":
        from segtool.runtime import tune_allocator

        tune_allocator()  # as the segtool CLI does at start-up
    model, tokenizer = load_model(spec["path"], spec["dtype"], spec.get("big_vocab", 0))
    if spec.get("packing", "off") != "off":  # segment.packing: the stage's probe and per-sequence attention
        from segtool.models.entropy import split_causal_lm
        from segtool.models.packing import packing_width

        spec["pack_width"], note = packing_width(spec["packing"], spec["pack_width_knob"],
                                                 {"pi_SFT": split_causal_lm(model)[0]}, model.config.vocab_size,
                                                 "cpu", "--packing")
        if note:
            print(note, file=sys.stderr)
    pairs = load_transcripts(Path(spec["data"]))
    return model, build_batches(tokenizer, pairs, spec["batches"] + 1, spec["batch_size"], spec["seq_len"])


def interleaved_worker(spec: dict) -> dict:
    """Every method on every batch in turn, in one process; per method the per-batch times."""
    import torch

    import segtool.models.entropy as seg_models_entropy

    model, batches = prepare(spec)
    warmup, timed = batches[0], batches[1:]
    runners = {m: RUNNERS[m] for m in METHODS}
    if spec.get("entropy_fn"):
        own, candidate = seg_models_entropy.chunked_entropy, load_candidate(spec["entropy_fn"])

        def run_candidate(model, batch, spec):
            seg_models_entropy.chunked_entropy = candidate
            try:
                return run_segtool(model, batch, spec)
            finally:
                seg_models_entropy.chunked_entropy = own

        runners["candidate"] = run_candidate
    names = list(runners)
    times = {m: [] for m in names}
    with torch.inference_mode():
        for m in names:
            runners[m](model, warmup, spec)
        for r in range(spec["rounds"]):
            for k, batch in enumerate(timed):
                turn = (r * len(timed) + k) % len(names)
                for m in names[turn:] + names[:turn]:
                    t0 = time.perf_counter()
                    runners[m](model, batch, spec)
                    times[m].append((batch.n_tokens, time.perf_counter() - t0))
    return {"times": times, "digest": batches_digest(batches)}


def worker(spec: dict) -> dict:
    import numpy as np
    import torch

    if spec["method"] == "interleave":
        return interleaved_worker(spec)
    model, batches = prepare(spec)
    if spec.get("entropy_fn"):
        swap_chunked_entropy(spec["entropy_fn"])
    warmup, timed = batches[0], batches[1:]
    run = RUNNERS[spec["method"]]

    rss_load = rss_bytes()
    peak_reset = reset_peak_rss()
    with torch.inference_mode():
        run(model, warmup, spec)
        tokens, seconds, done, first, best = 0, 0.0, 0, None, 0.0
        busy0, own0 = cpu_busy_seconds(), own_cpu_seconds()
        faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        while done < len(timed) or seconds < spec["min_seconds"]:
            batch = timed[done % len(timed)]
            t0 = time.perf_counter()
            ent, ends = run(model, batch, spec)
            dt = time.perf_counter() - t0
            seconds += dt
            tokens += batch.n_tokens
            best = max(best, batch.n_tokens / dt)
            if done == 0 and ent is not None:
                first = (ent, ends)
            done += 1
        # CPU that other processes used while we were timing, as a share of the machine.
        others = (cpu_busy_seconds() - busy0 - (own_cpu_seconds() - own0)) / (seconds * (os.cpu_count() or 1))
        # Page faults: CPU PyTorch frees blocks > 32 MiB straight back to the kernel (glibc mmap), so
        # every fresh large tensor is faulted in and zeroed again; costly on VMs.
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
    result = {
        "tokens": tokens,
        "seconds": seconds,
        "batches_run": done,
        "best_tok_s": best,
        "others_cpu": max(0.0, others),
        "faults_per_batch": faults / done,
        "tokens_per_batch": timed[0].n_tokens,
        "response_frac": float(sum(b.response_mask.sum() for b in timed) / sum(b.n_tokens for b in timed)),
        "rss_load": rss_load,
        "peak_delta": maxrss_bytes() - rss_load,
        "peak_reset": peak_reset,
        "digest": batches_digest(batches),
        "vocab": model.config.vocab_size,
        "candidate": bool(spec.get("entropy_fn")),
    }
    if first is not None and spec.get("dump"):
        ent, (ends, counts) = first
        np.savez(spec["dump"], entropy=ent, ends=ends, counts=counts)
        result["segments_per_row"] = float(counts.mean())
        result["mean_entropy"] = float(ent.mean())
    return result


def load_candidate(ref: str):
    """`func` of FILE.py, from ``FILE.py:func``."""
    import importlib.util

    path, _, func = ref.rpartition(":")
    mod_spec = importlib.util.spec_from_file_location("candidate_entropy", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return getattr(module, func)


def swap_chunked_entropy(ref: str) -> None:
    """A/B hook: make response_entropy use `func` from FILE.py instead of segtool's chunked_entropy
    (same signature), without editing segtool."""
    import segtool.models.entropy as seg_models_entropy

    seg_models_entropy.chunked_entropy = load_candidate(ref)


def run_worker(spec: dict) -> dict:
    """Run one measurement in a fresh interpreter; its last stdout line is the JSON result."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    env = dict(os.environ, TRANSFORMERS_VERBOSITY="error", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed ({spec['label']} / {spec['method']}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- orchestration


@dataclass
class Row:
    label: str
    method: str
    chunk: int | None
    res: dict = field(default_factory=dict)

    @property
    def tok_s(self) -> float:
        return self.res["tokens"] / self.res["seconds"]

    @property
    def best(self) -> float:
        return self.res["best_tok_s"]

    @property
    def others(self) -> str:
        mark = "*" if self.disturbed else ""
        return f"{mark}{self.res['others_cpu']:.0%}"

    @property
    def disturbed(self) -> bool:
        return self.res["others_cpu"] > OTHERS_CPU_OK


def segment_pack_width() -> int:
    sys.path.insert(0, str(REPO))
    from segtool.config.schema import SegmentConfig

    return SegmentConfig().pack_width


def base_spec(args, label, path, dtype, seq_len, batch_size, batches, min_seconds, tmp) -> dict:
    return {
        "label": label,
        "path": str(path),
        "dtype": dtype,
        "seq_len": seq_len,
        "batch_size": batch_size,
        "batches": batches,
        "min_seconds": min_seconds,
        "threads": args.threads,
        "c_ent": args.c_ent,
        "chunk_size": args.chunk_size,
        "data": str(args.data),
        "tmp": tmp,
        "max_wait": args.max_wait,
        "retries": args.retries,
        "entropy_fn": args.entropy_fn,
        "allocator": args.allocator,
        "packing": args.packing,
        "pack_width_knob": segment_pack_width(),
    }


def measure(spec: dict, method: str, chunk: int | None = None) -> Row:
    spec = dict(spec, method=method)
    if chunk is not None:
        spec["chunk_size"] = chunk
    if method != "forward":
        spec["dump"] = os.path.join(spec["tmp"], f"{spec['label']}-{method}-{chunk}.npz")
    t0, res = time.perf_counter(), None
    # Re-measure when other processes took a real share of the 2 cores while we timed; keep the
    # least disturbed attempt (its others-CPU share is printed with it).
    for _ in range(1 + spec["retries"]):
        if spec["max_wait"] > 0:
            wait_for_quiet(spec["max_wait"])
        attempt = run_worker(spec)
        if res is None or attempt["others_cpu"] < res["others_cpu"]:
            res = attempt
        if res["others_cpu"] <= OTHERS_CPU_OK:
            break
    res["dump"] = spec.get("dump")
    print(
        f"  measured {spec['label']:<9} {method:<8} chunk={spec['chunk_size'] if method == 'segtool' else '-':<4} "
        f"{res['tokens'] / res['seconds']:>9,.0f} tok/s (best {res['best_tok_s']:,.0f})  "
        f"peak +{res['peak_delta'] / MB:,.0f} MB  others' CPU {res['others_cpu']:.0%}  "
        f"({time.perf_counter() - t0:.0f}s wall)",
        file=sys.stderr,
        flush=True,
    )
    return Row(spec["label"], method, chunk, res)


def parity(rows: list[Row]) -> str:
    """Compare (b) and (c) on the first timed batch: entropies and boundaries."""
    import numpy as np

    seg = next(r for r in rows if r.method == "segtool")
    naive = next(r for r in rows if r.method == "naive")
    a, c = np.load(seg.res["dump"]), np.load(naive.res["dump"])
    diff = np.abs(a["entropy"] - c["entropy"])
    same = a["ends"].shape == c["ends"].shape and bool((a["ends"] == c["ends"]).all())
    b = "(b')" if seg.res.get("candidate") else "(b)"
    a_n, c_n = a["ends"].size, c["ends"].size
    return (
        f"{b} vs (c) on batch 1: max |dH| = {diff.max():.2e} nats, mean H = {a['entropy'].mean():.2f}, "
        f"boundaries {'identical' if same else f'differ ({a_n} vs {c_n} ends)'}, "
        f"{seg.res['segments_per_row']:.1f} segments/response at c_ent"
    )


def fmt_mb(nbytes: float) -> str:
    return f"{nbytes / MB:,.0f}"


def model_block(args, label, path, tmp) -> tuple[list[str], list[Row]]:
    dtype = pick_dtype(args.dtype, label)
    spec = base_spec(args, label, path, dtype, args.seq_len, args.batch_size, args.batches, args.min_seconds, tmp)
    rows = [measure(spec, m) for m in METHODS]
    digests = {r.res["digest"] for r in rows}
    assert len(digests) == 1, f"methods saw different batches: {digests}"
    fwd = rows[0].best
    r0 = rows[0].res
    lines = [
        f"{label} ({path}), {dtype}, vocab {r0['vocab']:,}, batch {args.batch_size} x {args.seq_len}, "
        f"{r0['tokens_per_batch']:,} non-pad tokens/batch ({r0['response_frac']:.0%} response), "
        f"batches digest {rows[0].res['digest']}",
        f"  {'method':<30}{'tok/s':>9}{'best':>9}{'best/(a)':>10}{'batches':>9}{'others CPU':>12}"
        f"{'faults/batch':>14}{'RSS after load MB':>19}{'peak extra MB':>15}",
    ]
    b_name = "(b') candidate" if args.entropy_fn else "(b) segtool"
    names = {
        "forward": "(a) forward (logits)",
        "segtool": f"{b_name}, chunk {args.chunk_size}",
        "naive": "(c) naive fp32 log_softmax",
    }
    for r in rows:
        lines.append(
            f"  {names[r.method]:<30}{r.tok_s:>9,.0f}{r.best:>9,.0f}{r.best / fwd:>10.2f}"
            f"{r.res['batches_run']:>9}{r.others:>12}{r.res['faults_per_batch']:>14,.0f}"
            f"{fmt_mb(r.res['rss_load']):>19}{fmt_mb(r.res['peak_delta']):>15}"
        )
    lines.append("  " + parity(rows))
    if args.interleave:
        lines += interleaved_lines(args, spec, names)
    return lines, rows


def interleaved_lines(args, spec: dict, names: dict) -> list[str]:
    """The interleaved table: per method, tok/s and the median per-batch time against (a)'s."""
    import statistics

    res = run_worker(dict(spec, method="interleave", rounds=args.interleave))
    times = res["times"]
    median = {m: statistics.median(t / n for n, t in v) for m, v in times.items()}
    names = dict(names, segtool=f"(b) segtool, chunk {args.chunk_size}",
                 candidate=f"(b') candidate, chunk {args.chunk_size}")
    lines = [f"  interleaved in one process, {args.interleave} rounds x {spec['batches']} batches, each batch by every "
             "method in turn (rotating the order):",
             f"  {'method':<30}{'tok/s':>9}{'median s/1k tok':>17}{'(a)/method':>12}"]
    for m, v in times.items():
        tok_s = sum(n for n, _ in v) / sum(t for _, t in v)
        lines.append(f"  {names[m]:<30}{tok_s:>9,.0f}{median[m] * 1e3:>17.3f}{median['forward'] / median[m]:>12.2f}")
    return lines


def big_vocab_block(args, dirs, tmp) -> tuple[list[str], list[Row]]:
    label = "smollm2" if dirs.get("smollm2") else "tiny"
    path = dirs[label]
    dtype = pick_dtype(args.dtype, "big")
    T = args.long_seq
    spec = base_spec(args, "v128k", path, dtype, T, 1, 1 if args.quick else 2, 0.0, tmp)
    spec["big_vocab"] = BIG_VOCAB
    chunks = [int(c) for c in args.long_chunks.split(",")]
    rows = [] if args.quick else [measure(spec, "forward")]
    rows.append(measure(spec, "naive"))
    rows += [measure(spec, "segtool", c) for c in chunks]
    n_resp = int(rows[-1].res["response_frac"] * rows[-1].res["tokens_per_batch"])
    esize = 2 if dtype == "bfloat16" else 4
    lines = [
        f"128k vocab, random head: {label} backbone, {dtype}, untied seeded lm_head V={BIG_VOCAB:,}, "
        f"batch 1 x {T} ({n_resp:,} response positions)",
        f"  {'method':<30}{'tok/s':>9}{'best':>9}{'others CPU':>12}{'faults/batch':>14}"
        f"{'RSS after load MB':>19}{'peak extra MB':>15}   theoretical size",
    ]
    for r in rows:
        if r.method == "forward":
            name, theory = "(a) forward (logits)", f"logits T x V x {esize} B = {fmt_mb(T * BIG_VOCAB * esize)} MB"
        elif r.method == "naive":
            name, theory = "(c) naive fp32 log_softmax", f"T x V x 4 B = {fmt_mb(T * BIG_VOCAB * 4)} MB (one fp32 copy)"
        else:
            b_name = "(b') candidate" if args.entropy_fn else "(b) segtool"
            name, theory = f"{b_name}, chunk {r.chunk}", f"chunk x V x 4 B = {fmt_mb(r.chunk * BIG_VOCAB * 4)} MB"
        lines.append(
            f"  {name:<30}{r.tok_s:>9,.0f}{r.best:>9,.0f}{r.others:>12}{r.res['faults_per_batch']:>14,.0f}"
            f"{fmt_mb(r.res['rss_load']):>19}"
            f"{fmt_mb(r.res['peak_delta']):>15}   {theory}"
        )
    lines.append("  " + parity([r for r in rows if r.method in ("segtool", "naive")]))
    lines.append(
        f"  expected peaks, roughly: (c) holds the {dtype} logits plus log p, p and p*log p in fp32 "
        f"(~{3 + esize / 4:.1f} x T x V x 4 B); (b) holds one chunk of logits in {dtype} "
        f"(chunk x V x {esize} B) plus chunked_entropy's fp32 working set, besides backbone activations"
    )
    return lines, rows


def header(args) -> list[str]:
    import platform

    import torch
    import transformers

    load = os.getloadavg()
    return [
        f"segment_throughput: torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, threads {args.threads}, "
        f"load avg {load[0]:.2f}",
        f"data {args.data.name} (HH-RLHF chosen responses), c_ent {args.c_ent}, one warm-up batch, "
        f">= {args.batches} timed batches and >= {args.min_seconds:g} s per method"
        + (" [--quick]" if args.quick else "")
        + f"; (b) packing {args.packing}"
        + ("; malloc: segtool's settings (runtime.tune_allocator) in every worker" if args.allocator == "segtool"
           else "; malloc: glibc defaults")
        + (
            f"\n(b') = segtool's response_entropy with chunked_entropy replaced by {args.entropy_fn}"
            if args.entropy_fn
            else ""
        ),
        "tok/s counts all non-pad input tokens (total / time; best: fastest single batch); "
        "others CPU: share of the machine used by other processes while timing",
        "peak extra = peak RSS (ru_maxrss, high-water mark reset after load) - RSS after load "
        "(weights paged in first); one fresh subprocess per row",
        "",
    ]


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    dirs = resolve_dirs(args)
    t0 = time.perf_counter()
    lines, rows = header(args), []
    with tempfile.TemporaryDirectory(prefix="segbench-") as tmp:
        for label in [m.strip() for m in args.models.split(",") if m.strip()]:
            if label not in dirs:
                sys.exit(f"unknown model {label!r}; choose from tiny, smollm2")
            if dirs[label] is None:
                lines += [f"{label}: model folder not found, skipped (SmolLM2: run benchmarks/prepare_smollm2.py)", ""]
                continue
            block, block_rows = model_block(args, label, dirs[label], tmp)
            lines, rows = lines + block + [""], rows + block_rows
        if not args.no_big_vocab and (dirs["smollm2"] or dirs["tiny"]):
            block, block_rows = big_vocab_block(args, dirs, tmp)
            lines, rows = lines + block + [""], rows + block_rows
    if any(r.disturbed for r in rows):
        lines.append(
            f"WARNING: rows marked * ran while other processes used > {OTHERS_CPU_OK:.0%} of the CPU even after "
            "retries; their timings are not trustworthy (on 2 cores a busy neighbour can cost 10x)."
        )
    lines.append(f"total wall time {time.perf_counter() - t0:.0f} s, load avg at end {os.getloadavg()[0]:.2f}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
