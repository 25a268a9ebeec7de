"""One frozen dataclass per config section. Each field documents itself once, here.

Fields marked ``identity=False`` are execution knobs (devices, batch sizes, chunking): they change
how fast a stage runs, not what it produces, so they are left out of an artifact's identity.
Every numeric knob declares its ``limits`` and every knob that takes one of a set of names its
``choices``; constructing a section checks them all (``segtool.config.knobs``), so a NaN, a negative
count or an unknown mode never reaches a stage or a manifest.

Two tables are shared by several sections, each with that section's defaults: ``OptimConfig``
(``train_rm.optim``, ``dpo.optim``, ``rs.optim``, ``ppo.actor``, ``ppo.critic``) and
``SamplingConfig`` (``ppo.sampling``, ``rs.sampling``, ``dpo.sampling``).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field

from segtool.config.knobs import (
    ADAM_BETA,
    AT_LEAST_ONE,
    NON_NEGATIVE,
    OPEN_UNIT,
    POSITIVE,
    UNIT_INTERVAL,
    UPPER_UNIT,
    Choices,
    Limits,
    Rule,
    Section,
    knob,
    multiple_rule,
    table,
)
from segtool.config.modes import (
    ADAPTIVE_SOURCES,
    AGGREGATIONS,
    BASELINES,
    BF16,
    CALIBRATION_ROWS,
    COMPILE,
    CRITIC_INITS,
    DATA_FORMATS,
    DTYPES,
    FIRST_FORWARD,
    GENERATORS,
    GOLD_SCORERS,
    INTERPOLATIONS,
    JUDGES,
    MASKS,
    METRIC_LOGGERS,
    NORMALISER_KINDS,
    NORMALISER_METHODS,
    PACKING,
    READOUTS,
    REWARD_MODES,
    REWARD_SOURCES,
    STRATEGIES,
    TEMPLATES,
)
from segtool.config.stages import KNOWN_STAGES

# 1: optimiser and sampling knobs flat in their sections (still read: segtool.config.legacy);
# 2: nested in optim / actor / critic / sampling tables.
CONFIG_VERSION = 2


def packing_knob(passes: str):
    """The packing switch of one stage's backbone passes (models.packing)."""
    return knob("auto", f"{passes} on sequences packed into rows instead of padded: auto (on when a probe shows the "
                "architecture honours position-id packing, else off with a note), on (error if not), off",
                identity=False, choices=PACKING)


def compile_knob(models: str, default: str):
    """The torch.compile switch of one training stage (models.compiling)."""
    return knob(default, f"compile the decoder layers of {models} for passes with gradients (torch.compile; the first "
                "step pays the compilation): auto (on a CPU for models of 50M parameters or more; needs a C++ compiler), "
                "on, off", identity=False, choices=COMPILE)


def generator_knob(samples: str):
    """The one sampling-engine switch of ppo, rs and eval (README: Generators)."""
    return knob("hf", f"what samples {samples}: hf (transformers generate) or vllm (a vLLM engine built once from the "
                "in-memory policy and updated in place after every policy update; needs vLLM installed)",
                choices=GENERATORS)


def pack_width_knob(default: int):
    return knob(default, "tokens per packed row (a longer sequence gets a row of its own)", identity=False,
                limits=AT_LEAST_ONE)


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up and cosine decay (one per trained model)."""

    lr: float = knob(1e-6, "peak learning rate", limits=POSITIVE)
    min_lr_ratio: float = knob(0.1, "cosine decay ends at min_lr_ratio * lr", limits=UNIT_INTERVAL)
    warmup_ratio: float = knob(0.03, "share of optimiser steps with linear warm-up", limits=UNIT_INTERVAL)
    adam_beta1: float = knob(0.9, "AdamW beta1", limits=ADAM_BETA)
    adam_beta2: float = knob(0.95, "AdamW beta2", limits=ADAM_BETA)
    weight_decay: float = knob(0.0, "AdamW weight decay", limits=NON_NEGATIVE)
    grad_clip: float = knob(1.0, "gradient norm clipping (0 = off)", limits=NON_NEGATIVE)


@dataclass(frozen=True)
class SamplingConfig:
    """How responses are sampled from a policy (min_new_tokens is always 2: a segment needs a token before EOS)."""

    max_new_tokens: int = knob(1024, "generation length limit (paper 1024)", limits=Limits(2))
    temperature: float = knob(1.0, "sampling temperature (paper 1.0)", limits=POSITIVE)
    top_p: float = knob(1.0, "nucleus sampling (paper 1.0)", limits=UPPER_UNIT)


@dataclass(frozen=True)
class ModelConfig(Section):
    section = "model"

    path: str = knob("", "local model directory, Hugging Face hub id, or .gguf file (pi_SFT)")
    revision: str = knob("main", "hub revision (branch, tag or commit); ignored for local paths")
    gguf_file: str = knob("", "GGUF file name inside `path` (or give the .gguf file as `path`)")
    dtype: str = knob("float32", "weights/compute dtype: float32, bfloat16 or float16",
                      choices=Choices(DTYPES, "is not supported"))
    device: str = knob("auto", "cpu, cuda, cuda:N, or auto (cuda when available)", identity=False)
    trust_remote_code: bool = knob(False, "allow custom modelling code from the hub")


@dataclass(frozen=True)
class DataConfig(Section):
    section = "data"

    path: str = knob("", "preference data: .jsonl, .jsonl.gz, .parquet, or a Hugging Face dataset name")
    name: str = knob("", "Hugging Face dataset config name (hub datasets only)")
    split: str = knob("train", "dataset split (hub datasets only)")
    format: str = knob("auto", "row format: auto, pairs (prompt/chosen/rejected) or hh (HH-RLHF transcripts)",
                       choices=DATA_FORMATS)
    max_rows: int = knob(0, "use only the first N rows (0 = all)", limits=NON_NEGATIVE)
    skip_invalid: bool = knob(False, "skip and count invalid rows instead of failing on the first one")


@dataclass(frozen=True)
class TokenizeConfig(Section):
    section = "tokenize"

    max_len: int = knob(2048, "max prompt + response tokens (METHOD §1)", limits=Limits(3))
    max_prompt_len: int = knob(1728, "max prompt tokens; longer prompts keep their right end", limits=AT_LEAST_ONE)
    template: str = knob("auto", "auto (chat template when the tokenizer has one, else plain) or plain",
                         choices=TEMPLATES)

    def rules(self) -> list[Rule]:
        return [(self.max_len - self.max_prompt_len >= 2,
                 f"tokenize.max_len ({self.max_len}) must exceed max_prompt_len ({self.max_prompt_len}) by >= 2",
                 "every response keeps at least one token plus its EOS; raise max_len or lower max_prompt_len")]


@dataclass(frozen=True)
class SegmentConfig(Section):
    section = "segment"

    strategy: str = knob("entropy", f"{', '.join(STRATEGIES)} (METHOD §2, §7)", choices=STRATEGIES)
    c_ent: float = knob(1.75, "entropy cutoff: position j ends a segment iff H_j > c_ent (paper: 1.75 Phi-3, 2.0 Llama-3)", limits=NON_NEGATIVE)
    n: int = knob(5, "segment length in tokens for the ngram strategy", limits=AT_LEAST_ONE)
    sat_model: str = knob("sat-3l-sm", "sat: the SaT sentence segmenter (wtpsplit), a segment-any-text hub name or a local folder")
    eos_in_last_segment: bool = knob(False, "end the last segment at EOS instead of the token before it")
    # 512: each chunk re-reads the LM-head weight (56 MB for SmolLM2); 256 -> 512 cut the entropy pass over
    # 1,550 positions from 123 to 94 ms on a 2-core Intel Xeon, for one more [chunk, vocab] logits buffer
    chunk_size: int = knob(512, "positions per LM-head chunk in the entropy and log-prob passes", identity=False,
                           limits=AT_LEAST_ONE)
    batch_tokens: int = knob(16384, "tokens per forward batch (length-sorted batches; padded tokens count unless packed)",
                             identity=False, limits=AT_LEAST_ONE)
    packing: str = packing_knob("pi_SFT's entropy passes")
    pack_width: int = pack_width_knob(2048)
    shard_rows: int = knob(1024, "input rows per output shard (the unit of --resume)", identity=False, limits=AT_LEAST_ONE)
    adaptive_source: str = knob("rm", "adaptive: per-token rewards from rm (value differences v_i - v_(i-1) of a segment RM) or dpo (implicit reward beta log pi/pi_ref of a DPO policy)",
                                choices=ADAPTIVE_SOURCES)
    adaptive_model: str = knob("", "adaptive: the RM / DPO policy folder, or a run directory (its train-rm / dpo head); empty = this run directory's")
    baseline: str = knob("sequence", "adaptive: baseline b = sequence (mean token reward of the response), running (mean of the rewards before t) or td (TD(0) estimate)",
                         choices=BASELINES)
    delta: float = knob(0.0, "adaptive: Schmitt-trigger offset; r > b + delta is good, r < b - delta bad, otherwise the state is kept", limits=NON_NEGATIVE)
    td_alpha: float = knob(0.1, "adaptive: step size of the td baseline", limits=UPPER_UNIT)

    def rules(self) -> list[Rule]:
        return [(self.strategy != "sat" or bool(self.sat_model.strip()), "segment.sat_model is empty",
                 "name a SaT model (e.g. sat-3l-sm) or a local folder")]


@dataclass(frozen=True)
class TrainRMConfig(Section):
    section = "train_rm"

    readout: str = knob("end", "segment reward read-out: end (paper) or differential (sentence-level RM)",
                        choices=READOUTS)
    aggregation: str = knob("avg", "e(x, y) from segment rewards: avg (paper), sum, min, last (bandit: value at EOS), attention",
                            choices=AGGREGATIONS)
    margin: float = knob(0.0, "Bradley-Terry margin: -log sigma(e_w - e_l - margin)", limits=NON_NEGATIVE)
    optim: OptimConfig = table(OptimConfig, "the reward model's optimiser (paper: lr 1e-6)", lr=1e-6)
    global_batch: int = knob(128, "pairs per optimiser step", limits=AT_LEAST_ONE)
    micro_batch: int = knob(8, "pairs per forward pass (gradient accumulation up to global_batch)", identity=False, limits=AT_LEAST_ONE)
    epochs: int = knob(1, "passes over the training pairs", limits=AT_LEAST_ONE)
    max_steps: int = knob(0, "stop after this many optimiser steps (0 = all epochs)", limits=NON_NEGATIVE)
    eval_fraction: float = knob(0.05, "share of pairs held out for evaluation (never trained on)", limits=OPEN_UNIT)
    bf16: str = knob("auto", "bf16 autocast: auto (on when the device supports it), true or false", choices=BF16)
    gradient_checkpointing: bool = knob(True, "recompute activations in the backward pass to save memory", identity=False)
    compile: str = compile_knob("the reward model", "auto")
    packing: str = packing_knob("reward-model passes (train-rm, eval rm, fit-normalizer, credit, proxy judge)")
    pack_width: int = pack_width_knob(2048)
    checkpoint_every: int = knob(0, "save a resumable checkpoint every N steps (0 = only at the end)", identity=False, limits=NON_NEGATIVE)
    zero_stage: int = knob(3, "DeepSpeed ZeRO stage when launched under deepspeed/torchrun (0-3)", identity=False, limits=Limits(0, 3))

    def rules(self) -> list[Rule]:
        return [multiple_rule(self.section, "global_batch", self.global_batch, "micro_batch", self.micro_batch)]


@dataclass(frozen=True)
class NormalizerConfig(Section):
    section = "normalizer"

    kind: str = knob("location", "location (paper), global, last (bandit normaliser) or none (METHOD §4)",
                     choices=NORMALISER_KINDS)
    method: str = knob("huber", "fit of Mean(p), Std(p) against log p: huber (released code), ols, or raw (every point)",
                       choices=NORMALISER_METHODS)
    huber_epsilon: float = knob(1.35, "HuberRegressor epsilon", limits=Limits(1))
    std_floor_ratio: float = knob(0.1, "Std(p) floor as a share of the global reward std (fitted Std can go <= 0)", limits=POSITIVE)
    rows: str = knob("heldout", "calibration rows: heldout (never used to train the RM) or all",
                     choices=CALIBRATION_ROWS)
    max_pairs: int = knob(60000, "at most this many calibration pairs (paper: 60,000)", limits=AT_LEAST_ONE)
    decimals: int = knob(3, "p is binned by rounding to this many decimals", limits=Limits(1, 12))


@dataclass(frozen=True)
class PPOConfig(Section):
    section = "ppo"

    prompts: str = knob("", "prompt file (.jsonl, .jsonl.gz, .parquet) or HF dataset name [default: data.path]")
    eval_prompts: int = knob(32, "prompts held out from training (the last ones of a seeded shuffle): before/after reward", limits=NON_NEGATIVE)
    reward_mode: str = knob("segment", f"{', '.join(REWARD_MODES)} (METHOD §5; segment is the paper's)",
                            choices=tuple(REWARD_MODES))
    c_ent: float = knob(0.0, "entropy cut-off for PPO-time segments in bandit-as-segment mode (0 = the reward model's c_ent)", limits=NON_NEGATIVE)
    interpolation: str = knob("even", "segment reward -> tokens: even (paper: r_t / |a_t| on every token), repeat or end",
                              choices=INTERPOLATIONS)
    reward_source: str = knob("rm", "rm (the reward model, as ppo.reward_mode places it) or dpo (RTO, arXiv 2404.18922: "
                              "every token gets beta log pi_DPO/pi_SFT from the DPO policy of this config, trained first)",
                              choices=REWARD_SOURCES)
    dpo_reward_scale: float = knob(0.0, "reward_source = dpo: beta of the token reward beta log pi_DPO/pi_SFT "
                                   "(0 = the DPO policy's own dpo.beta; RTO's released recipe: 0.05)", limits=NON_NEGATIVE)
    dpo_reward_clip: float = knob(0.0, "reward_source = dpo: each token's DPO reward is clamped to [-clip, clip] "
                                  "(0 = off; RTO's released recipe: 0.05)", limits=NON_NEGATIVE)
    dpo_rm_weight: float = knob(0.0, "reward_source = dpo: weight of the reward model's reward (placed as ppo.reward_mode "
                                "says) added to the DPO token rewards (0 = none; RTO's released recipe: 1 with a "
                                "sequence-reward mode)", limits=NON_NEGATIVE)
    reward_clamp: float = knob(10.0, "per-token rewards are clamped to [-reward_clamp, reward_clamp]", limits=POSITIVE)
    missing_eos_penalty: float = knob(0.0, "subtracted from the reward of responses cut at max_new_tokens (0 = off)", limits=NON_NEGATIVE)
    kl_coef: float = knob(0.01, "beta of the per-token k1 KL penalty -beta (log pi - log pi_SFT)", limits=NON_NEGATIVE)
    adaptive_kl: bool = knob(False, "adapt beta towards kl_target (Ziegler et al. 2019)")
    kl_target: float = knob(6.0, "target per-sequence KL of the adaptive controller", limits=POSITIVE)
    kl_horizon: int = knob(10000, "horizon (episodes) of the adaptive controller", limits=AT_LEAST_ONE)
    gamma: float = knob(1.0, "GAE discount", limits=UNIT_INTERVAL)
    lam: float = knob(0.95, "GAE lambda", limits=UNIT_INTERVAL)
    whiten_advantages: bool = knob(True, "whiten advantages over the rollout batch")
    clip: float = knob(0.2, "PPO ratio clip epsilon", limits=POSITIVE)
    value_clip: float = knob(0.0, "value clip (0 = paper: 0.25 for dense rewards, 0.2 for bandit)", limits=NON_NEGATIVE)
    actor: OptimConfig = table(OptimConfig, "the policy's optimiser (paper: lr 5e-7)", lr=5e-7)
    critic: OptimConfig = table(OptimConfig, "the critic's optimiser (paper: lr 9e-6)", lr=9e-6)
    critic_init: str = knob("sft", "critic backbone: sft (pi_SFT + fresh value head, paper) or rm (the reward model)",
                            choices=CRITIC_INITS)
    rollout_batch: int = knob(1024, "prompts sampled per iteration (paper 1024)", limits=AT_LEAST_ONE)
    train_batch: int = knob(128, "samples per optimiser step (paper 128)", limits=AT_LEAST_ONE)
    ppo_epochs: int = knob(1, "passes over each rollout batch", limits=AT_LEAST_ONE)
    episodes: int = knob(1, "passes over the training prompts (paper 1-2)", limits=AT_LEAST_ONE)
    iterations: int = knob(0, "stop after this many rollout batches (0 = all episodes)", limits=NON_NEGATIVE)
    max_prompt_len: int = knob(1024, "prompt tokens kept (the right end), at most the RM's max_prompt_len (paper 1024)", limits=AT_LEAST_ONE)
    sampling: SamplingConfig = table(SamplingConfig, "rollouts and the held-out evaluation")
    generator: str = generator_knob("the rollouts and the held-out evaluation")
    mask: str = knob("none", "policy-loss token mask: none, or adaptive (APPO, METHOD §7)", choices=MASKS)
    forking_ratio: float = knob(0.0, "forking tokens (arXiv 2506.01939): the policy loss keeps only the ceil(ratio x n) "
                                "highest-entropy tokens (the policy's entropy at sampling) of the n the ppo.mask keeps "
                                "in each rollout batch; the value loss keeps all (0 = off; the paper: 0.2)",
                                limits=UNIT_INTERVAL)
    gold: str = knob("none", "also score rollouts and held-out answers with a programmatic gold scorer: none, or defects "
                     "(segtool.credit.gold: repeated sentences, unfinished endings, listed insults, wrong arithmetic; "
                     "gold reward = -count)", choices=GOLD_SCORERS)
    adaptive_delta: float = knob(0.0, "APPO: Schmitt-trigger offset delta around the baseline", limits=NON_NEGATIVE)
    adaptive_baseline: str = knob("sequence", "APPO: baseline b of the token rewards v_i - v_(i-1): sequence, running or td",
                                  choices=BASELINES)
    bf16: str = knob("auto", "bf16 autocast for the trained models: auto, true or false", choices=BF16)
    micro_batch: int = knob(8, "samples per training forward pass (accumulated up to train_batch)", identity=False, limits=AT_LEAST_ONE)
    forward_batch: int = knob(16, "samples per scoring forward pass (policy, reference, reward, critic)", identity=False, limits=AT_LEAST_ONE)
    first_forward: str = knob("auto", "the first update's first micro-batch takes its old log-probs, entropies and values "
                              "from its own training forward (run right after sampling, before any update: the same "
                              "weights) instead of a separate no-grad policy and critic pass: auto (where exact: no "
                              "active dropout), on (error if not), off", identity=False, choices=FIRST_FORWARD)
    generate_batch: int = knob(32, "prompts per generate() call", identity=False, limits=AT_LEAST_ONE)
    compile: str = compile_knob("the policy and the critic", "off")  # README: compiled layers
    packing: str = packing_knob("backbone passes")
    pack_width: int = pack_width_knob(1024)
    checkpoint_every: int = knob(1, "save a resumable checkpoint every N iterations", identity=False, limits=AT_LEAST_ONE)
    log_to: str = knob("none", "also log metrics to tensorboard or wandb (when installed)", identity=False,
                       choices=METRIC_LOGGERS)
    zero_stage: int = knob(2, "DeepSpeed ZeRO stage when launched under deepspeed/torchrun (0-2)", identity=False, limits=Limits(0, 2))

    def rules(self) -> list[Rule]:
        dpo_knobs = [f"ppo.{k} = {getattr(self, k)}" for k in ("dpo_reward_scale", "dpo_reward_clip", "dpo_rm_weight")
                     if getattr(self, k)]
        rm_unread = self.reward_source == "dpo" and not self.dpo_rm_weight
        return [multiple_rule(self.section, "rollout_batch", self.rollout_batch, "train_batch", self.train_batch),
                multiple_rule(self.section, "train_batch", self.train_batch, "micro_batch", self.micro_batch),
                (self.reward_source == "dpo" or not dpo_knobs,
                 f"{', '.join(dpo_knobs)} shape DPO token rewards, which ppo.reward_source = rm does not use",
                 "set ppo.reward_source = dpo, or drop them"),
                (not (rm_unread and self.interpolation != "even"),
                 f"ppo.interpolation = {self.interpolation!r} places the reward model's segment rewards, which "
                 "ppo.reward_source = dpo with dpo_rm_weight = 0 does not add",
                 "drop ppo.interpolation, or set ppo.dpo_rm_weight > 0 to add the reward model's reward"),
                (not (rm_unread and self.c_ent > 0 and self.reward_mode != "bandit-as-segment"),
                 f"ppo.c_ent = {self.c_ent} segments the reward model's rewards, which ppo.reward_source = dpo with "
                 "dpo_rm_weight = 0 does not add",
                 "drop ppo.c_ent, or set ppo.dpo_rm_weight > 0 to add the reward model's reward")]


@dataclass(frozen=True)
class EvalConfig(Section):
    """`segtool eval alpaca|arena|mtbench|gsm8k` (METHOD §8). The judge's API key is deliberately not a
    config key (configs are written to manifests): pass --api-key or set $SEGTOOL_JUDGE_API_KEY.

    Its answer-sampling knobs stay flat rather than a SamplingConfig table: 0 means "the benchmark's
    own setting" (length) and "greedy" (temperature), values a policy's sampling table refuses."""

    section = "eval"

    judge: str = knob("http", "http (any OpenAI-compatible chat endpoint), hf (a local Hugging Face model) or proxy (the run directory's reward model, offline; always labelled a proxy)",
                      choices=JUDGES)
    judge_model: str = knob("", "the endpoint's model name (http) or a local folder / hub id (hf) [default for http: the benchmark's official judge]")
    base_url: str = knob("", "OpenAI-compatible base URL [default: $SEGTOOL_JUDGE_BASE_URL, $OPENAI_BASE_URL, else https://api.openai.com/v1]")
    judge_max_tokens: int = knob(0, "cap on the judge's completion tokens (0 = the benchmark's official setting)", limits=NON_NEGATIVE)
    baseline: str = knob("official", "compared against: official (the benchmark's baseline answers), sft (model.path's answers) or a model folder / hub id")
    max_new_tokens: int = knob(0, "answer length limit (0 = the benchmark's default: alpaca 2048, arena 4096, mtbench 1024, gsm8k 512)", limits=NON_NEGATIVE)
    temperature: float = knob(0.0, "sampling temperature of alpaca, arena and gsm8k answers (0 = greedy); MT-Bench uses FastChat's per-category temperatures", limits=NON_NEGATIVE)
    top_p: float = knob(1.0, "nucleus sampling for answers sampled with temperature > 0", limits=UPPER_UNIT)
    generator: str = generator_knob("the benchmark answers")
    limit: int = knob(0, "use only the first N prompts of a benchmark (0 = all)", limits=NON_NEGATIVE)
    gsm8k_shots: int = knob(0, "GSM8K few-shot examples (the first k shipped train problems, as chat turns); 0 = zero-shot", limits=NON_NEGATIVE)
    arena_creative_baseline: str = knob("", "Arena-Hard v2.0: gemini-2.0-flash-001's answers (an arena-hard-auto v2.0 model_answer jsonl with metadata.token_len), the creative_writing baseline, which does not ship; 'hub' (or 'hub:OWNER/NAME') downloads it from the official archive lmarena-ai/arena-hard-auto; empty = that category is skipped")
    bootstrap_rounds: int = knob(100, "Arena-Hard bootstrap rounds for the 95% interval (seed 42, as the official tool)", limits=AT_LEAST_ONE)
    proxy_prompts: int = knob(16, "AlpacaEval prompts in the offline proxy evaluation that ends `segtool run`", limits=NON_NEGATIVE)
    concurrency: int = knob(8, "judge requests in flight at once (http judge)", identity=False, limits=AT_LEAST_ONE)
    retries: int = knob(6, "retries of a judge request after a timeout, 429 or 5xx (exponential back-off)", identity=False, limits=NON_NEGATIVE)
    timeout: float = knob(120.0, "seconds before a judge request counts as timed out", identity=False, limits=POSITIVE)
    backoff: float = knob(2.0, "first retry delay in seconds, doubled each retry (at most 60 s; Retry-After is honoured)", identity=False, limits=NON_NEGATIVE)
    cache_dir: str = knob("", "judge call cache [default: $SEGTOOL_CACHE/judge, else ~/.cache/segtool/judge]", identity=False)
    batch_size: int = knob(8, "prompts per generate() call (answers and the local judge)", identity=False, limits=AT_LEAST_ONE)
    shard_prompts: int = knob(64, "prompts per answer shard (the unit of --resume)", identity=False, limits=AT_LEAST_ONE)

    def rules(self) -> list[Rule]:
        return [
            (bool(self.baseline), "eval.baseline is empty", "use official, sft, or a model folder / hub id"),
            # the message must not repeat the URL: it holds the secret
            (not url_has_credentials(self.base_url),
             "eval.base_url carries a credential (user:password@ or a key/token query parameter), "
             "and configs are written to manifest.json",
             "give the URL without it, and the key in $SEGTOOL_JUDGE_API_KEY or --api-key"),
        ]


def url_has_credentials(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    names = [name.lower() for name, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)]
    return bool(parts.username or parts.password) or any(
        word in name for name in names for word in ("key", "token", "secret", "auth", "password"))


@dataclass(frozen=True)
class DPOConfig(Section):
    section = "dpo"

    beta: float = knob(0.1, "DPO temperature beta (METHOD §6)", limits=POSITIVE)
    label_smoothing: float = knob(0.0, "conservative DPO: probability that a preference label is flipped (0 = plain DPO)", limits=Limits(0, 0.5, high_open=True))
    mask: str = knob("none", "none (DPO) or adaptive (ADPO: log-prob sums over chosen tokens in good and rejected tokens in bad adaptive segments, METHOD §7)",
                     choices=MASKS)
    optim: OptimConfig = table(OptimConfig, "the policy's optimiser", lr=5e-7)
    global_batch: int = knob(64, "pairs per optimiser step", limits=AT_LEAST_ONE)
    micro_batch: int = knob(8, "pairs per forward pass (accumulated up to global_batch)", identity=False, limits=AT_LEAST_ONE)
    epochs: int = knob(1, "passes over the training pairs", limits=AT_LEAST_ONE)
    max_steps: int = knob(0, "stop after this many optimiser steps (0 = all epochs)", limits=NON_NEGATIVE)
    eval_prompts: int = knob(32, "pairs whose prompts are held out (never trained on), chosen as ppo.eval_prompts: held-out reward before/after", limits=NON_NEGATIVE)
    sampling: SamplingConfig = table(SamplingConfig, "the held-out evaluation")
    bf16: str = knob("auto", "bf16 autocast for the policy: auto, true or false", choices=BF16)
    gradient_checkpointing: bool = knob(False, "recompute activations in the backward pass to save memory", identity=False)
    compile: str = compile_knob("the policy", "off")
    checkpoint_every: int = knob(0, "save a resumable checkpoint every N steps (0 = only at the end)", identity=False, limits=NON_NEGATIVE)
    generate_batch: int = knob(32, "prompts per generate() call (evaluation)", identity=False, limits=AT_LEAST_ONE)
    forward_batch: int = knob(16, "samples per scoring forward pass (evaluation)", identity=False, limits=AT_LEAST_ONE)
    packing: str = packing_knob("policy, reference and reward-model passes")
    pack_width: int = pack_width_knob(2048)

    def rules(self) -> list[Rule]:
        return [multiple_rule(self.section, "global_batch", self.global_batch, "micro_batch", self.micro_batch)]


@dataclass(frozen=True)
class RSConfig(Section):
    section = "rs"

    prompts: str = knob("", "prompt file (.jsonl, .jsonl.gz, .parquet) or HF dataset name [default: data.path]")
    eval_prompts: int = knob(32, "prompts held out from training, chosen as ppo.eval_prompts: held-out reward before/after", limits=NON_NEGATIVE)
    k: int = knob(4, "samples per prompt; the reward model's best one is kept (METHOD §6)", limits=AT_LEAST_ONE)
    beta: float = knob(0.05, "weight of the KL(pi || pi_SFT) term added to the NLL", limits=NON_NEGATIVE)
    mask: str = knob("none", "none (RS) or adaptive (ARS: NLL and KL over the kept sample's good-segment tokens, METHOD §7)",
                     choices=MASKS)
    rollout_batch: int = knob(64, "prompts sampled per iteration", limits=AT_LEAST_ONE)
    train_batch: int = knob(64, "kept samples per optimiser step (divides rollout_batch)", limits=AT_LEAST_ONE)
    updates: int = knob(1, "passes over each iteration's kept samples", limits=AT_LEAST_ONE)
    episodes: int = knob(1, "passes over the training prompts", limits=AT_LEAST_ONE)
    iterations: int = knob(0, "stop after this many iterations (0 = all episodes)", limits=NON_NEGATIVE)
    optim: OptimConfig = table(OptimConfig, "the policy's optimiser", lr=1e-6)
    sampling: SamplingConfig = table(SamplingConfig, "the k samples per prompt and the held-out evaluation")
    generator: str = generator_knob("the k samples per prompt and the held-out evaluation")
    bf16: str = knob("auto", "bf16 autocast for the policy: auto, true or false", choices=BF16)
    micro_batch: int = knob(8, "samples per training forward pass", identity=False, limits=AT_LEAST_ONE)
    generate_batch: int = knob(32, "prompts per generate() call", identity=False, limits=AT_LEAST_ONE)
    forward_batch: int = knob(16, "samples per scoring forward pass", identity=False, limits=AT_LEAST_ONE)
    compile: str = compile_knob("the policy", "off")
    packing: str = packing_knob("policy, reference and reward-model passes")
    pack_width: int = pack_width_knob(2048)
    checkpoint_every: int = knob(1, "save a resumable checkpoint every N iterations", identity=False, limits=AT_LEAST_ONE)

    def rules(self) -> list[Rule]:
        return [multiple_rule(self.section, "rollout_batch", self.rollout_batch, "train_batch", self.train_batch)]


@dataclass(frozen=True)
class RunConfig(Section):
    section = "run"

    workdir: str = knob("", "run directory (default: runs/<preset name>)", identity=False)
    seed: int = knob(0, "random seed for every stage", limits=Limits(0, 2**32 - 1))
    stages: tuple = knob((), "stages `segtool run` runs, in order (empty = segment, train-rm, fit-normalizer, ppo)", identity=False)

    def __post_init__(self):
        object.__setattr__(self, "stages", tuple(self.stages))  # frozen: a TOML list becomes a tuple
        super().__post_init__()

    def rules(self) -> list[Rule]:
        unknown = [s for s in self.stages if s not in KNOWN_STAGES]
        return [(not unknown, f"run.stages names unknown stage(s) {unknown}",
                 f"use some of: {', '.join(KNOWN_STAGES)}")]


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
