"""One frozen dataclass per config section. Each field documents itself once, here.

Fields marked ``identity=False`` are execution knobs (devices, batch sizes, chunking): they change
how fast a stage runs, not what it produces, so they are left out of an artifact's identity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from segtool.core.boundaries import STRATEGIES
from segtool.errors import ConfigError


def knob(default, help: str, identity: bool = True):
    return field(default=default, metadata={"help": help, "identity": identity})


@dataclass(frozen=True)
class ModelConfig:
    path: str = knob("", "local model directory, Hugging Face hub id, or .gguf file (pi_SFT)")
    revision: str = knob("main", "hub revision (branch, tag or commit); ignored for local paths")
    gguf_file: str = knob("", "GGUF file name inside `path` (or give the .gguf file as `path`)")
    dtype: str = knob("float32", "weights/compute dtype: float32, bfloat16 or float16")
    device: str = knob("auto", "cpu, cuda, cuda:N, or auto (cuda when available)", identity=False)
    trust_remote_code: bool = knob(False, "allow custom modelling code from the hub")

    def __post_init__(self):
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(
                f"model.dtype = {self.dtype!r} is not supported",
                "use float32, bfloat16 or float16",
            )


@dataclass(frozen=True)
class DataConfig:
    path: str = knob("", "preference data: .jsonl, .jsonl.gz, .parquet, or a Hugging Face dataset name")
    name: str = knob("", "Hugging Face dataset config name (hub datasets only)")
    split: str = knob("train", "dataset split (hub datasets only)")
    format: str = knob("auto", "row format: auto, pairs (prompt/chosen/rejected) or hh (HH-RLHF transcripts)")
    max_rows: int = knob(0, "use only the first N rows (0 = all)")
    skip_invalid: bool = knob(False, "skip and count invalid rows instead of failing on the first one")

    def __post_init__(self):
        if self.format not in ("auto", "pairs", "hh"):
            raise ConfigError(f"data.format = {self.format!r} is not known", "use auto, pairs or hh")
        if self.max_rows < 0:
            raise ConfigError("data.max_rows must be >= 0", "use 0 for all rows")


@dataclass(frozen=True)
class TokenizeConfig:
    max_len: int = knob(2048, "max prompt + response tokens (METHOD §1)")
    max_prompt_len: int = knob(1728, "max prompt tokens; longer prompts keep their right end")
    template: str = knob("auto", "auto (chat template when the tokenizer has one, else plain) or plain")

    def __post_init__(self):
        if self.template not in ("auto", "plain"):
            raise ConfigError(f"tokenize.template = {self.template!r} is not known", "use auto or plain")
        if self.max_prompt_len < 1 or self.max_len - self.max_prompt_len < 2:
            raise ConfigError(
                f"tokenize.max_len ({self.max_len}) must exceed max_prompt_len ({self.max_prompt_len}) by >= 2",
                "every response keeps at least one token plus its EOS; raise max_len or lower max_prompt_len",
            )


@dataclass(frozen=True)
class SegmentConfig:
    strategy: str = knob("entropy", "entropy, token, bandit, ngram, punct or adaptive (METHOD §2, §7)")
    c_ent: float = knob(1.75, "entropy cutoff: position j ends a segment iff H_j > c_ent (paper: 1.75 Phi-3, 2.0 Llama-3)")
    n: int = knob(5, "segment length in tokens for the ngram strategy")
    eos_in_last_segment: bool = knob(False, "end the last segment at EOS instead of the token before it")
    chunk_size: int = knob(256, "positions per LM-head chunk in the entropy computation", identity=False)
    batch_tokens: int = knob(16384, "padded tokens per forward batch (length-sorted batches)", identity=False)
    shard_rows: int = knob(1024, "input rows per output shard (the unit of --resume)", identity=False)
    adaptive_source: str = knob("rm", "adaptive: per-token rewards from rm (value differences v_i - v_(i-1) of a segment RM) or dpo (implicit reward beta log pi/pi_ref of a DPO policy)")
    adaptive_model: str = knob("", "adaptive: the RM / DPO policy folder, or a run directory (its train-rm / dpo head); empty = this run directory's")
    baseline: str = knob("sequence", "adaptive: baseline b = sequence (mean token reward of the response), running (mean of the rewards before t) or td (TD(0) estimate)")
    delta: float = knob(0.0, "adaptive: Schmitt-trigger offset; r > b + delta is good, r < b - delta bad, otherwise the state is kept")
    td_alpha: float = knob(0.1, "adaptive: step size of the td baseline")

    def __post_init__(self):
        if self.adaptive_source not in ("rm", "dpo") or self.baseline not in ("sequence", "running", "td"):
            raise ConfigError(
                f"segment.adaptive_source = {self.adaptive_source!r} / baseline = {self.baseline!r} is not known",
                "adaptive_source: rm or dpo; baseline: sequence, running or td",
            )
        if self.delta < 0 or not 0 < self.td_alpha <= 1:
            raise ConfigError("segment.delta must be >= 0 and td_alpha in (0, 1]", "e.g. delta = 0.05, td_alpha = 0.1")
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"segment.strategy = {self.strategy!r} is not known", f"use one of: {', '.join(STRATEGIES)}"
            )
        if self.n < 1:
            raise ConfigError(f"segment.n = {self.n} must be >= 1", "ngram segments need at least one token")
        if self.chunk_size < 1 or self.batch_tokens < 1 or self.shard_rows < 1:
            raise ConfigError(
                "segment.chunk_size, batch_tokens and shard_rows must be >= 1", "use positive integers"
            )


@dataclass(frozen=True)
class TrainRMConfig:
    readout: str = knob("end", "segment reward read-out: end (paper) or differential (sentence-level RM)")
    aggregation: str = knob("avg", "e(x, y) from segment rewards: avg (paper), sum, min, last (bandit: value at EOS), attention")
    margin: float = knob(0.0, "Bradley-Terry margin: -log sigma(e_w - e_l - margin)")
    lr: float = knob(1e-6, "peak learning rate (paper 1e-6)")
    min_lr_ratio: float = knob(0.1, "cosine decay ends at min_lr_ratio * lr")
    warmup_ratio: float = knob(0.03, "share of steps with linear warm-up")
    adam_beta1: float = knob(0.9, "AdamW beta1")
    adam_beta2: float = knob(0.95, "AdamW beta2")
    weight_decay: float = knob(0.0, "AdamW weight decay")
    grad_clip: float = knob(1.0, "gradient norm clipping (0 = off)")
    global_batch: int = knob(128, "pairs per optimiser step")
    micro_batch: int = knob(8, "pairs per forward pass (gradient accumulation up to global_batch)", identity=False)
    epochs: int = knob(1, "passes over the training pairs")
    max_steps: int = knob(0, "stop after this many optimiser steps (0 = all epochs)")
    eval_fraction: float = knob(0.05, "share of pairs held out for evaluation (never trained on)")
    bf16: str = knob("auto", "bf16 autocast: auto (on when the device supports it), true or false")
    gradient_checkpointing: bool = knob(True, "recompute activations in the backward pass to save memory", identity=False)
    checkpoint_every: int = knob(0, "save a resumable checkpoint every N steps (0 = only at the end)", identity=False)
    zero_stage: int = knob(3, "DeepSpeed ZeRO stage when launched under deepspeed/torchrun (0-3)", identity=False)

    def __post_init__(self):
        if self.readout not in ("end", "differential"):
            raise ConfigError(f"train_rm.readout = {self.readout!r} is not known", "use end or differential")
        if self.aggregation not in ("avg", "sum", "min", "last", "attention"):
            raise ConfigError(f"train_rm.aggregation = {self.aggregation!r} is not known", "use avg, sum, min, last or attention")
        if self.bf16 not in ("auto", "true", "false"):
            raise ConfigError(f"train_rm.bf16 = {self.bf16!r} is not known", 'use "auto", "true" or "false"')
        if self.global_batch < 1 or self.micro_batch < 1 or self.global_batch % self.micro_batch:
            raise ConfigError(
                f"train_rm.global_batch ({self.global_batch}) must be a positive multiple of micro_batch ({self.micro_batch})",
                "pick micro_batch dividing global_batch",
            )
        if not 0.0 < self.eval_fraction < 1.0:
            raise ConfigError("train_rm.eval_fraction must be in (0, 1)", "e.g. 0.05")
        if self.zero_stage not in (0, 1, 2, 3):
            raise ConfigError("train_rm.zero_stage must be 0, 1, 2 or 3", "use 0-3")


@dataclass(frozen=True)
class NormalizerConfig:
    kind: str = knob("location", "location (paper), global, last (bandit normaliser) or none (METHOD §4)")
    method: str = knob("huber", "fit of Mean(p), Std(p) against log p: huber (released code), ols, or raw (every point)")
    huber_epsilon: float = knob(1.35, "HuberRegressor epsilon")
    std_floor_ratio: float = knob(0.1, "Std(p) floor as a share of the global reward std (fitted Std can go <= 0)")
    rows: str = knob("heldout", "calibration rows: heldout (never used to train the RM) or all")
    max_pairs: int = knob(60000, "at most this many calibration pairs (paper: 60,000)")
    decimals: int = knob(3, "p is binned by rounding to this many decimals")

    def __post_init__(self):
        if self.kind not in ("location", "global", "last", "none"):
            raise ConfigError(f"normalizer.kind = {self.kind!r} is not known", "use location, global, last or none")
        if self.method not in ("huber", "ols", "raw"):
            raise ConfigError(f"normalizer.method = {self.method!r} is not known", "use huber, ols or raw")
        if self.rows not in ("heldout", "all"):
            raise ConfigError(f"normalizer.rows = {self.rows!r} is not known", "use heldout or all")
        if self.std_floor_ratio <= 0 or self.max_pairs < 1:
            raise ConfigError("normalizer.std_floor_ratio must be > 0 and max_pairs >= 1", "e.g. 0.1 and 60000")


REWARD_MODES = ("segment", "token", "bandit", "bandit-as-segment", "segment-as-bandit")
INTERPOLATIONS = ("even", "repeat", "end")  # core.ppo.INTERPOLATIONS (not imported: config must not load torch)


@dataclass(frozen=True)
class PPOConfig:
    prompts: str = knob("", "prompt file (.jsonl, .jsonl.gz, .parquet) or HF dataset name [default: data.path]")
    eval_prompts: int = knob(32, "prompts held out from training (the last ones of a seeded shuffle): before/after reward")
    reward_mode: str = knob("segment", "segment (paper), token, bandit, bandit-as-segment or segment-as-bandit (METHOD §5)")
    c_ent: float = knob(0.0, "entropy cut-off for PPO-time segments in bandit-as-segment mode (0 = the reward model's c_ent)")
    interpolation: str = knob("even", "segment reward -> tokens: even (paper: r_t / |a_t| on every token), repeat or end")
    reward_clamp: float = knob(10.0, "per-token rewards are clamped to [-reward_clamp, reward_clamp]")
    missing_eos_penalty: float = knob(0.0, "subtracted from the reward of responses cut at max_new_tokens (0 = off)")
    kl_coef: float = knob(0.01, "beta of the per-token k1 KL penalty -beta (log pi - log pi_SFT)")
    adaptive_kl: bool = knob(False, "adapt beta towards kl_target (Ziegler et al. 2019)")
    kl_target: float = knob(6.0, "target per-sequence KL of the adaptive controller")
    kl_horizon: int = knob(10000, "horizon (episodes) of the adaptive controller")
    gamma: float = knob(1.0, "GAE discount")
    lam: float = knob(0.95, "GAE lambda")
    whiten_advantages: bool = knob(True, "whiten advantages over the rollout batch")
    clip: float = knob(0.2, "PPO ratio clip epsilon")
    value_clip: float = knob(0.0, "value clip (0 = paper: 0.25 for dense rewards, 0.2 for bandit)")
    actor_lr: float = knob(5e-7, "policy learning rate (paper 5e-7)")
    critic_lr: float = knob(9e-6, "critic learning rate (paper 9e-6)")
    warmup_ratio: float = knob(0.03, "share of optimiser steps with linear warm-up")
    min_lr_ratio: float = knob(0.1, "cosine decay ends at min_lr_ratio * lr")
    grad_clip: float = knob(1.0, "gradient norm clipping (0 = off)")
    critic_init: str = knob("sft", "critic backbone: sft (pi_SFT + fresh value head, paper) or rm (the reward model)")
    rollout_batch: int = knob(1024, "prompts sampled per iteration (paper 1024)")
    train_batch: int = knob(128, "samples per optimiser step (paper 128)")
    ppo_epochs: int = knob(1, "passes over each rollout batch")
    episodes: int = knob(1, "passes over the training prompts (paper 1-2)")
    iterations: int = knob(0, "stop after this many rollout batches (0 = all episodes)")
    max_prompt_len: int = knob(1024, "prompt tokens kept (the right end), at most the RM's max_prompt_len (paper 1024)")
    max_new_tokens: int = knob(1024, "generation length limit (paper 1024)")
    temperature: float = knob(1.0, "sampling temperature (paper 1.0)")
    top_p: float = knob(1.0, "nucleus sampling (paper 1.0)")
    mask: str = knob("none", "policy-loss token mask: none, or adaptive (APPO, METHOD §7)")
    adaptive_delta: float = knob(0.0, "APPO: Schmitt-trigger offset delta around the baseline")
    adaptive_baseline: str = knob("sequence", "APPO: baseline b of the token rewards v_i - v_(i-1): sequence, running or td")
    bf16: str = knob("auto", "bf16 autocast for the trained models: auto, true or false")
    micro_batch: int = knob(8, "samples per training forward pass (accumulated up to train_batch)", identity=False)
    forward_batch: int = knob(16, "samples per scoring forward pass (policy, reference, reward, critic)", identity=False)
    generate_batch: int = knob(32, "prompts per generate() call", identity=False)
    packing: str = knob("auto", "backbone passes on sequences packed into rows instead of padded: auto (on when a probe "
                        "shows the architecture honours position-id packing, else off with a note), on (error if not), off",
                        identity=False)
    pack_width: int = knob(1024, "tokens per packed row (a longer sequence gets a row of its own)", identity=False)
    checkpoint_every: int = knob(1, "save a resumable checkpoint every N iterations", identity=False)
    log_to: str = knob("none", "also log metrics to tensorboard or wandb (when installed)", identity=False)
    zero_stage: int = knob(2, "DeepSpeed ZeRO stage when launched under deepspeed/torchrun (0-2)", identity=False)

    def __post_init__(self):
        checks = [
            (self.reward_mode in REWARD_MODES, "ppo.reward_mode", f"use one of: {', '.join(REWARD_MODES)}"),
            (self.interpolation in INTERPOLATIONS, "ppo.interpolation", f"use one of: {', '.join(INTERPOLATIONS)}"),
            (self.critic_init in ("sft", "rm"), "ppo.critic_init", "use sft or rm"),
            (self.mask in ("none", "adaptive"), "ppo.mask", "use none or adaptive"),
            (self.adaptive_baseline in ("sequence", "running", "td"), "ppo.adaptive_baseline", "use sequence, running or td"),
            (self.adaptive_delta >= 0, "ppo.adaptive_delta", "use a non-negative offset"),
            (self.bf16 in ("auto", "true", "false"), "ppo.bf16", 'use "auto", "true" or "false"'),
            (self.log_to in ("none", "tensorboard", "wandb"), "ppo.log_to", "use none, tensorboard or wandb"),
            (self.zero_stage in (0, 1, 2), "ppo.zero_stage", "use 0, 1 or 2"),
            (self.packing in ("auto", "on", "off"), "ppo.packing", 'use "auto", "on" or "off"'),
            (self.pack_width >= 1, "ppo.pack_width", "use a positive number of tokens"),
            (self.temperature > 0 and 0 < self.top_p <= 1, "ppo.temperature/top_p", "PPO samples: temperature > 0, 0 < top_p <= 1"),
            (self.max_new_tokens >= 2, "ppo.max_new_tokens", "at least 2 (one token plus EOS)"),
            (self.max_prompt_len >= 1, "ppo.max_prompt_len", "at least 1"),
            (self.eval_prompts >= 0 and self.iterations >= 0 and self.episodes >= 1 and self.ppo_epochs >= 1,
             "ppo.eval_prompts/iterations/episodes/ppo_epochs", "use non-negative counts (episodes, ppo_epochs >= 1)"),
            (self.reward_clamp > 0 and self.kl_coef >= 0 and self.clip > 0 and self.value_clip >= 0,
             "ppo.reward_clamp/kl_coef/clip/value_clip", "use positive values (kl_coef, value_clip may be 0)"),
        ]
        for ok, key, fix in checks:
            if not ok:
                raise ConfigError(f"{key} has an invalid value", fix)
        for name in ("rollout_batch", "train_batch", "micro_batch", "forward_batch", "generate_batch", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ppo.{name} must be >= 1", "use a positive integer")
        if self.rollout_batch % self.train_batch or self.train_batch % self.micro_batch:
            raise ConfigError(
                f"ppo.rollout_batch ({self.rollout_batch}) must be a multiple of train_batch ({self.train_batch}), "
                f"and train_batch of micro_batch ({self.micro_batch})", "pick divisible batch sizes")


JUDGES = ("http", "hf", "proxy")


@dataclass(frozen=True)
class EvalConfig:
    """`segtool eval alpaca|arena|mtbench|gsm8k` (METHOD §8). The judge's API key is deliberately not a
    config key (configs are written to manifests): pass --api-key or set $SEGTOOL_JUDGE_API_KEY."""

    judge: str = knob("http", "http (any OpenAI-compatible chat endpoint), hf (a local Hugging Face model) or proxy (the run directory's reward model, offline; always labelled a proxy)")
    judge_model: str = knob("", "the endpoint's model name (http) or a local folder / hub id (hf) [default for http: the benchmark's official judge]")
    base_url: str = knob("", "OpenAI-compatible base URL [default: $SEGTOOL_JUDGE_BASE_URL, $OPENAI_BASE_URL, else https://api.openai.com/v1]")
    judge_max_tokens: int = knob(0, "cap on the judge's completion tokens (0 = the benchmark's official setting)")
    baseline: str = knob("official", "compared against: official (the benchmark's baseline answers), sft (model.path's answers) or a model folder / hub id")
    max_new_tokens: int = knob(0, "answer length limit (0 = the benchmark's default: alpaca 2048, arena 4096, mtbench 1024, gsm8k 512)")
    temperature: float = knob(0.0, "sampling temperature of alpaca, arena and gsm8k answers (0 = greedy); MT-Bench uses FastChat's per-category temperatures")
    top_p: float = knob(1.0, "nucleus sampling for answers sampled with temperature > 0")
    limit: int = knob(0, "use only the first N prompts of a benchmark (0 = all)")
    gsm8k_shots: int = knob(0, "GSM8K few-shot examples (the first k shipped train problems, as chat turns); 0 = zero-shot")
    bootstrap_rounds: int = knob(100, "Arena-Hard bootstrap rounds for the 95% interval (seed 42, as the official tool)")
    proxy_prompts: int = knob(16, "AlpacaEval prompts in the offline proxy evaluation that ends `segtool run`")
    concurrency: int = knob(8, "judge requests in flight at once (http judge)", identity=False)
    retries: int = knob(6, "retries of a judge request after a timeout, 429 or 5xx (exponential back-off)", identity=False)
    timeout: float = knob(120.0, "seconds before a judge request counts as timed out", identity=False)
    backoff: float = knob(2.0, "first retry delay in seconds, doubled each retry (at most 60 s; Retry-After is honoured)", identity=False)
    cache_dir: str = knob("", "judge call cache [default: $SEGTOOL_CACHE/judge, else ~/.cache/segtool/judge]", identity=False)
    batch_size: int = knob(8, "prompts per generate() call (answers and the local judge)", identity=False)
    shard_prompts: int = knob(64, "prompts per answer shard (the unit of --resume)", identity=False)

    def __post_init__(self):
        if self.judge not in JUDGES:
            raise ConfigError(f"eval.judge = {self.judge!r} is not known", f"use one of: {', '.join(JUDGES)}")
        if not self.baseline:
            raise ConfigError("eval.baseline is empty", "use official, sft, or a model folder / hub id")
        counts = ("judge_max_tokens", "max_new_tokens", "limit", "gsm8k_shots", "retries", "proxy_prompts")
        for name in counts:
            if getattr(self, name) < 0:
                raise ConfigError(f"eval.{name} must be >= 0", "use 0 for the default / all")
        for name in ("concurrency", "batch_size", "shard_prompts", "bootstrap_rounds"):
            if getattr(self, name) < 1:
                raise ConfigError(f"eval.{name} must be >= 1", "use a positive integer")
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.timeout <= 0 or self.backoff < 0:
            raise ConfigError("eval.temperature, top_p, timeout or backoff is out of range",
                              "temperature >= 0, 0 < top_p <= 1, timeout > 0, backoff >= 0")


def _check(section, checks) -> None:
    """Raise on the first failed (ok, keys, fix) check, naming the keys and their values."""
    for ok, keys, fix in checks:
        if not ok:
            shown = ", ".join(f"{section.__class__.__name__.removesuffix('Config').lower()}.{k} = {getattr(section, k)!r}"
                              for k in keys.split("/"))
            raise ConfigError(f"invalid {shown}", fix)


@dataclass(frozen=True)
class DPOConfig:
    beta: float = knob(0.1, "DPO temperature beta (METHOD §6)")
    label_smoothing: float = knob(0.0, "conservative DPO: probability that a preference label is flipped (0 = plain DPO)")
    mask: str = knob("none", "none (DPO) or adaptive (ADPO: log-prob sums over chosen tokens in good and rejected tokens in bad adaptive segments, METHOD §7)")
    lr: float = knob(5e-7, "peak learning rate")
    min_lr_ratio: float = knob(0.1, "cosine decay ends at min_lr_ratio * lr")
    warmup_ratio: float = knob(0.03, "share of steps with linear warm-up")
    weight_decay: float = knob(0.0, "AdamW weight decay (betas 0.9, 0.95)")
    grad_clip: float = knob(1.0, "gradient norm clipping (0 = off)")
    global_batch: int = knob(64, "pairs per optimiser step")
    micro_batch: int = knob(8, "pairs per forward pass (accumulated up to global_batch)", identity=False)
    epochs: int = knob(1, "passes over the training pairs")
    max_steps: int = knob(0, "stop after this many optimiser steps (0 = all epochs)")
    eval_prompts: int = knob(32, "pairs whose prompts are held out (never trained on), chosen as ppo.eval_prompts: held-out reward before/after")
    max_new_tokens: int = knob(1024, "held-out evaluation: generation length")
    temperature: float = knob(1.0, "held-out evaluation: sampling temperature")
    top_p: float = knob(1.0, "held-out evaluation: nucleus sampling")
    bf16: str = knob("auto", "bf16 autocast for the policy: auto, true or false")
    gradient_checkpointing: bool = knob(False, "recompute activations in the backward pass to save memory", identity=False)
    checkpoint_every: int = knob(0, "save a resumable checkpoint every N steps (0 = only at the end)", identity=False)
    generate_batch: int = knob(32, "prompts per generate() call (evaluation)", identity=False)
    forward_batch: int = knob(16, "samples per scoring forward pass (evaluation)", identity=False)

    def __post_init__(self):
        _check(self, [
            (self.mask in ("none", "adaptive"), "mask", "use none or adaptive"),
            (self.beta > 0 and 0 <= self.label_smoothing < 0.5, "beta/label_smoothing", "beta > 0, 0 <= label_smoothing < 0.5"),
            (self.bf16 in ("auto", "true", "false"), "bf16", 'use "auto", "true" or "false"'),
            (self.temperature > 0 and 0 < self.top_p <= 1 and self.max_new_tokens >= 2, "temperature/top_p/max_new_tokens",
             "temperature > 0, 0 < top_p <= 1, max_new_tokens >= 2"),
            (self.epochs >= 1 and self.max_steps >= 0 and self.eval_prompts >= 0, "epochs/max_steps/eval_prompts",
             "epochs >= 1, max_steps and eval_prompts >= 0"),
            (min(self.micro_batch, self.generate_batch, self.forward_batch) >= 1 and self.global_batch >= 1
             and self.global_batch % self.micro_batch == 0, "global_batch/micro_batch",
             "positive sizes, micro_batch dividing global_batch"),
        ])


@dataclass(frozen=True)
class RSConfig:
    prompts: str = knob("", "prompt file (.jsonl, .jsonl.gz, .parquet) or HF dataset name [default: data.path]")
    eval_prompts: int = knob(32, "prompts held out from training, chosen as ppo.eval_prompts: held-out reward before/after")
    k: int = knob(4, "samples per prompt; the reward model's best one is kept (METHOD §6)")
    beta: float = knob(0.05, "weight of the KL(pi || pi_SFT) term added to the NLL")
    mask: str = knob("none", "none (RS) or adaptive (ARS: NLL and KL over the kept sample's good-segment tokens, METHOD §7)")
    rollout_batch: int = knob(64, "prompts sampled per iteration")
    train_batch: int = knob(64, "kept samples per optimiser step (divides rollout_batch)")
    updates: int = knob(1, "passes over each iteration's kept samples")
    episodes: int = knob(1, "passes over the training prompts")
    iterations: int = knob(0, "stop after this many iterations (0 = all episodes)")
    lr: float = knob(1e-6, "peak learning rate")
    min_lr_ratio: float = knob(0.1, "cosine decay ends at min_lr_ratio * lr")
    warmup_ratio: float = knob(0.03, "share of optimiser steps with linear warm-up")
    weight_decay: float = knob(0.0, "AdamW weight decay (betas 0.9, 0.95)")
    grad_clip: float = knob(1.0, "gradient norm clipping (0 = off)")
    max_new_tokens: int = knob(1024, "generation length (sampling and held-out evaluation)")
    temperature: float = knob(1.0, "sampling temperature")
    top_p: float = knob(1.0, "nucleus sampling")
    bf16: str = knob("auto", "bf16 autocast for the policy: auto, true or false")
    micro_batch: int = knob(8, "samples per training forward pass", identity=False)
    generate_batch: int = knob(32, "prompts per generate() call", identity=False)
    forward_batch: int = knob(16, "samples per scoring forward pass", identity=False)
    checkpoint_every: int = knob(1, "save a resumable checkpoint every N iterations", identity=False)

    def __post_init__(self):
        _check(self, [
            (self.mask in ("none", "adaptive"), "mask", "use none or adaptive"),
            (self.k >= 1 and self.beta >= 0, "k/beta", "k >= 1 and beta >= 0"),
            (self.bf16 in ("auto", "true", "false"), "bf16", 'use "auto", "true" or "false"'),
            (self.temperature > 0 and 0 < self.top_p <= 1 and self.max_new_tokens >= 2, "temperature/top_p/max_new_tokens",
             "temperature > 0, 0 < top_p <= 1, max_new_tokens >= 2"),
            (self.updates >= 1 and self.episodes >= 1 and self.iterations >= 0 and self.eval_prompts >= 0,
             "updates/episodes/iterations/eval_prompts", "updates, episodes >= 1; iterations, eval_prompts >= 0"),
            (min(self.rollout_batch, self.train_batch, self.micro_batch, self.generate_batch, self.forward_batch,
                 self.checkpoint_every) >= 1 and self.rollout_batch % self.train_batch == 0,
             "rollout_batch/train_batch", "positive sizes, train_batch dividing rollout_batch"),
        ])


@dataclass(frozen=True)
class RunConfig:
    workdir: str = knob("", "run directory (default: runs/<preset name>)", identity=False)
    seed: int = knob(0, "random seed for every stage")
    stages: tuple = knob((), "stages `segtool run` runs, in order (empty = segment, train-rm, fit-normalizer, ppo)", identity=False)

    def __post_init__(self):
        from segtool.pipeline.registry import KNOWN_STAGES

        object.__setattr__(self, "stages", tuple(self.stages))
        unknown = [s for s in self.stages if s not in KNOWN_STAGES]
        if unknown:
            raise ConfigError(f"run.stages names unknown stage(s) {unknown}", f"use some of: {', '.join(KNOWN_STAGES)}")


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration: one section per table in a preset file."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tokenize: TokenizeConfig = field(default_factory=TokenizeConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    train_rm: TrainRMConfig = field(default_factory=TrainRMConfig)
    normalizer: NormalizerConfig = field(default_factory=NormalizerConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    rs: RSConfig = field(default_factory=RSConfig)
    run: RunConfig = field(default_factory=RunConfig)
