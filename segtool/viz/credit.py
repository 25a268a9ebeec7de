"""Reports of `segtool eval credit`: the terminal table, one bar plot per metric (per defect family and
position, with 95% bootstrap intervals), Markdown and HTML pages, credit heatmaps of a few pairs, and
the comparison table of several reward models."""

from __future__ import annotations

import base64
import html as html_lib
import io
import math
from pathlib import Path

import matplotlib
from rich.table import Table

from segtool.artifacts.files import atomic_write_text
from segtool.viz.rewards import colour
from segtool.viz.segments import split_text

matplotlib.use("Agg")  # files only, no display: the backend is chosen before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402

TITLES = {"accuracy": "pairwise accuracy", "auroc": "token AUROC", "pointing": "pointing game", "mass_in_span": "credit mass in span"}
MEANINGS = {
    "accuracy": "e(x, chosen) > e(x, rejected), the RM's own aggregation (as `eval rm`)",
    "auroc": "P(a defect token gets lower credit than a token outside the defect), ties 1/2; 0.5 = chance",
    "pointing": "the lowest-credit segment (or token) overlaps the defect; ties: the share of tied segments that do",
    "mass_in_span": "share of the negative credit, sum max(0, -c), that lies on the defect tokens",
}
CHANCE = {"accuracy": 0.5, "auroc": 0.5}


def _value(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def interval(m: dict) -> str:
    mean, low, high = _value(m.get("mean")), _value(m.get("low")), _value(m.get("high"))
    return "—" if mean is None else f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def groups(summary: dict) -> list[tuple[str, dict]]:
    """(name, metrics) of every reported group: all pairs, each defect family, each position."""
    return [("all", summary["overall"]), *summary["families"].items(),
            *((f"position {p}", g) for p, g in summary["positions"].items())]


HEADERS = ["group", "pairs", "accuracy", "AUROC", "pointing game", "mass in span", "localised"]


def table_rows(summary: dict) -> list[list[str]]:
    return [[name, str(g["pairs"]), *(interval(g[m]) for m in TITLES), str(g["auroc"]["n"])] for name, g in groups(summary)]


def notes(summary: dict) -> list[str]:
    out = [f"{summary['kind']}: {summary['model']} ({summary['label']})", f"credit: {summary['credit_description']}",
           f"intervals: {summary['bootstrap']['level']:.0%} percentile bootstrap over pairs "
           f"({summary['bootstrap']['resamples']} resamples, seed {summary['bootstrap']['seed']}); "
           "localised = pairs whose token AUROC is defined"]
    if summary["span_unseen"]:
        out.append(f"{summary['span_unseen']} pair(s): no scored token covers the defect (it lies beyond the RM's "
                   "max_len, or only in characters the tokenizer drops); accuracy only")
    if summary["skipped_rows"]:
        out.append(f"{summary['skipped_rows']} invalid row(s) skipped (--skip-invalid)")
    return out


def terminal_table(summary: dict):
    table = Table(title=f"credit assignment: {summary['name']} on {summary['data']}", title_justify="left")
    for h in HEADERS:
        table.add_column(h, justify="left" if h == "group" else "right")
    for row in table_rows(summary):
        table.add_row(*row)
    return table


def plot_png(summary: dict, metric: str) -> bytes:
    """Bars of one metric per group (all, families, positions) with their 95% intervals."""
    named = groups(summary)
    means = [_value(g[metric]["mean"]) for _, g in named]
    heights = [m if m is not None else 0.0 for m in means]
    below = [m - _value(g[metric]["low"]) if m is not None else 0.0 for m, (_, g) in zip(means, named)]
    above = [_value(g[metric]["high"]) - m if m is not None else 0.0 for m, (_, g) in zip(means, named)]
    colours = ["#4C72B0" if not name.startswith("position") else "#DD8452" for name, _ in named]
    colours[0] = "#333333"
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(named) + 1.5), 3.6))
    ax.bar([n.replace("position ", "pos. ") for n, _ in named], heights, yerr=[below, above], capsize=4, color=colours)
    if metric in CHANCE:
        ax.axhline(CHANCE[metric], color="grey", linestyle="--", linewidth=1, label="chance")
        ax.legend(fontsize=8)
    for x, m in enumerate(means):
        if m is None:
            ax.text(x, 0.02, "n/a", ha="center", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(TITLES[metric])
    ax.set_title(f"{TITLES[metric]}: {summary['name']}", fontsize=10)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _markdown_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|",
            *("| " + " | ".join(r) + " |" for r in rows)]


def markdown_report(summary: dict, images: dict[str, str]) -> str:
    lines = [f"# Credit assignment: {summary['name']}", "", f"{summary['pairs']} defect pairs from {summary['data']}.", ""]
    lines += _markdown_table(HEADERS, table_rows(summary))
    lines += ["", *(f"- {n}" for n in notes(summary)), "", "## Metrics", ""]
    for metric, name in images.items():
        lines += [f"### {TITLES[metric]}", "", MEANINGS[metric], "", f"![{TITLES[metric]}]({name})", ""]
    lines += ["Credit heatmaps of a few pairs per defect family: heatmaps.html."]
    return "\n".join(lines) + "\n"


STYLE = ("body{font-family:system-ui,sans-serif;margin:2rem;color:#222}table{border-collapse:collapse;margin:1rem 0}"
         "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}")


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html_lib.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html_lib.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_report(summary: dict, plots: dict[str, bytes]) -> str:
    title = html_lib.escape(f"Credit assignment: {summary['name']}")
    items = "".join(f"<li>{html_lib.escape(n)}</li>" for n in notes(summary))
    figures = "".join(f"<h3>{html_lib.escape(TITLES[m])}</h3><p>{html_lib.escape(MEANINGS[m])}</p>"
                      f"<img alt='{m}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>" for m, png in plots.items())
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{STYLE}</style></head><body>"
            f"<h1>{title}</h1><p>{summary['pairs']} defect pairs from {html_lib.escape(str(summary['data']))}.</p>"
            f"{_html_table(HEADERS, table_rows(summary))}<ul>{items}</ul><h2>Metrics</h2>{figures}"
            "<p>Credit heatmaps of a few pairs per defect family: <a href='heatmaps.html'>heatmaps.html</a>.</p></body></html>\n")


def _fmt(x) -> str:
    x = _value(x)
    return "n/a" if x is None else f"{x:.3f}"


def heatmaps_html(summary: dict, shown: list[dict], tokenizer) -> str:
    """Each shown pair's rejected answer, every token coloured by its credit (green positive, red
    negative, scaled per answer) and the gold defect tokens outlined."""
    cells = []
    for p in shown:
        n = len(p["credit"])
        pieces = split_text(tokenizer, p["ids"], list(range(n)))
        scale = max((abs(c) for c in p["credit"]), default=1.0)
        gold = p["gold"]
        spans = "".join(
            f'<span class="{"gold" if g else ""}" style="background:rgb{colour(c, scale)}" title="token {i}: credit {c:+.4f}">'
            f"{html_lib.escape(piece)}</span>" for i, (piece, c, g) in enumerate(zip(pieces, p["credit"], gold)))
        tail = html_lib.escape("".join(pieces[n:]))
        verdict = "chosen preferred" if p["correct"] else "rejected preferred"
        head = (f"{p['defect_type']} · row {p['row_id']} · {p['position']} · e(chosen) {p['e_chosen']:+.3f}, "
                f"e(rejected) {p['e_rejected']:+.3f} ({verdict}) · AUROC {_fmt(p['auroc'])} · pointing {_fmt(p['pointing'])} "
                f"· mass in span {_fmt(p['mass_in_span'])}" + ("" if any(p["gold"]) else " · no scored token covers the defect"))
        cells.append(f"<h3>{html_lib.escape(head)}</h3><div class='resp'>{spans}<span class='tail'>{tail}</span></div>")
    title = html_lib.escape(f"Credit heatmaps: {summary['name']}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{STYLE}"
            ".resp{white-space:pre-wrap;line-height:1.9;font-family:ui-monospace,monospace}.tail{color:#999}"
            ".gold{outline:2px solid #222;text-decoration:underline}</style></head><body>"
            f"<h1>{title}</h1><p>{html_lib.escape(summary['credit_description'])}. Rejected answers; outlined: the gold "
            "defect tokens. Green: positive credit, red: negative, scaled per answer; hover a token for its value.</p>"
            f"{''.join(cells) or '<p>no pairs shown</p>'}</body></html>\n")


# -- several reward models ----------------------------------------------------------------------

COMPARE_HEADERS = ["model", "credit", "group", "pairs", "accuracy", "AUROC", "pointing game", "mass in span"]


def comparison_rows(summaries: list[dict]) -> list[list[str]]:
    """One row per model and defect family (plus all pairs)."""
    rows = []
    for s in summaries:
        for name, g in groups(s):
            if not name.startswith("position"):
                rows.append([s["name"], s["credit"], name, str(g["pairs"]), *(interval(g[m]) for m in TITLES)])
    return rows


def comparison_table(summaries: list[dict]):
    table = Table(title=f"credit assignment: {len(summaries)} models on {summaries[0]['data']}", title_justify="left")
    for h in COMPARE_HEADERS:
        table.add_column(h, justify="left" if h in ("model", "credit", "group") else "right", overflow="fold")
    for row in comparison_rows(summaries):
        table.add_row(*row)
    return table


def write_comparison(folder: Path, summaries: list[dict]) -> dict[str, Path]:
    """credit-compare.md and credit-compare.html in ``folder``; returns their paths."""
    rows = comparison_rows(summaries)
    labels = [f"{s['name']}: {s['kind']} {s['model']} ({s['label']}); credit: {s['credit_description']}" for s in summaries]
    paths = {kind: folder / f"credit-compare.{kind}" for kind in ("md", "html")}
    atomic_write_text(paths["md"], "\n".join(["# Credit assignment: comparison", "", *_markdown_table(COMPARE_HEADERS, rows),
                                              "", *(f"- {x}" for x in labels)]) + "\n")
    items = "".join(f"<li>{html_lib.escape(x)}</li>" for x in labels)
    atomic_write_text(paths["html"], f"<!doctype html><html><head><meta charset='utf-8'><title>Credit assignment: comparison"
                                     f"</title><style>{STYLE}</style></head><body><h1>Credit assignment: comparison</h1>"
                                     f"{_html_table(COMPARE_HEADERS, rows)}<ul>{items}</ul></body></html>\n")
    return paths
