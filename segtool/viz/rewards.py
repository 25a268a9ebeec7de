"""A response coloured by segment reward (the paper's Fig. 2), in the terminal and as HTML; two
reward models side by side (e.g. segment vs token) on the same text."""

from __future__ import annotations

import html as html_lib
from pathlib import Path

import numpy as np
from rich.columns import Columns
from rich.panel import Panel
from rich.text import Text

from segtool.artifacts.files import atomic_write_text
from segtool.console import STDOUT, emit_json
from segtool.errors import InputError
from segtool.inputs.rows import read_pairs
from segtool.models import rm_scoring
from segtool.viz.segments import split_text


def colour(r: float, scale: float) -> tuple[int, int, int]:
    """White at 0, towards green for positive and red for negative rewards (|r| / scale in [0, 1])."""
    t = min(abs(r) / scale, 1.0) if scale > 0 else 0.0
    target = (64, 190, 90) if r >= 0 else (225, 70, 60)
    return tuple(round(255 + (c - 255) * t) for c in target)


def rm_label(meta: dict) -> str:
    """How a reward model segments and scores: strategy (with c_ent) · read-out · aggregation."""
    strategy = f"{meta['strategy']}" + (f" c_ent={meta['c_ent']:g}" if meta["strategy"] == "entropy" else "")
    return f"{strategy} · {meta['readout']} · {meta['aggregation']}"


def rendered(setup, example) -> dict:
    r = rm_scoring.segment_rewards_of(setup, example)
    ids = np.concatenate([example.prompt, example.response]).tolist()[len(example.prompt):]
    pieces = split_text(setup.encoder.tokenizer, ids, example.ends.tolist())
    return {"rm": str(setup.folder), "label": rm_label(setup.meta),
            "segments": pieces[: len(r)], "rewards": [float(x) for x in r], "tail": "".join(pieces[len(r):])}


def rewards_report(cfg, row: int, side: str, rm_dirs: list[str | None], html_path: Path | None, json_out: bool) -> None:
    pairs = [p for p in read_pairs(cfg.data.path, name=cfg.data.name, split=cfg.data.split, fmt=cfg.data.format,
                                   max_rows=row + 1, skip_invalid=cfg.data.skip_invalid).pairs if p.row_id == row]
    if not pairs:
        raise InputError(f"{cfg.data.path}: no valid row {row}", "pick another --row")
    views = []
    for rm in rm_dirs:
        folder, _ = rm_scoring.resolve_rm_folder(cfg, rm)
        setup = rm_scoring.load_setup(cfg, folder)
        chosen, rejected = rm_scoring.segment_pairs(setup, pairs)[0]
        views.append(rendered(setup, chosen if side == "chosen" else rejected))
    if html_path is not None:
        write_html(html_path, f"row {row} · {side}", views)
    if json_out:
        emit_json({"row_id": row, "side": side, "views": views, "html": str(html_path) if html_path else None})
        return
    panels = []
    for v in views:
        scale = max((abs(x) for x in v["rewards"]), default=1.0)
        text = Text()
        for piece, r in zip(v["segments"], v["rewards"]):
            text.append(piece, style="black on rgb({},{},{})".format(*colour(r, scale)))
        text.append(v["tail"], style="dim")
        panels.append(Panel(text, title=v["label"], subtitle=f"r from {min(v['rewards']):+.3f} to {max(v['rewards']):+.3f}"))
    STDOUT.print(Columns(panels, equal=True) if len(panels) > 1 else panels[0])
    if html_path is not None:
        STDOUT.print(f"HTML written to {html_path}")


def write_html(path: Path, title: str, views: list[dict]) -> None:
    cells = []
    for v in views:
        scale = max((abs(x) for x in v["rewards"]), default=1.0)
        spans = "".join(
            f'<span style="background:rgb{colour(r, scale)}" title="segment {k}: r = {r:+.4f}">{html_lib.escape(p)}</span>'
            for k, (p, r) in enumerate(zip(v["segments"], v["rewards"]))
        )
        cells.append(f"<td><h2>{html_lib.escape(v['label'])}</h2><div class=\"resp\">{spans}"
                     f"<span class=\"tail\">{html_lib.escape(v['tail'])}</span></div></td>")
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html_lib.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
td {{ vertical-align: top; width: {100 // max(len(views), 1)}%; padding: 0 1rem; }}
.resp {{ white-space: pre-wrap; line-height: 1.9; font-family: ui-monospace, monospace; }}
.tail {{ color: #999; }}
</style></head><body>
<h1>{html_lib.escape(title)}</h1>
<table><tr>{"".join(cells)}</tr></table>
<p>Green: positive segment reward, red: negative, scaled per response; hover a segment for its value.</p>
</body></html>
"""
    atomic_write_text(path, page)
