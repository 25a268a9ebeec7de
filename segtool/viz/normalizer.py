"""The normaliser plot (PNG) and HTML report: per-bin means and stds, the fitted curves, the floor."""

from __future__ import annotations

import base64
import html as html_lib
from pathlib import Path

import matplotlib
import numpy as np

from segtool.artifacts.files import atomic_path, atomic_write_text

matplotlib.use("Agg")  # files only, no display: the backend is chosen before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402


def write_plot(path: Path, bins: dict, norm, title: str) -> None:
    fig, (ax_m, ax_s) = plt.subplots(1, 2, figsize=(10, 4))
    size = 10 + 40 * bins["count"] / bins["count"].max()
    grid = np.linspace(max(bins["p"].min(), 1e-3), 1.0, 200)
    ax_m.scatter(bins["p"], bins["mean"], s=size, alpha=0.6, label="per-bin mean")
    ax_s.scatter(bins["p"], bins["std"], s=size, alpha=0.6, label="per-bin std", color="tab:orange")
    if norm.kind == "location":
        ax_m.plot(grid, norm.w_mu * np.log(grid) + norm.b_mu, color="black", label=f"Mean(p) = {norm.w_mu:.3g} log p + {norm.b_mu:.3g}")
        ax_s.plot(grid, norm.w_sigma * np.log(grid) + norm.b_sigma, color="black", label=f"Std(p) = {norm.w_sigma:.3g} log p + {norm.b_sigma:.3g}")
        ax_s.axhline(norm.floor, color="red", linestyle="--", label=f"floor {norm.floor:.3g}")
    elif norm.kind in ("global", "last"):
        ax_m.axhline(norm.mean, color="black", label=f"{norm.kind} mean {norm.mean:.3g}")
        ax_s.axhline(norm.std, color="black", label=f"{norm.kind} std {norm.std:.3g}")
    for ax, name in ((ax_m, "segment reward mean"), (ax_s, "segment reward std")):
        ax.set_xscale("log")
        ax.set_xlabel("location p = (k + 1) / K")
        ax.set_ylabel(name)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def write_report(path: Path, png: Path, norm, diag: dict, bins: dict, title: str) -> None:
    image = base64.b64encode(png.read_bytes()).decode()
    coeffs = "".join(f"<tr><td>{k}</td><td>{v:.6g}</td></tr>" if isinstance(v, float) else f"<tr><td>{k}</td><td>{v}</td></tr>"
                     for k, v in norm.to_dict().items())
    diags = "".join(f"<tr><td>{k}</td><td>{html_lib.escape(str(v))}</td></tr>" for k, v in diag.items())
    rows = "".join(f"<tr><td>{p:.3f}</td><td>{c}</td><td>{m:.4f}</td><td>{s:.4f}</td></tr>"
                   for p, c, m, s in zip(bins["p"], bins["count"], bins["mean"], bins["std"]))
    atomic_write_text(path, f"""<!doctype html><html><head><meta charset="utf-8"><title>{html_lib.escape(title)}</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 2rem; }} table {{ border-collapse: collapse; margin: 1rem 0; }}
td {{ border: 1px solid #ddd; padding: 2px 8px; }}</style></head><body>
<h1>{html_lib.escape(title)}</h1><img src="data:image/png;base64,{image}" alt="normaliser plot">
<h2>Normaliser</h2><table>{coeffs}</table><h2>Diagnostics</h2><table>{diags}</table>
<h2>Bins</h2><table><tr><td>p</td><td>count</td><td>mean</td><td>std</td></tr>{rows}</table></body></html>
""")
