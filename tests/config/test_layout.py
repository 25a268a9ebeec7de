"""The config layout of version 2: shared optim / sampling tables with each section's defaults, the
flat keys of version 1 read as aliases (with a note) and in saved configs (silently), and identity
views that did not change with the layout."""

from __future__ import annotations

import subprocess
import sys

import pytest

from segtool.artifacts.files import stable_hash
from segtool.config import legacy, loader
from segtool.config.loader import config_from_dict, config_to_dict, identity_view, load_config
from segtool.config.schema import CONFIG_VERSION, Config, OptimConfig, SamplingConfig
from segtool.errors import ConfigError

OLD_KEYS = [(section, old, new) for section, table in legacy.ALIASES.items() for old, new in table.items()]


@pytest.fixture(autouse=True)
def fresh_notes(monkeypatch):
    monkeypatch.setattr(loader, "NOTED", set())


def test_each_section_keeps_its_own_defaults():
    cfg = Config()
    assert (cfg.train_rm.optim.lr, cfg.dpo.optim.lr, cfg.rs.optim.lr) == (1e-6, 5e-7, 1e-6)
    assert (cfg.ppo.actor.lr, cfg.ppo.critic.lr) == (5e-7, 9e-6)
    for optim in (cfg.train_rm.optim, cfg.dpo.optim, cfg.rs.optim, cfg.ppo.actor, cfg.ppo.critic):
        assert optim == OptimConfig(lr=optim.lr)  # betas 0.9 / 0.95, warm-up 0.03, decay to 0.1, clip 1, no decay
        assert (optim.adam_beta1, optim.adam_beta2) == (0.9, 0.95)
    assert cfg.ppo.sampling == cfg.rs.sampling == cfg.dpo.sampling == SamplingConfig(1024, 1.0, 1.0)
    # setting one knob of a table keeps the section's other defaults, not the table class's
    cfg, _ = load_config(overrides=["dpo.optim.warmup_ratio=0.1"])
    assert (cfg.dpo.optim.lr, cfg.dpo.optim.warmup_ratio) == (5e-7, 0.1)


def test_new_keys_as_tables_dotted_keys_and_set(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("[train_rm.optim]\nlr = 2e-5\n[ppo]\nactor.lr = 1e-6\nsampling.top_p = 0.9\n")
    cfg, _ = load_config(config_file=path, overrides=["ppo.critic.warmup_ratio=0.2", "rs.sampling.max_new_tokens=16"])
    assert cfg.train_rm.optim.lr == 2e-5
    assert (cfg.ppo.actor.lr, cfg.ppo.sampling.top_p, cfg.ppo.critic.warmup_ratio) == (1e-6, 0.9, 0.2)
    assert cfg.ppo.actor.warmup_ratio == 0.03
    assert cfg.rs.sampling.max_new_tokens == 16


@pytest.mark.parametrize("section, old, new", OLD_KEYS, ids=[f"{s}.{o}" for s, o, _ in OLD_KEYS])
def test_every_old_key_sets_its_new_keys(section, old, new, capsys):
    value = 48 if old == "max_new_tokens" else 0.5
    cfg, _ = load_config(overrides=[f"{section}.{old}={value}"])
    for key in new:
        table, name = key.split(".")
        assert getattr(getattr(getattr(cfg, section), table), name) == value
    note = f"note: {section}.{old} is an old key, read this release only: write {' and '.join(f'{section}.{k}' for k in new)}"
    assert capsys.readouterr().err.splitlines() == [note]


def test_an_old_key_sets_actor_and_critic_and_is_noted_once(capsys):
    cfg, _ = load_config(overrides=["ppo.warmup_ratio=0.1"])
    assert cfg.ppo.actor.warmup_ratio == cfg.ppo.critic.warmup_ratio == 0.1
    load_config(overrides=["ppo.warmup_ratio=0.2"])
    assert capsys.readouterr().err.count("note: ppo.warmup_ratio") == 1


def test_an_old_key_in_a_file_names_the_file_in_range_errors(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text("[ppo]\ntop_p = 0\n")
    with pytest.raises(ConfigError) as exc:
        load_config(config_file=path)
    assert exc.value.message == f"{path}: ppo.top_p = 0.0 is out of range: it must be in (0, 1]"


def test_an_old_key_and_its_new_key_together_are_refused(tmp_path):
    path = tmp_path / "both.toml"
    path.write_text("[ppo]\nactor_lr = 1e-6\n[ppo.actor]\nlr = 2e-6\n")
    with pytest.raises(ConfigError) as exc:
        load_config(config_file=path)
    assert exc.value.message == f"{path}: ppo.actor_lr and ppo.actor.lr are both set"
    assert exc.value.hint == "ppo.actor_lr is the old key for ppo.actor.lr: write only the new key"
    with pytest.raises(ConfigError) as exc:
        load_config(overrides=["ppo.critic.warmup_ratio=0.1", "ppo.warmup_ratio=0.2"])
    assert exc.value.message == "--set ppo.warmup_ratio=0.2: ppo.warmup_ratio and ppo.critic.warmup_ratio are both set"
    assert "ppo.actor.warmup_ratio and ppo.critic.warmup_ratio" in exc.value.hint


def test_an_old_key_overrides_a_new_key_of_an_earlier_layer(tmp_path):
    (tmp_path / "base.toml").write_text('[train_rm]\noptim.lr = 2e-5\n')
    (tmp_path / "child.toml").write_text('extends = "base.toml"\n[train_rm]\nlr = 3e-5\n')
    cfg, _ = load_config(config_file=tmp_path / "child.toml")
    assert cfg.train_rm.optim.lr == 3e-5
    assert load_config(preset="tiny", overrides=["train_rm.lr=1e-3"])[0].train_rm.optim.lr == 1e-3  # preset: new key


def test_unknown_and_misplaced_nested_keys():
    with pytest.raises(ConfigError) as exc:
        load_config(overrides=["train_rm.optim.lrr=1"])
    assert exc.value.message == "--set train_rm.optim.lrr=1: unknown key train_rm.optim.lrr"
    assert exc.value.hint.startswith("did you mean 'optim.lr'? valid keys in [train_rm]: readout, aggregation, margin, optim.lr,")
    with pytest.raises(ConfigError) as exc:
        load_config(overrides=["dpo.lrr=1"])
    assert exc.value.hint.startswith("did you mean 'optim.lr'? ")
    with pytest.raises(ConfigError) as exc:
        load_config(overrides=["ppo.sampling=3"])
    assert exc.value.message == "--set ppo.sampling=3: ppo.sampling must be a table"
    assert exc.value.hint == "write [ppo.sampling] then key = value lines (keys: max_new_tokens, temperature, top_p)"


@pytest.mark.parametrize("override, message", [
    ("ppo.reward_mode=dense", "ppo.reward_mode = 'dense' is not known"),
    ("ppo.packing=maybe", "ppo.packing = 'maybe' is not known"),
    ("dpo.mask=soft", "dpo.mask = 'soft' is not known"),
    ("rs.bf16=yes", "rs.bf16 = 'yes' is not known"),
    ("eval.judge=gpt", "eval.judge = 'gpt' is not known"),
    ("segment.baseline=mean", "segment.baseline = 'mean' is not known"),
    ("dpo.global_batch=63", "dpo.global_batch (63) must be a multiple of micro_batch (8)"),
    ("rs.train_batch=48", "rs.rollout_batch (64) must be a multiple of train_batch (48)"),
    ("ppo.actor.adam_beta2=1", "--set ppo.actor.adam_beta2=1: ppo.actor.adam_beta2 = 1.0 is out of range: it must be in [0, 1)"),
])
def test_every_section_is_checked_by_one_mechanism(override, message):
    with pytest.raises(ConfigError) as exc:
        load_config(overrides=[override])
    assert exc.value.message == message
    assert exc.value.hint


def test_a_nested_value_out_of_range_in_a_saved_config_names_its_dotted_key():
    saved = config_to_dict(Config())
    saved["ppo"]["critic"]["lr"] = -1.0
    with pytest.raises(ConfigError) as exc:
        config_from_dict(saved)
    assert exc.value.message == "a saved config: ppo.critic.lr = -1.0 is out of range: it must be > 0"
    assert exc.value.hint == "use a number > 0 (default 9e-06)"


# --------------------------------------------------------------------------------------------
# saved configs (manifest.json) of both versions


def test_saved_config_round_trip_records_the_version():
    cfg, _ = load_config(preset="tiny", overrides=["ppo.critic.lr=1e-4"])
    saved = config_to_dict(cfg)
    assert saved["config_version"] == CONFIG_VERSION == 2
    assert saved["ppo"]["critic"]["lr"] == 1e-4 and saved["ppo"]["sampling"]["max_new_tokens"] == 128
    assert config_from_dict(saved) == cfg
    assert load_config(base=saved)[0] == cfg


def test_a_version_1_saved_config_is_read_silently(capsys):
    version_1 = {"train_rm": {"lr": 2e-5, "adam_beta2": 0.99}, "ppo": {"actor_lr": 1e-6, "warmup_ratio": 0.1,
                                                                        "max_new_tokens": 64}}
    for cfg in (config_from_dict(version_1), load_config(base=version_1)[0]):
        assert (cfg.train_rm.optim.lr, cfg.train_rm.optim.adam_beta2) == (2e-5, 0.99)
        assert (cfg.ppo.actor.lr, cfg.ppo.actor.warmup_ratio, cfg.ppo.critic.warmup_ratio) == (1e-6, 0.1, 0.1)
        assert cfg.ppo.sampling.max_new_tokens == 64
    assert capsys.readouterr().err == ""


def test_a_saved_config_of_a_newer_version_is_refused():
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"config_version": CONFIG_VERSION + 1})
    assert exc.value.message == f"a saved config has config version {CONFIG_VERSION + 1}; this segtool reads versions 1 to 2"


# --------------------------------------------------------------------------------------------
# identities: unchanged by the layout

# The hashes of these sections' identity views as segtool computed them with the flat layout
# (version 1), for the schema defaults and for VARIED.
VARIED = ["train_rm.lr=2e-5", "train_rm.adam_beta2=0.99", "train_rm.grad_clip=0.5", "ppo.actor_lr=1e-6", "ppo.critic_lr=2e-5",
          "ppo.warmup_ratio=0.1", "ppo.max_new_tokens=64", "ppo.temperature=0.7", "dpo.lr=1e-6", "dpo.top_p=0.9",
          "rs.weight_decay=0.01", "rs.max_new_tokens=32"]
VARIED_NEW_KEYS = ["train_rm.optim.lr=2e-5", "train_rm.optim.adam_beta2=0.99", "train_rm.optim.grad_clip=0.5",
                   "ppo.actor.lr=1e-6", "ppo.critic.lr=2e-5", "ppo.actor.warmup_ratio=0.1", "ppo.critic.warmup_ratio=0.1",
                   "ppo.sampling.max_new_tokens=64", "ppo.sampling.temperature=0.7", "dpo.optim.lr=1e-6",
                   "dpo.sampling.top_p=0.9", "rs.optim.weight_decay=0.01", "rs.sampling.max_new_tokens=32"]
VERSION_1_HASHES = {
    "defaults": {"train_rm": "a88525a30dd31287dd9396a870fb9237c840154fd7d0a48065544d488ec85648",
                 "ppo": "cb1603678bcac43056f0194ce0a24bb228e106f03d7fd6ad36b149b22441a6c7",
                 "dpo": "9b177c868a455c216f4bf65c2bbe75402db84f2a71868f2002143f822cfe9b3f",
                 "rs": "269e768fe165ee04eaab1bba5a81e37e0355375b6a4737564dabbebcf55cf0c6"},
    "varied": {"train_rm": "b751ed3c387085048713c7fbf8e755ef004151d619f7579d3c2b82ce6bcdb0ea",
               "ppo": "ef79105ab19b027bdfdcd2f651047f81d6576515611a781e1ddd6d8ef8d2ea75",
               "dpo": "87515c9820d4b4919ae379e24248654734bc592c6c7ca6800cb7eafc81605b1b",
               "rs": "864d605f1e77cc00e242e4701190b17520f434eb8c8f6b1252560f4d22474bf7"},
}


def identity_hashes(cfg) -> dict[str, str]:
    return {section: stable_hash(identity_view(cfg, (section,))) for section in ("train_rm", "ppo", "dpo", "rs")}


@pytest.mark.parametrize("case, sets", [("defaults", []), ("varied", VARIED), ("varied", VARIED_NEW_KEYS)],
                         ids=["defaults", "varied-old-keys", "varied-new-keys"])
def test_identity_views_hash_as_in_version_1(case, sets):
    assert identity_hashes(load_config(overrides=sets)[0]) == VERSION_1_HASHES[case]


def test_identity_view_uses_version_1_names():
    view = identity_view(load_config(overrides=["ppo.actor.lr=1e-6"])[0], ("ppo", "train_rm"))
    assert view["ppo"]["actor_lr"] == 1e-6 and view["ppo"]["warmup_ratio"] == 0.03 and view["ppo"]["max_new_tokens"] == 1024
    assert not any("." in key or key in ("actor", "critic", "sampling") for key in view["ppo"])
    assert view["train_rm"]["lr"] == 1e-6 and "optim" not in view["train_rm"]


def test_knobs_version_1_lacked_enter_the_identity_only_when_they_change_it():
    base = identity_hashes(Config())
    changed = load_config(overrides=["ppo.actor.warmup_ratio=0.2", "dpo.optim.adam_beta1=0.8", "ppo.critic.weight_decay=0.1"])[0]
    view = identity_view(changed, ("ppo", "dpo"))
    assert view["ppo"]["actor.warmup_ratio"] == 0.2 and view["ppo"]["critic.warmup_ratio"] == 0.03
    assert "warmup_ratio" not in view["ppo"]
    assert view["ppo"]["critic.weight_decay"] == 0.1 and view["dpo"]["optim.adam_beta1"] == 0.8
    hashes = identity_hashes(changed)
    assert hashes["ppo"] != base["ppo"] and hashes["dpo"] != base["dpo"] and hashes["rs"] == base["rs"]
    # at the value version 1 used, a new knob changes nothing
    assert identity_hashes(load_config(overrides=["dpo.optim.adam_beta1=0.9", "ppo.actor.weight_decay=0.0"])[0]) == base


def test_ppo_knobs_added_later_enter_the_identity_only_away_from_the_old_behaviour():
    base = identity_hashes(Config())
    same = load_config(overrides=["ppo.reward_source=rm", "ppo.forking_ratio=0", "ppo.dpo_rm_weight=0"])[0]
    assert identity_hashes(same) == base
    for sets in (["ppo.reward_source=dpo"], ["ppo.forking_ratio=0.2"], ["ppo.reward_source=dpo", "ppo.dpo_reward_clip=0.05"]):
        view = identity_view(load_config(overrides=sets)[0], ("ppo",))["ppo"]
        assert {s.split("=")[0].removeprefix("ppo.") for s in sets} <= set(view)
        assert identity_hashes(load_config(overrides=sets)[0])["ppo"] != base["ppo"]


@pytest.mark.parametrize("sets, message", [
    (["ppo.dpo_reward_scale=0.05"], "ppo.dpo_reward_scale = 0.05 shape DPO token rewards, which ppo.reward_source = rm "
                                    "does not use"),
    (["ppo.reward_source=dpo", "ppo.interpolation=end"], "ppo.interpolation = 'end' places the reward model's segment "
                                                         "rewards, which ppo.reward_source = dpo with dpo_rm_weight = 0 does not add"),
    (["ppo.reward_source=dpo", "ppo.c_ent=2.0"], "ppo.c_ent = 2.0 segments the reward model's rewards, which "
                                                 "ppo.reward_source = dpo with dpo_rm_weight = 0 does not add"),
    (["ppo.forking_ratio=1.5"], "--set ppo.forking_ratio=1.5: ppo.forking_ratio = 1.5 is out of range: it must be in [0, 1]"),
    (["ppo.reward_source=policy"], "ppo.reward_source = 'policy' is not known"),
])
def test_rto_and_forking_knobs_are_checked(sets, message):
    with pytest.raises(ConfigError) as exc:
        load_config(overrides=sets)
    assert exc.value.message == message and exc.value.hint
    # what the RM's reward needs is fine once the RM's reward is added
    load_config(overrides=["ppo.reward_source=dpo", "ppo.dpo_rm_weight=1", "ppo.interpolation=end", "ppo.c_ent=2.0"])


def test_loading_a_config_does_not_import_torch(tmp_path):
    code = ("import sys\nfrom segtool.config.loader import load_config\nload_config(preset='tiny')\n"
            "assert 'torch' not in sys.modules, 'loading a config imported torch'\nprint('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
