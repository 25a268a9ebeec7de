"""The segment reward model: pi_SFT's backbone (no LM head) + a bias-free linear head giving a value
v_i at every position (METHOD §3), plus an optional learned segment scorer for attention
aggregation.

On disk it is a standard transformers ``AutoModelForSequenceClassification`` folder (num_labels 1,
the value head being its bias-free ``score``), so plain transformers loads it (and reads v at the
last token, which is not the reward: the folder's label, config.json and README.md say so, see
models.rm_card); segtool reads v at every position. The attention scorer, when used, sits beside it
in ``segtool_scorer.safetensors``, and ``segtool_rm.json`` records how rewards are read.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification

from segtool.artifacts.files import write_errors
from segtool.models import rm_card
from segtool.models.loading import check_weight_files, quiet_transformers
from segtool.models.packing import backbone_hidden

METADATA = "segtool_rm.json"
SCORER = "segtool_scorer.safetensors"


class SegmentRewardModel(torch.nn.Module):
    def __init__(self, hf_model, scorer: torch.nn.Linear | None = None):
        super().__init__()
        self.hf = hf_model
        self.scorer = scorer
        head = getattr(hf_model, "score", None)
        if not isinstance(head, torch.nn.Linear) or head.out_features != 1 or head.bias is not None:
            raise TypeError(f"{type(hf_model).__name__} has no bias-free single-output `score` head")

    @property
    def backbone(self) -> torch.nn.Module:
        return getattr(self.hf, self.hf.base_model_prefix)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, plan=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(values [B, T] float32, final hidden states [B, T, H]); ``plan`` runs the backbone packed
        (models.packing)."""
        hidden = backbone_hidden(self.backbone, input_ids, attention_mask, plan)
        return self.hf.score(hidden).squeeze(-1).float(), hidden

    def segment_scores(self, hidden_at_ends: torch.Tensor) -> torch.Tensor:
        """Attention logits of segments from their end hidden states [S, H] -> [S] float32."""
        return self.scorer(hidden_at_ends).squeeze(-1).float()


def _fresh_linear(hidden: int, seed: int, dtype) -> torch.nn.Linear:
    gen = torch.Generator().manual_seed(seed)
    layer = torch.nn.Linear(hidden, 1, bias=False)
    with torch.no_grad():  # value-head init as in common RLHF codebases: std 1 / sqrt(H + 1)
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) / math.sqrt(hidden + 1))
    return layer.to(dtype)


def build_from_causal_lm(lm, pad_token_id: int, *, attention: bool, seed: int) -> SegmentRewardModel:
    """A fresh RM whose backbone is a copy of ``lm``'s (works for tied and untied embeddings)."""
    config = lm.config.__class__.from_dict(lm.config.to_dict())
    config.num_labels = 1
    config.pad_token_id = pad_token_id
    config.architectures = None
    hf = AutoModelForSequenceClassification.from_config(config, dtype=lm.dtype)
    prefix = hf.base_model_prefix
    getattr(hf, prefix).load_state_dict(getattr(lm, prefix).state_dict())
    hidden = config.hidden_size
    hf.score = _fresh_linear(hidden, seed, lm.dtype)
    scorer = _fresh_linear(hidden, seed + 1, lm.dtype) if attention else None
    return SegmentRewardModel(hf, scorer).to(lm.device)


def save_reward_model(rm: SegmentRewardModel, tokenizer, folder: Path, metadata: dict) -> None:
    """Write the HF folder (labelled as not the reward), tokenizer, scorer, metadata and model card
    into ``folder`` (a fresh directory)."""
    with write_errors(folder):
        folder.mkdir(parents=True, exist_ok=True)
        rm.hf.config.architectures = [type(rm.hf).__name__]
        rm_card.label_config(rm.hf.config, metadata)
        rm.hf.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        if rm.scorer is not None:
            save_file({"weight": rm.scorer.weight.detach().contiguous().cpu()}, str(folder / SCORER))
        (folder / METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
        (folder / rm_card.CARD).write_text(rm_card.model_card(metadata))


def load_reward_model(folder: Path, dtype=torch.float32, device: str = "cpu") -> tuple[SegmentRewardModel, dict]:
    quiet_transformers()
    metadata = json.loads((folder / METADATA).read_text())
    try:
        hf = AutoModelForSequenceClassification.from_pretrained(folder, dtype=dtype)
    except SafetensorError:
        check_weight_files(folder)  # names the damaged file
        raise
    scorer = None
    if (folder / SCORER).exists():
        weight = load_file(str(folder / SCORER))["weight"]
        scorer = torch.nn.Linear(weight.shape[1], 1, bias=False).to(dtype)
        with torch.no_grad():
            scorer.weight.copy_(weight)
    return SegmentRewardModel(hf, scorer).to(device).eval(), metadata
