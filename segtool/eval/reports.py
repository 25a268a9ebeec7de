"""Benchmark results for people: a terminal table, a Markdown report, and for comparisons of several
policies a self-contained HTML page with a plot (score with its error bar, and answer length, per
model). Results judged by the reward-model proxy carry the proxy label wherever they appear.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib
from rich.table import Table

from segtool.artifacts.files import atomic_path, atomic_write_text

matplotlib.use("Agg")  # files only, no display: the backend is chosen before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402


def _pct(v, digits=1):
    return "—" if v is None else f"{v:.{digits}f}"


def _ci(m):
    if m.get("lower") is None or m.get("upper") is None or m.get("score") is None:
        return "—"
    return f"(-{m['score'] - m['lower']:.1f}, +{m['upper'] - m['score']:.1f})"


def _category(m: dict, category: str, key: str):
    return (m.get("categories") or {}).get(category, {}).get(key)


def _int(v):
    return "—" if v is None else f"{int(v):,}"


# (header, how to format one result's metrics)
COLUMNS = {
    "alpaca": [("LC win rate", lambda m: _pct(m.get("length_controlled_winrate"), 2)),
               ("win rate", lambda m: _pct(m.get("win_rate"), 2)), ("SE", lambda m: _pct(m.get("standard_error"), 2)),
               ("discrete WR", lambda m: _pct(m.get("discrete_win_rate"), 2)), ("avg length", lambda m: _int(m.get("avg_length"))),
               ("n", lambda m: _int(m.get("n_total")))],
    "arena": [("score", lambda m: _pct(m.get("score"))), ("95% CI", _ci), ("avg tokens", lambda m: _int(m.get("avg_tokens"))),
              ("battles", lambda m: _int(m.get("battles")))],
    "arena-v2": [("hard (style ctrl)", lambda m: _pct(m.get("score"))), ("90% CI", _ci),
                 ("hard", lambda m: _pct(_category(m, "hard_prompt", "score"))),
                 ("creative (style ctrl)", lambda m: _pct(_category(m, "creative_writing", "score_style"))),
                 ("creative", lambda m: _pct(_category(m, "creative_writing", "score"))),
                 ("avg tokens", lambda m: _int(m.get("avg_tokens")))],
    "mtbench": [("turn 1", lambda m: _pct(m.get("turn_1"), 2)), ("turn 2", lambda m: _pct(m.get("turn_2"), 2)),
                ("overall", lambda m: _pct(m.get("overall"), 2)), ("rated", lambda m: _int(m.get("rated"))),
                ("unrated", lambda m: _int(m.get("unrated")))],
    "gsm8k": [("accuracy", lambda m: _pct(None if m.get("accuracy") is None else 100 * m["accuracy"], 2)),
              ("correct", lambda m: _int(m.get("correct"))), ("n", lambda m: _int(m.get("questions")))],
}
TITLES = {"alpaca": "AlpacaEval 2.0", "arena": "Arena-Hard v0.1", "arena-v2": "Arena-Hard v2.0", "mtbench": "MT-Bench",
          "gsm8k": "GSM8K"}


def rows(bench: str, results: list[dict]) -> tuple[list[str], list[list[str]]]:
    headers = ["model"] + [h for h, _ in COLUMNS[bench]]
    return headers, [[r.get("model", "?")] + [fmt(r) for _, fmt in COLUMNS[bench]] for r in results]


def notes(results: list[dict]) -> list[str]:
    out = []
    for r in results:
        if r.get("proxy"):
            out.append(f"{r.get('model')}: judged by a PROXY (a reward model), not by the benchmark's judge; "
                       "not comparable with published leaderboards")
        elif r.get("judge"):
            out.append(f"{r.get('model')}: judge {r['judge']}" + (f", baseline {r['baseline']}" if r.get("baseline") else ""))
        if r.get("lc_note") and r.get("length_controlled_winrate") is None:
            out.append(f"{r.get('model')}: length-controlled win rate {r['lc_note']}")
        if r.get("n_unparsed"):
            out.append(f"{r.get('model')}: {r['n_unparsed']} judgments without a readable preference (dropped)")
        for category, why in (r.get("skipped_categories") or {}).items():
            out.append(f"{r.get('model')}: category {category} skipped: {why}")
        if r.get("scored_categories") is not None:
            out.append(f"{r.get('model')}: scored categories: {', '.join(r['scored_categories']) or 'none'}")
        for category, entry in (r.get("categories") or {}).items():
            if entry.get("unusable_questions"):
                out.append(f"{r.get('model')}: {category}: {entry['unusable_questions']} questions without two usable verdicts (dropped)")
            if entry.get("style_coefficients"):
                coefs = ", ".join(f"{k} {'—' if v is None else f'{v:+.3f}'}" for k, v in entry["style_coefficients"].items())
                out.append(f"{r.get('model')}: {category}: style coefficients {coefs}")
        if r.get("unparsed_games"):
            out.append(f"{r.get('model')}: {r['unparsed_games']} games without a verdict (not counted)")
    return out


def terminal_table(bench: str, results: list[dict], title: str | None = None):
    proxy = any(r.get("proxy") for r in results)
    table = Table(title=(title or TITLES[bench]) + ("  [bold red](PROXY judge)[/]" if proxy else ""), title_justify="left")
    headers, body = rows(bench, results)
    for h in headers:
        table.add_column(h, justify="left" if h == "model" else "right", overflow="fold")
    for row in body:
        table.add_row(*row)
    return table


def markdown_report(bench: str, results: list[dict], title: str | None = None, image: str | None = None) -> str:
    headers, body = rows(bench, results)
    lines = [f"# {title or TITLES[bench]}" + (" (PROXY judge)" if any(r.get("proxy") for r in results) else ""), ""]
    lines += ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    if image:
        lines += ["", f"![{TITLES[bench]} per model]({image})"]
    extra = notes(results)
    if extra:
        lines += [""] + [f"- {n}" for n in extra]
    return "\n".join(lines) + "\n"


def _main_value(bench: str, m: dict) -> tuple[float | None, tuple[float, float] | None, str]:
    """(headline value, (minus, plus) error bar, label) for the plot."""
    if bench == "alpaca":
        lc = m.get("length_controlled_winrate")
        se = m.get("standard_error") or 0.0
        return (lc, None, "LC win rate (%)") if lc is not None else (m.get("win_rate"), (se, se), "win rate (%) ± SE")
    if bench in ("arena", "arena-v2"):
        s = m.get("score")
        bar = (s - m["lower"], m["upper"] - s) if s is not None and m.get("lower") is not None else None
        return s, bar, "score (%) with " + ("90% CI" if bench == "arena-v2" else "95% CI")
    if bench == "mtbench":
        return m.get("overall"), None, "overall score (1-10)"
    return (None if m.get("accuracy") is None else 100 * m["accuracy"]), None, "accuracy (%)"


def _length(bench: str, m: dict):
    return {"alpaca": ("avg length (characters)", m.get("avg_length")),
            "arena": ("avg tokens", m.get("avg_tokens")), "arena-v2": ("avg tokens", m.get("avg_tokens"))}.get(bench, (None, None))


def plot_png(bench: str, results: list[dict]) -> bytes:
    """Bar charts: the headline metric (with its error bar where there is one) and the answer length."""
    names = [r.get("model", "?") for r in results]
    values = [_main_value(bench, r) for r in results]
    length_label = _length(bench, results[0])[0]
    panels = 2 if length_label else 1
    fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels + 1, 3.6), squeeze=False)
    ax = axes[0][0]
    heights = [v if v is not None else 0.0 for v, _, _ in values]
    errs = [[b[0] if b else 0 for _, b, _ in values], [b[1] if b else 0 for _, b, _ in values]]
    ax.bar(names, heights, yerr=errs if any(any(e) for e in errs) else None, capsize=4, color="#4C72B0")
    ax.set_ylabel(values[0][2])
    ax.set_title(TITLES[bench] + (" (PROXY judge)" if any(r.get("proxy") for r in results) else ""))
    if panels == 2:
        lens = [_length(bench, r)[1] or 0 for r in results]
        axes[0][1].bar(names, lens, color="#DD8452")
        axes[0][1].set_ylabel(length_label)
        axes[0][1].set_title("answer length")
    for a in axes[0]:
        a.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def html_report(bench: str, results: list[dict], png: bytes, title: str | None = None) -> str:
    headers, body = rows(bench, results)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes(results))
    heading = html.escape((title or TITLES[bench]) + (" (PROXY judge)" if any(r.get("proxy") for r in results) else ""))
    image = base64.b64encode(png).decode()
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{heading}</title><style>"
            "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}td:first-child,th:first-child{text-align:left}"
            f"</style></head><body><h1>{heading}</h1><table><tr>{head}</tr>{trs}</table>"
            f"<p><img alt='plot' src='data:image/png;base64,{image}'></p><ul>{items}</ul></body></html>\n")


def write_comparison(folder: Path, bench: str, results: list[dict]) -> dict[str, Path]:
    """``<bench>-compare.{md,html,png}`` in ``folder`` (atomic writes); returns the paths."""
    png = plot_png(bench, results)
    paths = {kind: folder / f"{bench}-compare.{kind}" for kind in ("md", "html", "png")}
    with atomic_path(paths["png"]) as tmp:
        tmp.write_bytes(png)
    atomic_write_text(paths["md"], markdown_report(bench, results, f"{TITLES[bench]}: comparison", paths["png"].name))
    atomic_write_text(paths["html"], html_report(bench, results, png, f"{TITLES[bench]}: comparison"))
    return paths
