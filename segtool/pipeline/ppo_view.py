"""PPO's live view: a rich table on stderr refreshed every iteration, plus optional TensorBoard or
Weights & Biases logging (only when asked for, and an error when the package is missing)."""

from __future__ import annotations

from rich import box
from rich.live import Live
from rich.table import Table

from segtool.console import STDERR
from segtool.errors import ConfigError

COLUMNS = (  # (metric key, header, format): fits an 80-column terminal
    ("iteration", "it", "{:d}"),
    ("reward", "reward", "{:+.3f}"),
    ("norm_reward", "norm", "{:+.2f}"),
    ("kl", "KL", "{:.3f}"),
    ("length", "len", "{:.0f}"),
    ("entropy", "ent", "{:.2f}"),
    ("policy_loss", "pg", "{:+.3f}"),
    ("value_loss", "vf", "{:.3f}"),
    ("clip_frac", "clip", "{:.2f}"),
    ("tokens_per_s", "tok/s", "{:.0f}"),
    ("t_generate", "gen", "{:.1f}"),
    ("t_score", "score", "{:.1f}"),
    ("t_train", "train", "{:.1f}"),
)
SHOWN_ROWS = 12


def table(metrics: list[dict], total: int, title: str):
    t = Table(title=f"{title}: iteration {metrics[-1]['iteration'] if metrics else 0} of {total}", title_justify="left",
              box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 0),
              caption="reward: raw RM e(x, y); norm: normalised reward per sample; times in seconds", caption_justify="left")
    for _, header, _ in COLUMNS:
        t.add_column(header, justify="right", no_wrap=True)
    for m in metrics[-SHOWN_ROWS:]:
        t.add_row(*(fmt.format(m[key]) for key, _, fmt in COLUMNS))  # the box draws one space between columns
    return t


class LiveView:
    """Context manager; ``update(metrics)`` after each iteration. Silent when quiet."""

    def __init__(self, quiet: bool, total: int, title: str):
        self.quiet, self.total, self.title, self._live = quiet, total, title, None

    def __enter__(self):
        if not self.quiet:
            self._live = Live(table([], self.total, self.title), console=STDERR, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def update(self, metrics: list[dict]) -> None:
        if self._live is not None:
            self._live.update(table(metrics, self.total, self.title), refresh=True)

    def __exit__(self, *exc):
        if self._live is not None:
            self._live.__exit__(*exc)
        return False


class MetricLogger:
    """Scalars per iteration to TensorBoard or W&B (``log_to``), or nowhere."""

    def __init__(self, log_to: str, folder, run_name: str, config: dict):
        self.kind, self._writer = log_to, None
        if log_to == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError("ppo.log_to = 'tensorboard' but the tensorboard package is not installed",
                                  "pip install tensorboard, or set ppo.log_to=none") from None
            self._writer = SummaryWriter(log_dir=str(folder))
        elif log_to == "wandb":
            try:
                import wandb
            except ImportError:
                raise ConfigError("ppo.log_to = 'wandb' but the wandb package is not installed",
                                  "pip install wandb, or set ppo.log_to=none") from None
            self._writer = wandb.init(project="segtool", name=run_name, config=config, resume="allow", id=run_name)

    def log(self, m: dict) -> None:
        scalars = {k: v for k, v in m.items() if isinstance(v, (int, float)) and k != "iteration"}
        if self.kind == "tensorboard":
            for k, v in scalars.items():
                self._writer.add_scalar(f"ppo/{k}", v, m["iteration"])
            self._writer.flush()
        elif self.kind == "wandb":
            self._writer.log({f"ppo/{k}": v for k, v in scalars.items()}, step=m["iteration"])

    def close(self) -> None:
        if self.kind == "tensorboard":
            self._writer.close()
        elif self.kind == "wandb":
            self._writer.finish()
