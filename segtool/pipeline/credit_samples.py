"""Samples of the run's pi_SFT for the credit benchmark (`credit make --source sft`) and for
measuring the gold scorer's spread (benchmarks/gold_spread.py).

Sampled as PPO samples (``ppo.sampling.temperature``, ``ppo.sampling.top_p``), seeded per batch by
``models.generation.generate``, from prompts formatted by the Encoder every stage uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segtool.config.schema import Config
from segtool.console import progress
from segtool.credit import sources
from segtool.errors import ConfigError, InputError
from segtool.inputs.prompts import read_prompts
from segtool.models.generation import generate
from segtool.models.loading import load_causal_lm, pad_id_of, pick_device


@dataclass(frozen=True)
class Sample:
    prompt: tuple[dict, ...]
    text: str
    ended: bool  # the model ended it with EOS (else it hit the length limit)


def sft_prompt_path(prompts: str) -> Path:
    path = Path(prompts).expanduser() if prompts else sources.STORY_PROMPTS
    if not path.is_file():
        raise InputError(f"--prompts {path}: no such file", "give a .txt list (one prompt per line) or a prompt file")
    return path


def sft_prompts(prompts: str = "", skip_invalid: bool = False) -> list[tuple[dict, ...]]:
    """The prompts pi_SFT answers: a .txt list (one per line; default data/credit/story_prompts.txt)
    or any prompt file segtool reads."""
    path = sft_prompt_path(prompts)
    if path.suffix == ".txt":
        return [({"role": "user", "content": line},) for line in sources.read_lines(path, "story prompts")]
    rows, _ = read_prompts(str(path), skip_invalid=skip_invalid)
    return [r.messages for r in rows]


def sample_sft(cfg: Config, model_source, encoder, prompts: list[tuple[dict, ...]], count: int, max_new_tokens: int,
               seed: int, quiet: bool = True, temperature: float | None = None) -> list[Sample]:
    """``count`` samples, sample k answering prompt k mod len(prompts); ``temperature`` overrides
    ppo.sampling.temperature (0 = greedy)."""
    asked = [prompts[k % len(prompts)] for k in range(count)]
    ids = [encoder.encode_prompt(p) for p in asked]
    model = load_causal_lm(model_source, cfg.model, pick_device(cfg.model.device))
    context = int(getattr(model.config, "max_position_embeddings", 0) or cfg.tokenize.max_len)
    budget = min(max_new_tokens, min(cfg.tokenize.max_len, context) - max(map(len, ids)))
    if budget < 2:
        raise ConfigError("the prompts leave no room for a sample within tokenize.max_len",
                          "use shorter prompts or raise tokenize.max_len")
    tok = encoder.tokenizer
    with progress(quiet, count, "pi_SFT samples", unit="samples") as advance:
        out = generate(model, ids, eos_id=encoder.eos_id, pad_id=pad_id_of(tok), max_new_tokens=budget,
                       temperature=cfg.ppo.sampling.temperature if temperature is None else temperature,
                       top_p=cfg.ppo.sampling.top_p, min_new_tokens=2, batch_size=cfg.ppo.generate_batch, seed=seed,
                       force_eos=False, advance=advance)
    samples = []
    for prompt, response, cut in zip(asked, out.responses, out.truncated):
        text = tok.decode(response if cut else response[:-1], skip_special_tokens=True).strip()
        if not cut and isinstance(tok.eos_token, str):
            # TinyStories-656K spells its end marker out as text pieces before the EOS token itself
            text = text.removesuffix(tok.eos_token).rstrip()
        samples.append(Sample(prompt, text, not cut))
    return samples
