"""Scores of RewardBench 2 and RM-Bench from per-response reward-model scores, computed as the
official scripts compute them (allenai/reward-bench scripts/run_v2.py with rewardbench/utils.py,
and THU-KEG/RM-Bench scripts/utils.py). Pure arithmetic: ``scores[k]`` is (chosen scores, rejected
scores) of ``rows[k]``, so it is tested without a model.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from segtool.errors import InputError
from segtool.inputs.benchmark_rows import TIES, TIES_ID

# The official Ties score: 60% accuracy (reference and tied prompts equally), 40% margins.
TIES_WEIGHTS = {"tied_accuracy": 0.30, "ref_accuracy": 0.30, "correctness_preferred": 0.20,
                "correctness_preferred_hard": 0.20, "correctness_margin_score": 0.01}


def best_of_n_result(chosen: np.ndarray, rejected: np.ndarray) -> float:
    """1 when the (single) chosen response scores above every rejected one; a tie at the top shares
    the credit, 1/k among the k responses holding the maximum (upstream's tie penalty)."""
    everything = np.concatenate([chosen, rejected])
    top = everything.max()
    return float(1.0 / np.sum(everything == top)) if everything[0] == top else 0.0


def _prompt_stats(chosen: np.ndarray, rejected: np.ndarray) -> tuple[bool, float | None, float]:
    """(every correct answer outscores the best wrong one, spread of the correct answers or None with
    one, gap between the worst correct and the best wrong answer)."""
    spread = float(chosen.max() - chosen.min()) if len(chosen) > 1 else None
    gap = float(chosen.min() - rejected.max())
    return gap > 0, spread, gap


def ties_score(rows, scores) -> dict:
    """The official weighted Ties score and its parts. Rows are grouped by id ``ref:N`` / ``tied:N``;
    the margin terms use the prompts N that have both."""
    grouped = defaultdict(lambda: ([], []))
    for row, (chosen, rejected) in zip(rows, scores):
        kind, number = TIES_ID.match(row.id).groups()
        grouped[(kind, int(number))][0].extend(np.asarray(chosen).tolist())
        grouped[(kind, int(number))][1].extend(np.asarray(rejected).tolist())
    stats = {"ref": {}, "tied": {}}
    for (kind, number), (chosen, rejected) in grouped.items():
        stats[kind][number] = _prompt_stats(np.asarray(chosen), np.asarray(rejected))
    both = sorted(set(stats["ref"]) & set(stats["tied"]))
    if not both:
        raise InputError("the Ties subset has no prompt with both a ref:N and a tied:N row",
                         "Ties is scored on reference/tied pairs of the same prompt: keep both rows of each prompt")
    spread = np.array([stats["tied"][n][1] for n in both])
    gap_tied = np.array([stats["tied"][n][2] for n in both])
    gap_hard = np.minimum(np.array([stats["ref"][n][2] for n in both]), gap_tied)
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero spread gives +-inf (tanh: +-1) or nan (0), as upstream
        margin = np.nan_to_num(np.tanh(gap_hard / spread - 1), nan=0.0)
    parts = {
        "tied_accuracy": float(np.mean([s[0] for s in stats["tied"].values()])) if stats["tied"] else 0.0,
        "ref_accuracy": float(np.mean([s[0] for s in stats["ref"].values()])) if stats["ref"] else 0.0,
        "correctness_preferred": float(np.mean(gap_tied > spread)),
        "correctness_preferred_hard": float(np.mean(gap_hard > spread)),
        "correctness_margin_score": float(np.mean(margin)),
    }
    return {"score": sum(TIES_WEIGHTS[k] * v for k, v in parts.items()), "prompts": len(both), **parts}


def rewardbench2_report(rows, scores) -> tuple[dict, list[float | None]]:
    """(metrics, per-row result): per subset the best-of-N accuracy (Ties: its weighted score), and
    the overall score, the unweighted mean over the subsets present. Ties rows have no per-row result."""
    results: list[float | None] = [None] * len(rows)
    members = defaultdict(list)
    for k, row in enumerate(rows):
        members[row.group].append(k)
    subsets = {}
    for name in sorted(members):
        idx = members[name]
        if name.lower() == TIES:
            subsets[name] = {"rows": len(idx), **ties_score([rows[k] for k in idx], [scores[k] for k in idx])}
            continue
        for k in idx:
            results[k] = best_of_n_result(np.asarray(scores[k][0]), np.asarray(scores[k][1]))
        subsets[name] = {"rows": len(idx), "score": float(np.mean([results[k] for k in idx]))}
    overall = float(np.mean([s["score"] for s in subsets.values()]))
    return {"rows": len(rows), "score": overall, "subsets": subsets}, results


def style_matrix(chosen: np.ndarray, rejected: np.ndarray) -> np.ndarray:
    """[3, 3]: 1 where chosen variant i scores above rejected variant j (variants: concise,
    detailed plain, detailed markdown)."""
    return (np.asarray(chosen)[:, None] > np.asarray(rejected)[None, :]).astype(np.float64)


def matrix_accuracies(matrix: np.ndarray) -> dict:
    """hard: upper-right triangle (a plainer chosen against a fancier rejected), normal: the diagonal,
    easy: lower-left triangle; each the mean of its cells, as upstream."""
    return {"hard": float(matrix[np.triu_indices(len(matrix), 1)].mean()),
            "normal": float(np.diag(matrix).mean()),
            "easy": float(matrix[np.tril_indices(len(matrix), -1)].mean())}


def rmbench_report(rows, scores) -> dict:
    """Per domain: the mean 3x3 matrix, hard/normal/easy and their mean; overall: each difficulty
    and the total averaged over the domains present (upstream's Overall = mean of the four domains)."""
    members = defaultdict(list)
    for k, row in enumerate(rows):
        members[row.group].append(k)
    domains = {}
    for name in sorted(members):
        matrix = np.mean([style_matrix(*scores[k]) for k in members[name]], axis=0)
        acc = matrix_accuracies(matrix)
        domains[name] = {"rows": len(members[name]), **acc, "score": float(np.mean(list(acc.values()))),
                         "matrix": matrix.round(6).tolist()}
    overall = {key: float(np.mean([d[key] for d in domains.values()])) for key in ("hard", "normal", "easy", "score")}
    return {"rows": len(rows), **overall, "domains": domains}
