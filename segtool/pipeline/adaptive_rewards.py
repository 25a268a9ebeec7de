"""Per-token rewards and Schmitt-trigger states (METHOD §7) for responses, from a segment reward
model (value differences) or a DPO policy (implicit reward). Shared by the `segment` stage's
`adaptive` strategy and by ARS, which scores its own samples.

The trigger runs over the positions that can carry a reward under the EOS policy: y_0 .. y_{n-2}
by default (the EOS then takes the state of the token before it), or every position with
``segment.eos_in_last_segment``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM

from segtool.artifacts.fingerprint import fingerprint_path
from segtool.artifacts.manifest import RunDir
from segtool.config.schema import Config
from segtool.core.adaptive import band, baselines, implicit_token_rewards, schmitt_states, value_token_rewards
from segtool.errors import ArtifactError, ConfigError
from segtool.models.loading import DTYPES, load_causal_lm, quiet_transformers, resolve_model_source
from segtool.models.policy import logprobs, pack, to_aligned
from segtool.models.reward import METADATA, load_reward_model
from segtool.training.checkpoints import POLICY_METADATA

SOURCE_STAGE = {"rm": "train-rm", "dpo": "dpo"}
SOURCE_FOLDER = {"rm": "model", "dpo": "policy"}


@dataclass(frozen=True)
class Source:
    kind: str  # "rm" or "dpo"
    folder: Path
    parents: tuple[str, ...]  # artifact ids of this run directory it comes from
    fingerprint: str  # content hash of the folder

    @property
    def metadata_file(self) -> str:
        return METADATA if self.kind == "rm" else POLICY_METADATA


def _head_folder(rundir: RunDir, kind: str) -> tuple[Path, str]:
    stage = SOURCE_STAGE[kind]
    record = rundir.head(stage)
    if record is None or record["status"] != "complete":
        what = "reward model" if kind == "rm" else "DPO policy"
        raise ArtifactError(
            f"segment.strategy = adaptive needs a {what}, and {rundir.root} has no complete {stage} artifact",
            f"run `segtool {stage}` there first, or set segment.adaptive_model to a {what} folder or run directory",
        )
    return rundir.path_of(record, SOURCE_FOLDER[kind]), record["id"]


def resolve_source(cfg: Config) -> Source:
    """The folder whose model gives the token rewards, with lineage and content identity."""
    kind = cfg.segment.adaptive_source
    here = RunDir(cfg.run.workdir)
    given = cfg.segment.adaptive_model
    parents: tuple[str, ...] = ()
    if not given:
        folder, art = _head_folder(here, kind)
        parents = (art,)
    else:
        path = Path(given).expanduser().resolve()
        if (path / "manifest.json").is_file():
            folder, art = _head_folder(RunDir(path), kind)
            parents = (art,) if path == here.root.resolve() else ()
        elif path.is_dir():
            folder = path
            parents = _artifact_containing(here, path)
        else:
            raise ConfigError(f"segment.adaptive_model {given} does not exist", "give a model folder or a run directory")
    source = Source(kind, folder, parents, "")
    if not (folder / source.metadata_file).is_file():
        raise ArtifactError(
            f"{folder} has no {source.metadata_file}: not a segtool {'reward model' if kind == 'rm' else 'DPO policy'}",
            "point segment.adaptive_model at a train-rm model/ folder (rm) or a dpo policy/ folder (dpo)",
        )
    return Source(kind, folder, parents, fingerprint_path(folder))


def _artifact_containing(rundir: RunDir, path: Path) -> tuple[str, ...]:
    if not rundir.manifest_path.exists():
        return ()
    for art_id, rec in rundir.read()["artifacts"].items():
        if path.is_relative_to(rundir.path_of(rec).resolve()):
            return (art_id,)
    return ()


def source_metadata(source: Source) -> dict:
    return json.loads((source.folder / source.metadata_file).read_text())


@dataclass
class TokenScores:
    reward: np.ndarray  # [n] float32 per response position
    baseline: np.ndarray  # [n] float32
    state: np.ndarray  # [n] bool, True = good
    band: np.ndarray  # [n] int8: +1 above b + delta, -1 below b - delta, 0 inside the band


class TokenScorer:
    """Loads the source model once and scores batches of (prompt, response) token lists."""

    def __init__(self, cfg: Config, source: Source, device: str, sft_fingerprint: dict, ref=None):
        """``ref``: pi_SFT already loaded by the caller (PPO's reference), instead of a second copy."""
        self.cfg, self.source, self.device = cfg, source, device
        meta = source_metadata(source)
        dtype = getattr(torch, DTYPES[cfg.model.dtype])
        key = "sft_model" if source.kind == "rm" else "reference_model"
        if meta.get(key) != sft_fingerprint:
            raise ConfigError(
                f"{source.folder} was not built from the configured model.path (its {key} differs)",
                "token rewards need the same tokenizer and reference: set model.path to the model it was trained from",
            )
        if source.kind == "rm":
            self.rm, _ = load_reward_model(source.folder, dtype, device)
        else:
            if meta.get("stage") != "dpo":
                raise ArtifactError(f"{source.folder} is a {meta.get('stage')} policy, not a DPO policy",
                                    "the implicit reward beta log pi/pi_ref needs a policy trained by `segtool dpo`")
            quiet_transformers()
            self.beta = float(meta["beta"])
            self.policy = AutoModelForCausalLM.from_pretrained(source.folder, dtype=dtype).to(device).eval()
            self.ref = ref if ref is not None else load_causal_lm(resolve_model_source(cfg.model), cfg.model, device)

    @classmethod
    def from_rm(cls, cfg: Config, rm, device: str) -> TokenScorer:
        """A scorer around an already loaded reward model (ARS scores its samples with the RM it has)."""
        scorer = cls.__new__(cls)
        scorer.cfg, scorer.device, scorer.rm = cfg, device, rm
        scorer.source = Source("rm", Path(), (), "")
        return scorer

    def raw_rewards(self, prompts: list[list[int]], responses: list[list[int]]):
        """Per-token rewards [B, R] (response-aligned, zero past each row's end) and lengths [B]."""
        pad = 0
        batch = pack(prompts, responses, pad).to(self.device)
        with torch.no_grad():
            if self.source.kind == "rm":
                values, _ = self.rm(batch.input_ids, batch.attention_mask)
                aligned = to_aligned(values[batch.response_mask], batch)
                prompt_values = values[torch.arange(len(prompts), device=values.device), batch.prompt_lens - 1]
                rewards = value_token_rewards(aligned, prompt_values)
            else:
                rewards = to_aligned(self.implicit_rewards(batch), batch)
        return rewards.float().cpu() * batch.aligned.cpu(), batch.lengths.cpu()

    def implicit_rewards(self, batch, ref_logp=None, beta: float = 0.0):
        """DPO's implicit reward beta (log pi(y_j) - log pi_ref(y_j)) of every response token of a
        ``models.policy.Packed`` batch on the device, flat [N] float32. ``ref_logp``: log pi_ref of
        those tokens when the caller has them (PPO's reference pass); ``beta`` 0 = the policy's own."""
        chunk = self.cfg.segment.chunk_size
        with torch.no_grad():
            logp = logprobs(self.policy, batch, chunk)
            ref = logprobs(self.ref, batch, chunk) if ref_logp is None else ref_logp
        return implicit_token_rewards(logp, ref, beta or self.beta)

    def score(self, prompts: list[list[int]], responses: list[list[int]]) -> list[TokenScores]:
        rewards, lengths = self.raw_rewards(prompts, responses)
        return trigger(rewards, lengths, self.cfg.segment)


def trigger(rewards, lengths, seg) -> list[TokenScores]:
    """Baselines, eq.-15 bands and Schmitt states for aligned rewards [B, R] under the EOS policy."""
    scored = lengths if seg.eos_in_last_segment else lengths - 1  # positions the trigger sees
    active = torch.arange(rewards.shape[1])[None, :] < scored[:, None]
    b = baselines(rewards, active, seg.baseline, seg.td_alpha)
    states = schmitt_states(rewards, b, seg.delta)
    classes = band(rewards, b, seg.delta) * active
    out = []
    for i, n in enumerate(lengths.tolist()):
        s = states[i, :n].clone()
        k = int(scored[i])
        s[k:] = s[k - 1]  # the EOS outside the trigger joins the last segment
        out.append(TokenScores(rewards[i, :n].numpy().astype(np.float32), b[i, :n].numpy().astype(np.float32),
                               s.numpy(), classes[i, :n].numpy().astype(np.int8)))
    return out
