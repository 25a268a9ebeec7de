"""`segtool dpo` and `segtool rs` (issue 7): registered on the root app by app.py."""

from __future__ import annotations

from segtool.cli.options import StageOptions, stage_command
from segtool.cli.output import report_stage


def register(app) -> None:
    """Add the DPO and rejection-sampling stage commands to ``app``."""

    @app.command("dpo")
    @stage_command
    def dpo(opts: StageOptions):
        """Train the policy with DPO (METHOD §6), or ADPO with dpo.mask = adaptive (METHOD §7).

        ADPO sums log-probs over chosen tokens in good and rejected tokens in bad adaptive segments
        (segment.baseline, delta, adaptive_source). Trains the reward model first when missing and
        reports the held-out reward of pi_SFT and of the trained policy.
        """
        from segtool.pipeline import dpo as stage

        cfg = opts.load()
        report_stage(stage.run(cfg, resume=opts.resume, force=opts.force, quiet=opts.json_), opts.json_)

    @app.command("rs")
    @stage_command
    def rs(opts: StageOptions):
        """Rejection sampling (METHOD §6): k samples per prompt, keep the reward model's best, train by
        NLL + beta KL to pi_SFT; ARS with rs.mask = adaptive trains only the kept sample's good-segment
        tokens (METHOD §7). Reports the held-out reward before and after.
        """
        from segtool.pipeline import rs as stage

        cfg = opts.load()
        report_stage(stage.run(cfg, resume=opts.resume, force=opts.force, quiet=opts.json_), opts.json_)
