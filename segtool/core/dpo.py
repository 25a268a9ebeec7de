"""DPO and its adaptive-mask variant ADPO (METHOD §6–7; arXiv 2305.18290, 2411.00809 eq. 10).

Sequence log-probabilities are sums of token log-probs over the response. ADPO multiplies each
token's log-prob by the loss mask M before summing (policy and reference alike), so masked tokens
leave both the implicit reward and the gradient; an all-ones mask is plain DPO.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_sums(token_logp: torch.Tensor, rows: torch.Tensor, num_rows: int,
                weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sequence sums of flat token log-probs: [N] values, [N] row of each, [N] optional 0/1
    mask -> [num_rows] float32."""
    x = token_logp.float() if weights is None else token_logp.float() * weights.float()
    return torch.zeros(num_rows, dtype=torch.float32, device=x.device).index_add(0, rows, x)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float, label_smoothing: float = 0.0) -> dict:
    """Per-pair DPO loss and its diagnostics; inputs are [P] sequence log-probs (masked or not).

    h = (log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l));
    loss = -(1 - eps) log sigma(beta h) - eps log sigma(-beta h)   (eps: label smoothing, the
    conservative DPO of Mitchell 2023; eps = 0 is the paper's eq. 6).
    Returns loss [P], chosen/rejected implicit rewards beta (log pi - log pi_ref) [P], and
    accuracy [P] (chosen reward > rejected reward).
    """
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    chosen = beta * (policy_chosen.float() - ref_chosen.float())
    rejected = beta * (policy_rejected.float() - ref_rejected.float())
    logits = chosen - rejected
    loss = -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)
    return {"loss": loss, "chosen_reward": chosen.detach(), "rejected_reward": rejected.detach(),
            "accuracy": (logits > 0).float().detach()}
