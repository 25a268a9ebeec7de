"""The flat key layout of config version 1, before the optim / actor / critic / sampling tables.

Three uses, one table:
* its keys stay accepted for one release, in presets, config files and ``--set`` (with a note), and
  for good in the saved configs of older run directories (manifest.json, read without a note);
* identity views are written in it, so that artifact ids did not change with the layout: a run
  directory made before keeps its artifacts complete and resumable.
"""

from __future__ import annotations

from typing import Any

OPTIM_V1 = ("lr", "min_lr_ratio", "warmup_ratio", "weight_decay", "grad_clip")  # dpo, rs (betas were fixed)
SAMPLING = ("max_new_tokens", "temperature", "top_p")


def _into(table: str, keys) -> dict[str, tuple[str, ...]]:
    return {key: (f"{table}.{key}",) for key in keys}


# section -> old flat key -> the keys it sets now
ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "train_rm": _into("optim", (*OPTIM_V1, "adam_beta1", "adam_beta2")),
    "dpo": {**_into("optim", OPTIM_V1), **_into("sampling", SAMPLING)},
    "rs": {**_into("optim", OPTIM_V1), **_into("sampling", SAMPLING)},
    "ppo": {
        "actor_lr": ("actor.lr",),
        "critic_lr": ("critic.lr",),
        **{key: (f"actor.{key}", f"critic.{key}") for key in ("warmup_ratio", "min_lr_ratio", "grad_clip")},
        **_into("sampling", SAMPLING),
    },
}

# Knobs that version 1 did not have (or that came later), at the value its code used: there they stay
# out of the identity, so artifacts made before keep their ids.
_FIXED_OPTIM = {"adam_beta1": 0.9, "adam_beta2": 0.95}
FIXED_BEFORE: dict[str, dict[str, Any]] = {
    "dpo": {f"optim.{key}": value for key, value in _FIXED_OPTIM.items()},
    "rs": {**{f"optim.{key}": value for key, value in _FIXED_OPTIM.items()}, "generator": "hf"},
    "ppo": {**{f"{model}.{key}": value for model in ("actor", "critic")
               for key, value in {**_FIXED_OPTIM, "weight_decay": 0.0}.items()},
            "reward_source": "rm", "dpo_reward_scale": 0.0, "dpo_reward_clip": 0.0, "dpo_rm_weight": 0.0,
            "forking_ratio": 0.0, "generator": "hf"},
}


def new_keys(section: str, key: str) -> tuple[str, ...] | None:
    """The keys an old flat key sets now, or None when ``key`` is not an old key."""
    return ALIASES.get(section, {}).get(key)


def identity_names(section: str, values: dict[str, Any]) -> dict[str, Any]:
    """A section's identity knobs (dotted key -> value) under their version-1 names.

    An old key that set several knobs (ppo.warmup_ratio) stands for them while they agree; where
    they differ, or for a knob version 1 did not have (at a value other than the one it used), the
    knobs keep their dotted keys, which no version-1 config could produce."""
    fixed = FIXED_BEFORE.get(section, {})
    out = {key: value for key, value in values.items() if "." not in key and (key not in fixed or fixed[key] != value)}
    nested = {key: value for key, value in values.items() if "." in key}
    for old, targets in ALIASES.get(section, {}).items():
        if all(t in nested for t in targets) and all(nested[t] == nested[targets[0]] for t in targets):
            out[old] = nested[targets[0]]
            for t in targets:
                del nested[t]
    out.update({key: value for key, value in nested.items() if key not in fixed or fixed[key] != value})
    return out
