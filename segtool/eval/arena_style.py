"""Style features of Arena-Hard-Auto v2.0's style control (METHOD §8), as arena-hard-auto computes them:
per answer its token length and its markdown header, list and bold counts (counted after the text
inside ``` fences is removed), and per battle the normalised differences between the model's and the
baseline's features, standardised over the battles of one category.

Length enters as (len_m - len_b) / (len_m + len_b). A markdown count enters as a density per token,
d = count / (len + 1), compared as (d_m - d_b) / (d_m + d_b + 1).
"""

from __future__ import annotations

import re

import numpy as np

FEATURES = ("length", "headers", "lists", "bold")
_FENCED = re.compile(r"```([^`]*)```")
# the counted elements, by kind, under the names of the official answer metadata
_PATTERNS = {
    "header_count": {f"h{n}": re.compile(rf"^#{{{n}}}\s", re.MULTILINE) for n in range(1, 7)},
    "list_count": {"ordered": re.compile(r"^\s*\d+\.\s", re.MULTILINE), "unordered": re.compile(r"^\s*[-*+]\s", re.MULTILINE)},
    "bold_count": {"**": re.compile(r"\*\*[^*\n]+\*\*"), "__": re.compile(r"__[^_\n]+__")},
}


def without_code(text: str) -> str:
    """The text with the inside of every ``` fence removed, wherever that inside text occurs (the official
    tool deletes each fenced body by string replacement, leaving the empty fences behind)."""
    for body in _FENCED.findall(text):
        if body:
            text = text.replace(body, "")
    return text


def markdown_metadata(text: str) -> dict[str, dict[str, int]]:
    """{"header_count": {"h1".."h6"}, "list_count": {"ordered", "unordered"}, "bold_count": {"**", "__"}}
    of an answer, code blocks excluded: the markdown part of the official answer metadata."""
    prose = without_code(text)
    return {group: {kind: len(p.findall(prose)) for kind, p in kinds.items()} for group, kinds in _PATTERNS.items()}


def markdown_counts(text: str) -> tuple[int, int, int]:
    """(headers, list items, bold spans) of an answer, code blocks excluded."""
    meta = markdown_metadata(text)
    return tuple(sum(meta[group].values()) for group in _PATTERNS)


def answer_features(text: str, token_len: int) -> tuple[int, int, int, int]:
    """(token length, headers, list items, bold spans) of one answer."""
    return (int(token_len), *markdown_counts(text))


def battle_covariates(model: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Unstandardised covariates, one row per battle: rows of ``model`` and ``baseline`` are the two
    answers' (token length, headers, lists, bold)."""
    model, baseline = np.asarray(model, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    total = model[:, 0] + baseline[:, 0]
    if (total == 0).any():
        raise ValueError("both answers of a battle are empty (0 tokens): their length difference is undefined")
    out = np.empty_like(model)
    out[:, 0] = (model[:, 0] - baseline[:, 0]) / total
    dens_m = model[:, 1:] / (model[:, :1] + 1)
    dens_b = baseline[:, 1:] / (baseline[:, :1] + 1)
    out[:, 1:] = (dens_m - dens_b) / (dens_m + dens_b + 1)
    return out


def standardise(covariates: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(columns z-scored with the sample standard deviation, names of the columns kept). A constant
    column (e.g. no answer on either side has a header) carries no information and would be 0/0: it
    is left out and its name is missing from the kept list."""
    std = covariates.std(axis=0, ddof=1) if len(covariates) > 1 else np.zeros(covariates.shape[1])
    keep = std > 0
    z = (covariates[:, keep] - covariates[:, keep].mean(axis=0)) / std[keep]
    return z, [name for name, k in zip(FEATURES, keep) if k]
