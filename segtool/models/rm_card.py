"""What an exported reward-model folder tells someone who loads it with plain transformers.

``AutoModelForSequenceClassification`` and ``pipeline("text-classification")`` read the value head
at the last token of whatever text they are given; segtool's reward e(x, y) aggregates segment
rewards over the formatted response, and the two can rank responses very differently. So the folder
says so where such a user looks: the classification label, a ``segtool_reward_model`` entry in
config.json, and a README.md model card showing the call that gives e(x, y).
"""

from __future__ import annotations

import json

CARD = "README.md"
LABEL = "value_at_last_token_not_segtool_reward"
CONFIG_KEY = "segtool_reward_model"
SCORE_CALL = "segtool.reward_model.load(folder).score(prompt, response)"
WARNING = ("The logits of this model are the value head at the last input token, NOT segtool's reward e(x, y). "
           f"Score with {SCORE_CALL} (segments: .segments(prompt, response)).")

READOUTS = {"end": "r_t = v at the segment's last token",
            "differential": "r_t = v at the segment's last token minus v at the previous segment's last token"}
AGGREGATIONS = {"avg": "the mean of the segment rewards", "sum": "the sum of the segment rewards",
                "min": "the smallest segment reward", "last": "v at the response's EOS token",
                "attention": "an attention-weighted sum of the segment rewards (learned weights)"}


def label_config(hf_config, metadata: dict) -> None:
    """Put the warning into ``hf_config`` (saved as config.json): the one label, and the settings."""
    hf_config.id2label = {0: LABEL}
    hf_config.label2id = {LABEL: 0}
    setattr(hf_config, CONFIG_KEY, {"warning": WARNING, **metadata})


def _segmentation(metadata: dict) -> str:
    strategy = metadata["strategy"]
    if strategy == "entropy":
        source = metadata.get("sft_model_source") or {}
        return (f"a segment ends at each response token after which the SFT model's next-token entropy exceeds "
                f"c_ent = {metadata['c_ent']:g}; SFT model `{source.get('path', 'not recorded')}`")
    return {"token": "one segment per token", "bandit": "one segment for the whole response",
            "ngram": f"segments of {metadata['n']} tokens", "punct": "segments end after punctuation",
            "sat": f"segments are the sentences of the SaT model `{metadata.get('sat_model')}` (wtpsplit)",
            }.get(strategy, f"strategy `{strategy}`")


def model_card(metadata: dict) -> str:
    """README.md for the folder: the warning first, then how to get e(x, y), then the settings."""
    settings = "\n".join(f"| `{k}` | `{json.dumps(v)}` |" for k, v in metadata.items())
    return f"""---
library_name: transformers
tags:
- segtool
- reward-model
---

# segtool segment-level reward model

> **Warning: the logits are not the reward.** Loaded with `AutoModelForSequenceClassification` or
> `pipeline("text-classification")`, this folder returns the value head at the last token of the text
> you pass (label `{LABEL}`). That is not the reward segtool trained and
> evaluates, and it can rank responses very differently.

segtool's reward e(x, y) formats the prompt and response as in training (EOS appended), splits the
response into segments ({_segmentation(metadata)}), reads a reward per segment
({READOUTS.get(metadata["readout"], metadata["readout"])}) and takes {AGGREGATIONS.get(metadata["aggregation"], metadata["aggregation"])}.

Get it from Python with segtool installed:

```python
import segtool.reward_model

rm = segtool.reward_model.load("path/to/this/folder")
rm.score("Why is the sky blue?", "Because of Rayleigh scattering.")     # e(x, y), as `segtool eval rm` computes it
rm.segments("Why is the sky blue?", "Because of Rayleigh scattering.")  # segment texts, token spans, rewards
```

or on a preference file: `segtool eval rm --rm path/to/this/folder --data pairs.jsonl` (for entropy
segments, with `--set model.path=` the SFT model).

## Settings (`segtool_rm.json`)

| key | value |
|---|---|
{settings}
"""
