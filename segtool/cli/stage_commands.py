"""`segtool <stage>`: one command per stage of the registry, registered on the root app by app.py.

Every stage command is the same: the shared options -> config -> the stage's runner -> the report.
"""

from __future__ import annotations

from segtool.cli.options import StageOptions, stage_command
from segtool.cli.output import report_stage

HELP = {
    "segment": """Compute pi_SFT next-token entropies and segment every chosen/rejected response (METHOD §2).

Writes a Parquet artifact (row_id, side, prompt_token_ids, response_token_ids, entropy,
segment_ends) to the run directory. Strategies: entropy (c_ent), token, bandit, ngram (n), punct,
sat (sat_model; pip install 'segtool\\[sat]'), adaptive.
""",
    "train-rm": """Train the segment-level reward model (METHOD §3) on the run directory's segments.

Backbone from pi_SFT + a bias-free value head; read-out end/differential; aggregation
avg/sum/min/last/attention; Bradley-Terry loss. Runs `segment` first when it is missing.
Baselines are configurations: bandit (segment.strategy=bandit), token (token), sentence (punct or sat).
""",
    "fit-normalizer": """Fit the location-aware reward normaliser (METHOD §4) for the run directory's reward model.

Mean(p), Std(p) against log p (Huber by default) from segment rewards of held-out pairs;
writes coefficients, bin table, diagnostics, a PNG plot and an HTML report. Ablations:
normalizer.kind = global, last or none.
""",
    "ppo": """PPO with dense segment rewards (METHOD §5) from the run directory's reward model and normaliser.

Per iteration: sample, one pi_SFT pass for KL log-probs and segmenting entropies, RM segment
rewards, location-aware normalisation, interpolation, KL penalty, GAE, clipped policy/value
updates. Modes (ppo.reward_mode): segment, token, bandit, bandit-as-segment, segment-as-bandit.
ppo.reward_source = dpo (RTO) rewards every token with beta log pi_DPO/pi_SFT of this config's DPO
policy (trained first); ppo.forking_ratio keeps only the highest-entropy tokens in the policy loss.
Writes per-iteration rollouts, checkpoints (--resume), the policy in Hugging Face layout,
metrics and held-out reward before/after. Runs the earlier stages first when missing.
""",
    "dpo": """Train the policy with DPO (METHOD §6), or ADPO with dpo.mask = adaptive (METHOD §7).

ADPO sums log-probs over chosen tokens in good and rejected tokens in bad adaptive segments
(segment.baseline, delta, adaptive_source). Trains the reward model first when missing and
reports the held-out reward of pi_SFT and of the trained policy.
""",
    "rs": """Rejection sampling (METHOD §6): k samples per prompt, keep the reward model's best, train by
NLL + beta KL to pi_SFT; ARS with rs.mask = adaptive trains only the kept sample's good-segment
tokens (METHOD §7). Reports the held-out reward before and after.
""",
}


def register(app, names) -> None:
    """Add the command of each stage in ``names`` to ``app``, in that order."""
    for name in names:
        app.command(name)(_command(name))


def _command(name: str):
    def command(opts: StageOptions):
        from segtool.pipeline.registry import run_stage

        result = run_stage(name, opts.load(), resume=opts.resume, force=opts.force, quiet=opts.json_)
        report_stage(result, opts.json_)

    command.__name__ = command.__qualname__ = name.replace("-", "_")
    command.__doc__ = HELP[name]
    return stage_command(command)
