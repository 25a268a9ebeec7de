"""A trained reward model as an offline *proxy* judge (METHOD §8): free and local, but not the
benchmark's judge, so every report built on it says "proxy" and its numbers are not comparable with
published leaderboards.

A pair of answers (a, b) to one prompt is scored e(x, a), e(x, b) with the RM exactly as in
`eval rm` (segmented as in its training); the Bradley-Terry probability that a beats b is
sigma(e_a - e_b). An empty answer cannot be scored (no tokens): it loses to any non-empty answer,
and two empty answers tie. Scores are cached per pair like every other judge call.
"""

from __future__ import annotations

import math

import numpy as np

from segtool.artifacts.fingerprint import fingerprint_path
from segtool.console import progress
from segtool.core.batching import pair_micro_batches
from segtool.eval.judges.cache import JudgeCache
from segtool.inputs.rows import Pair
from segtool.models import rm_scoring
from segtool.models.precision import make_autocast


class ProxyJudge:
    proxy = True

    def __init__(self, cfg, folder, parents: list[str]):
        self.cfg, self.folder, self.parents = cfg, folder, parents
        self.identity = {"kind": "rm-proxy", "rm": fingerprint_path(folder)}
        self.name = "reward-model-proxy"
        self.label = f"reward model {folder} (PROXY judge)"
        self._setup = None

    def win_probabilities(self, cache: JudgeCache, items: list[tuple[list[dict], str, str]], quiet: bool = False) -> list[float]:
        """P(a beats b) for each (prompt messages, answer a, answer b)."""
        replies: list = [None] * len(items)
        todo = []
        for i, (messages, a, b) in enumerate(items):
            replies[i] = cache.get(_request(messages, a, b))
            if replies[i] is None:
                todo.append(i)
        scorable = [i for i in todo if items[i][1].strip() and items[i][2].strip()]
        fresh = dict(zip(scorable, self._score([items[i] for i in scorable], quiet))) if scorable else {}
        for i in todo:
            messages, a, b = items[i]
            replies[i] = {"scores": fresh[i]} if i in fresh else {"empty": [not a.strip(), not b.strip()]}
            cache.put(_request(messages, a, b), replies[i])
        return [_probability(r) for r in replies]

    def _score(self, items, quiet: bool) -> list[list[float]]:
        if self._setup is None:
            self._setup = rm_scoring.load_setup(self.cfg, self.folder)
        setup = self._setup
        pairs = [Pair(k, tuple(messages), a, b) for k, (messages, a, b) in enumerate(items)]
        examples = rm_scoring.segment_pairs(setup, pairs)
        autocast = make_autocast(self.cfg.train_rm.bf16, setup.device, "train_rm.bf16")
        out = np.zeros((len(examples), 2), dtype=np.float64)
        with progress(quiet, len(examples), "proxy judge (reward model)", unit="pairs") as advance:
            for idx in pair_micro_batches(examples, np.arange(len(examples)), self.cfg.train_rm.micro_batch):
                e = rm_scoring.batch_scores(setup, [examples[i][0] for i in idx] + [examples[i][1] for i in idx], autocast)
                out[idx] = e.reshape(2, -1).T
                advance(len(idx))
        return out.tolist()


def _request(messages, a: str, b: str) -> dict:
    return {"prompt": [dict(m) for m in messages], "a": a, "b": b}


def _probability(reply: dict) -> float:
    """sigma(e_a - e_b); an empty (unscorable) answer loses, two of them tie."""
    if "empty" in reply:
        empty_a, empty_b = reply["empty"]
        return 0.5 if empty_a and empty_b else (0.0 if empty_a else 1.0)
    ea, eb = reply["scores"]
    d = ea - eb
    return 1.0 / (1.0 + math.exp(-d)) if d >= 0 else math.exp(d) / (1.0 + math.exp(d))  # no overflow
