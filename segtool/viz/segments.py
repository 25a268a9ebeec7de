"""Segments in the terminal (alternating colours) and as a self-contained HTML page; the
segment-length table for several entropy cutoffs (the paper's Fig. 3a) from stored entropies.
Adaptive segments (METHOD §7) are coloured by state instead: good green, bad red, and tokens inside
the neutral band (which keep the state before them) in a paler shade of their segment's colour."""

from __future__ import annotations

import html as html_lib
from pathlib import Path

import numpy as np
from rich.table import Table
from rich.text import Text

from segtool.artifacts.files import atomic_write_text
from segtool.artifacts.manifest import RunDir
from segtool.artifacts.tables import load_segments
from segtool.console import STDOUT, emit_json
from segtool.core.boundaries import FlatLayout, boundary_mask, mask_to_ends, segment_lengths_flat
from segtool.errors import ArtifactError, InputError
from segtool.models.loading import load_tokenizer, resolve_model_source

COLOURS = ("#f9e2af", "#a6e3a1", "#89dceb", "#f5c2e7")  # cycled: neighbours always differ
# Adaptive: (state, in the neutral band) -> colour; pivots (state flips) are bold.
STATE_COLOURS = {(1, False): "#7fd17a", (1, True): "#d5f0d2", (-1, False): "#f08a9b", (-1, True): "#f9d5dc"}
STATE_NAMES = {1: "good", -1: "bad"}


def _tokenizer_for(cfg, record):
    """The artifact's tokenizer, from the configured model when it is the same model."""
    source = resolve_model_source(cfg.model)
    recorded = {k: v for k, v in record["inputs"]["model"].items() if k in ("kind", "sha256", "id", "revision")}
    if source.fingerprint() != recorded:
        raise ArtifactError(
            "the configured model is not the one this segment artifact was made with",
            f"pass the original model with --set model.path=... (recorded source: {record['inputs']['model'].get('source')})",
        )
    return load_tokenizer(source, cfg.model)


def split_text(tokenizer, ids: list[int], ends: list[int]) -> list[str]:
    """Text of each segment plus the tail after the last end (EOS), decoding growing prefixes so
    that word-initial spaces survive for every tokenizer family."""
    pieces, prev_text = [], ""
    for stop in [e + 1 for e in ends] + ([len(ids)] if not ends or ends[-1] + 1 < len(ids) else []):
        text = tokenizer.decode(ids[:stop], skip_special_tokens=False)
        pieces.append(text[len(prev_text):])
        prev_text = text
    return pieces


def _rows(table, row: int, side: str):
    ids = table["row_id"].to_numpy()
    sides = table["side"].to_pylist()
    picked = [i for i in np.flatnonzero(ids == row) if side == "both" or sides[i] == side]
    if not picked:
        raise InputError(f"no row_id {row} (side {side}) in the segment artifact", f"row ids run from {ids.min()} to {ids.max()}")
    return picked


def segments_report(cfg, row: int, side: str, html_path: Path | None, json_out: bool) -> None:
    rundir = RunDir(cfg.run.workdir)
    record, table = load_segments(rundir)
    tokenizer = _tokenizer_for(cfg, record)
    shown = []
    for i in _rows(table, row, side):
        prompt = tokenizer.decode(table["prompt_token_ids"][i].as_py(), skip_special_tokens=False)
        ids = table["response_token_ids"][i].as_py()
        ends = table["segment_ends"][i].as_py()
        pieces = split_text(tokenizer, ids, ends)
        shown.append({"side": table["side"][i].as_py(), "prompt": prompt, "segments": pieces[: len(ends)],
                      "tail": "".join(pieces[len(ends):]), "ends": ends})
        if "state" in table.column_names:
            shown[-1].update(adaptive_tokens(tokenizer, table, i))
    seg_cfg = record["config"]["segment"]
    params = (f"adaptive ({seg_cfg['adaptive_source']}, baseline {seg_cfg['baseline']}, delta {seg_cfg['delta']})"
              if seg_cfg["strategy"] == "adaptive" else f"{seg_cfg['strategy']} · c_ent {seg_cfg['c_ent']}")
    title = f"row {row} · strategy {params} · artifact {record['id'][:12]}"
    if html_path is not None:
        write_html(html_path, title, shown)
    if json_out:
        emit_json({"row_id": row, "artifact_id": record["id"], "responses": shown, "html": str(html_path) if html_path else None})
        return
    STDOUT.print(f"[bold]{title}[/]")
    STDOUT.print(Text("prompt: ", style="bold") + Text(shown[0]["prompt"], style="dim"))
    if "tokens" in shown[0]:
        print_adaptive(shown)
    for item in ([] if "tokens" in shown[0] else shown):
        text = Text(f"\n{item['side']} ({len(item['segments'])} segments):\n", style="bold")
        for k, piece in enumerate(item["segments"]):
            text.append(piece, style=f"black on {COLOURS[k % len(COLOURS)]}")
        text.append(item["tail"], style="dim")
        STDOUT.print(text)
    if html_path is not None:
        STDOUT.print(f"\nHTML written to {html_path}")


def adaptive_tokens(tokenizer, table, i: int) -> dict:
    """Per-token text, state, band, reward and baseline of row ``i`` of an adaptive table."""
    ids = table["response_token_ids"][i].as_py()
    texts = split_text(tokenizer, ids, list(range(len(ids))))
    return {
        "tokens": texts[: len(ids)],
        "state": table["state"][i].as_py(),
        "band": table["band"][i].as_py(),
        "reward": [round(v, 4) for v in table["token_reward"][i].as_py()],
        "baseline": [round(v, 4) for v in table["baseline"][i].as_py()],
        "pivots": table["pivots"][i].as_py(),
    }


def _token_style(item: dict, j: int) -> str:
    return STATE_COLOURS[(item["state"][j], item["band"][j] == 0)]


def print_adaptive(shown: list[dict]) -> None:
    legend = Text("good", style=f"black on {STATE_COLOURS[(1, False)]}") + Text(" ") + Text(
        "bad", style=f"black on {STATE_COLOURS[(-1, False)]}") + Text(" ") + Text(
        "neutral (in good)", style=f"black on {STATE_COLOURS[(1, True)]}") + Text(" ") + Text(
        "neutral (in bad)", style=f"black on {STATE_COLOURS[(-1, True)]}") + Text("  bold: pivot")
    STDOUT.print(legend)
    for item in shown:
        good = sum(1 for s in item["state"] if s > 0)
        text = Text(f"\n{item['side']} ({len(item['segments'])} segments, {len(item['pivots'])} pivots, "
                    f"{good}/{len(item['state'])} tokens good):\n", style="bold")
        pivots = set(item["pivots"])
        for j, piece in enumerate(item["tokens"]):
            text.append(piece, style=f"{'bold ' if j in pivots else ''}black on {_token_style(item, j)}")
        STDOUT.print(text)


def _adaptive_spans(item: dict) -> str:
    pivots = set(item["pivots"])
    return "".join(
        f'<span class="tok{" pivot" if j in pivots else ""}" style="background:{_token_style(item, j)}" '
        f'title="{STATE_NAMES[item["state"][j]]}{" (neutral band)" if item["band"][j] == 0 else ""}: '
        f'r = {item["reward"][j]:.4f}, b = {item["baseline"][j]:.4f}">{html_lib.escape(piece)}</span>'
        for j, piece in enumerate(item["tokens"])
    )


def write_html(path: Path, title: str, shown: list[dict]) -> None:
    blocks = []
    for item in shown:
        if "tokens" in item:
            blocks.append(f"<h2>{item['side']} · {len(item['segments'])} segments · {len(item['pivots'])} pivots</h2>"
                          f"<div class=\"resp\">{_adaptive_spans(item)}</div>")
            continue
        spans = "".join(
            f'<span class="seg" style="background:{COLOURS[k % len(COLOURS)]}" title="segment {k}, ends at {end}">'
            f"{html_lib.escape(piece)}</span>"
            for k, (piece, end) in enumerate(zip(item["segments"], item["ends"]))
        )
        tail = f'<span class="tail">{html_lib.escape(item["tail"])}</span>'
        blocks.append(f"<h2>{item['side']} · {len(item['segments'])} segments</h2><div class=\"resp\">{spans}{tail}</div>")
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html_lib.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; color: #222; }}
.prompt {{ white-space: pre-wrap; color: #666; border-left: 3px solid #ccc; padding-left: 1rem; }}
.resp {{ white-space: pre-wrap; line-height: 1.9; font-family: ui-monospace, monospace; }}
.seg {{ border-radius: 3px; padding: 1px 0; }}
.tail {{ color: #999; }}
.pivot {{ font-weight: bold; border-left: 2px solid #333; }}
</style></head><body>
<h1>{html_lib.escape(title)}</h1>
<div class="prompt">{html_lib.escape(shown[0]["prompt"])}</div>
{"".join(blocks)}
<p class="tail">{LEGEND_ADAPTIVE if "tokens" in shown[0] else LEGEND}</p>
</body></html>
"""
    atomic_write_text(path, page)


LEGEND = "Alternating colours mark segments; hover a segment for its index. Grey: tokens after the last segment end (EOS)."
LEGEND_ADAPTIVE = ("Adaptive segments: green good, red bad; pale tokens lie in the neutral band |r - b| &lt;= delta and keep "
                   "the state before them; bold with a bar: pivot tokens (the state flips). Hover a token for r and b.")


def cutoff_table(entropy_lists, eos_in_last_segment: bool, cutoffs: list[float]) -> list[dict]:
    """Segment statistics for each c_ent, recomputed from stored entropies (vectorised)."""
    lengths = entropy_lists.value_lengths().to_numpy().astype(np.int64)
    entropy = entropy_lists.flatten().to_numpy()
    layout = FlatLayout.from_lengths(lengths)
    out = []
    for c in cutoffs:
        mask = boundary_mask("entropy", layout, entropy=entropy, c_ent=c, eos_in_last_segment=eos_in_last_segment)
        ends, counts = mask_to_ends(mask, layout)
        seg = segment_lengths_flat(ends, counts)
        out.append({"c_ent": c, "segments_per_response": float(seg.size / lengths.size),
                    "mean_tokens": float(seg.mean()), "median_tokens": float(np.median(seg)),
                    "segments": int(seg.size)})
    return out


def words_per_token(tokenizer, table, eos_in_last_segment: bool, sample: int = 2000) -> float:
    """Whitespace words per segmented token, measured on up to ``sample`` responses."""
    col = table["response_token_ids"]
    words = tokens = 0
    for i in range(min(sample, table.num_rows)):
        ids = col[i].as_py()
        ids = ids if eos_in_last_segment else ids[:-1]
        words += len(tokenizer.decode(ids, skip_special_tokens=True).split())
        tokens += len(ids)
    return words / max(tokens, 1)


def cutoff_report(cfg, cutoffs: list[float], json_out: bool) -> None:
    if not cutoffs:
        raise InputError("--cutoffs is empty", "give values such as --cutoffs 1.5,1.75,2,2.25")
    rundir = RunDir(cfg.run.workdir)
    record, table = load_segments(rundir, columns=["response_token_ids", "entropy"])
    eos_in_last = record["config"]["segment"]["eos_in_last_segment"]
    rows = cutoff_table(table["entropy"].combine_chunks(), eos_in_last, cutoffs)
    wpt = words_per_token(_tokenizer_for(cfg, record), table, eos_in_last)
    for r in rows:
        r["mean_words"] = r["mean_tokens"] * wpt
    if json_out:
        emit_json({"artifact_id": record["id"], "words_per_token": wpt, "cutoffs": rows})
        return
    t = Table(title=f"segment length by entropy cutoff ({table.num_rows} responses, artifact {record['id'][:12]})", title_justify="left")
    for col in ("c_ent", "segments/response", "mean tokens", "median tokens", "mean words"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(f"{r['c_ent']:g}", f"{r['segments_per_response']:.1f}", f"{r['mean_tokens']:.2f}",
                  f"{r['median_tokens']:g}", f"{r['mean_words']:.2f}")
    STDOUT.print(t)
    STDOUT.print(f"words per token: {wpt:.3f} (measured on up to 2000 responses)", highlight=False)
