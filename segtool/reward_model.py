"""A trained segtool reward model from Python: e(x, y) and its segment rewards for any prompt and
response, computed exactly as `segtool eval rm` computes them.

    import segtool.reward_model

    rm = segtool.reward_model.load("runs/tiny")         # a run directory (its train-rm model) or a model/ folder
    rm.score("Why is the sky blue?", "Rayleigh scattering.")     # e(x, y)
    rm.segments("Why is the sky blue?", "Rayleigh scattering.")  # [Segment(text, start, end, reward)]

Loading the folder with plain transformers gives the value head at the last token instead, which is
not this reward (the folder's label, config.json and README.md say so). Here the text is formatted,
segmented (entropy segments from the SFT model recorded at training, checked by fingerprint) and
scored by the code training and `segtool eval rm` use (models.rm_scoring).
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from segtool.config.schema import Config, ModelConfig
from segtool.errors import ConfigError, InputError
from segtool.inputs.rows import ROLES
from segtool.models import rm_scoring
from segtool.models.reward import METADATA
from segtool.viz.segments import split_text


@dataclass(frozen=True)
class Segment:
    text: str
    start: int  # first response token of the segment
    end: int  # one past its last token (token indices into the response, whose last token is EOS)
    reward: float  # r_t, the segment's reward (METHOD §3 read-out)


class RewardModel:
    """A loaded reward model; ``settings`` is its segtool_rm.json (strategy, c_ent, read-out, ...)."""

    def __init__(self, setup: rm_scoring.ScoringSetup, batch_size: int):
        self._setup = setup
        self._batch_size = batch_size
        self.settings = dict(setup.meta)

    def score(self, prompt, response: str) -> float:
        """e(x, y): ``prompt`` is the user's text or a list of {"role", "content"} chat messages."""
        return self.scores([(prompt, response)])[0]

    def scores(self, items) -> list[float]:
        """e(x, y) for each (prompt, response), in length-sorted batches."""
        if not items:
            return []
        texts = [(_messages(p), _text(r)) for p, r in items]
        return rm_scoring.score_responses(self._setup, texts, self._batch_size, contextlib.nullcontext).tolist()

    def segments(self, prompt, response: str) -> list[Segment]:
        """The response's segments as the RM reads them: text, token span and reward r_t. Tokens after
        the last segment (by default the EOS) belong to none."""
        (example,) = rm_scoring.segment_responses(self._setup, [(_messages(prompt), _text(response))])
        rewards = rm_scoring.segment_rewards_of(self._setup, example)
        ends = example.ends.tolist()
        texts = split_text(self._setup.encoder.tokenizer, example.response.tolist(), ends)
        starts = [0] + [e + 1 for e in ends[:-1]]
        return [Segment(texts[t], starts[t], ends[t] + 1, float(rewards[t])) for t in range(len(ends))]


def load(path: str | Path, *, sft_model: str | None = None, device: str = "auto", dtype: str = "float32",
         batch_size: int = 8) -> RewardModel:
    """The reward model in ``path``: a train-rm ``model/`` folder or a run directory (its current
    train-rm model). ``sft_model`` overrides the SFT model (folder or hub id) recorded for entropy
    segmentation, e.g. after moving it; it must be the same model (checked by content)."""
    path = Path(path).expanduser().resolve()
    cfg = Config(model=ModelConfig(device=device, dtype=dtype))
    if not (path / METADATA).is_file() and (path / "manifest.json").is_file():
        folder, _ = rm_scoring.resolve_rm_folder(dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, workdir=str(path))), None)
    else:
        folder, _ = rm_scoring.resolve_rm_folder(cfg, str(path))
    meta = rm_scoring.read_metadata(folder)
    recorded = meta.get("sft_model_source") or {}
    if sft_model:
        recorded = {"path": sft_model}
    if meta["strategy"] == "entropy" and not recorded:
        raise ConfigError(f"{folder / METADATA} does not record the SFT model its entropy segments come from",
                          "pass it: segtool.reward_model.load(folder, sft_model=PATH_OR_HUB_ID)")
    if recorded:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **recorded))
    if batch_size < 1:
        raise ConfigError(f"batch_size = {batch_size} must be >= 1", "use a positive number of responses per pass")
    return RewardModel(rm_scoring.load_setup(cfg, folder), batch_size)


def _messages(prompt) -> list[dict]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, (list, tuple)) and prompt and all(
            isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str) for m in prompt):
        return [{"role": m["role"], "content": m["content"]} for m in prompt]
    raise InputError(f"prompt {prompt!r:.80} is neither a string nor a list of chat messages",
                     f'give the user\'s text, or [{{"role": "user", "content": ...}}] with roles in {ROLES}')


def _text(response) -> str:
    if not isinstance(response, str):
        raise InputError(f"response must be a string, got {type(response).__name__}", "give the response text")
    if not response.strip():  # as preference rows: an empty response has nothing to score
        raise InputError("response is empty", "give a non-empty response")
    return response
