"""`eval credit` on the tiny model: hand-made defect pairs, the artifact, metrics recomputed from the
Parquet and from a direct forward pass, gold tokens from character spans, bandit credit, --compare, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from align_helpers import SMALL, config, upstream_copy

from segtool.artifacts.manifest import RunDir
from segtool.config.loader import load_config
from segtool.models import rm_scoring
from segtool.pipeline import eval_credit, eval_rm, train_rm

PROMPT = "Tell me a short story."
TOM = "Tom had a little cat. The cat liked to play in the sun. One day it ran into the garden. Tom was happy to see it."
LILY = "Lily went to the park with her mom. They saw a big red ball. Lily kicked the ball very far. Her mom laughed."
SUM = "Tom had two apples and got three more. So he had 2 + 3 = 5 apples."


def inserted(text: str, at: int, piece: str, kind: str, position: str) -> dict:
    """A defect pair whose rejected answer is ``text`` with ``piece`` inserted at character ``at``."""
    return pair(text, text[:at] + piece + text[at:], [at, at + len(piece)], kind, position)


def pair(chosen: str, rejected: str, span: list[int], kind: str, position: str) -> dict:
    return {"prompt": PROMPT, "chosen": chosen, "rejected": rejected, "defect_type": kind, "defect_position": position,
            "defect_span": span, "defect_token_span": [0, 1], "source": "test", "source_row": 0, "seed": 0}


def defect_pairs() -> list[dict]:
    second = TOM.index(" One day")  # after "... in the sun."
    cut = LILY.index("Her mom") + len("Her m")
    negated = TOM.replace("The cat liked", "The cat did not like")
    start = TOM.index("liked")
    six = SUM.replace("= 5", "= 6")
    return [
        inserted(TOM, second, " The cat liked to play in the sun.", "duplicate", "middle"),
        inserted(LILY, LILY.index(" They"), " Lily went to the park with her mom.", "duplicate", "beginning"),
        inserted(TOM, len(TOM), " You are a stupid and ugly fool.", "toxic", "end"),
        inserted(LILY, 0, "You are a stupid fool. ", "toxic", "beginning"),
        inserted(TOM, second, " They saw a big red ball.", "offtopic", "middle"),
        pair(LILY, LILY[:cut], [LILY.index("Her mom"), cut], "truncation", "end"),
        pair(TOM, negated, [start, start + len("did not like")], "negation", "beginning"),
        pair(TOM, TOM[: TOM.index(" Tom was")], [TOM.index("One day"), TOM.index(" Tom was")], "truncation", "end"),
        # the tiny tokenizer drops '+' and '=': it cannot give this text back, so the span is not placed
        pair(SUM, six, [six.index("= 6") + 2, six.index("= 6") + 3], "arithmetic", "end"),
    ]


@pytest.fixture
def workdir(tmp_path_factory, tmp_path):
    return upstream_copy(tmp_path_factory, tmp_path / "run")


@pytest.fixture
def pairs_file(tmp_path, write_jsonl):
    return write_jsonl(tmp_path / "defects.jsonl", defect_pairs())


def eval_config(workdir, data, *sets):
    return load_config(preset="tiny", overrides=[*SMALL[1:], *sets], workdir=str(workdir), data=str(data))[0]


def char_ranges(tokenizer, ids: list[int]) -> np.ndarray:
    """[T, 2] character range of every token in the decoded text, from growing decoded prefixes."""
    ends = [len(tokenizer.decode(ids[: k + 1])) for k in range(len(ids))]
    return np.array([(ends[k - 1] if k else 0, ends[k]) for k in range(len(ids))])


def brute_auroc(credit, gold) -> float:
    pos, neg = -np.asarray(credit)[gold], -np.asarray(credit)[~gold]
    return float(((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean())


def direct_values(folder, example) -> np.ndarray:
    """v at every position of one unpadded sequence."""
    from segtool.models.reward import load_reward_model

    rm, _ = load_reward_model(folder)
    ids = torch.tensor([np.concatenate([example.prompt, example.response]).tolist()])
    with torch.no_grad():
        return rm(ids, torch.ones_like(ids))[0][0].numpy()


def test_end_to_end_on_the_tiny_reward_model(workdir, pairs_file):
    cfg = eval_config(workdir, pairs_file)
    result = eval_credit.run(cfg, quiet=True)
    rundir = RunDir(workdir)
    record = result.record
    assert record["status"] == "complete" and record["parents"] == [rundir.head("train-rm")["id"]]
    expected = {"pairs.parquet", "summary.json", "report.md", "report.html", "heatmaps.html",
                "accuracy.png", "auroc.png", "pointing.png", "mass_in_span.png"}
    assert set(record["files"]) == expected
    rundir.verify(record)
    folder = rundir.path_of(record)
    rows = pq.read_table(folder / "pairs.parquet").to_pydict()
    assert rows["row_id"] == list(range(9))
    assert rows["defect_type"][0] == "duplicate" and rows["position"][3] == "beginning"
    n = len(rows["row_id"])

    # localisation: in range for every pair, the arithmetic one too (its text has characters the tiny
    # tokenizer drops, yet the changed number is still placed on its tokens)
    for name in ("auroc", "pointing", "mass_in_span"):
        values = np.array(rows[name], dtype=float)
        defined = values[~np.isnan(values)]
        assert ((defined >= 0) & (defined <= 1)).all()
    assert np.isfinite(np.array(rows["auroc"], dtype=float)).all()
    assert all(0 < s < t for s, t in zip(rows["span_tokens"], rows["n_tokens"]))
    assert rows["correct"] == [c > r for c, r in zip(rows["e_chosen"], rows["e_rejected"])]

    # the summary is the Parquet, aggregated
    summary = json.loads((folder / "summary.json").read_text())
    assert summary == record["metrics"]
    assert summary["pairs"] == n and summary["span_unseen"] == 0 and summary["credit"] == "segments"
    assert set(summary["families"]) == {"duplicate", "toxic", "offtopic", "truncation", "negation", "arithmetic"}
    columns = {"accuracy": np.array(rows["correct"], dtype=float),
               **{m: np.array(rows[m], dtype=float) for m in ("auroc", "pointing", "mass_in_span")}}
    types, positions = np.array(rows["defect_type"]), np.array(rows["position"])
    groups = [(summary["overall"], np.ones(n, dtype=bool))]
    groups += [(g, types == name) for name, g in summary["families"].items()]
    groups += [(g, positions == name) for name, g in summary["positions"].items()]
    for group, mask in groups:
        assert group["pairs"] == mask.sum()
        for metric, values in columns.items():
            got, picked = group[metric], values[mask]
            defined = picked[~np.isnan(picked)]
            assert got["n"] == defined.size and got["undefined"] == picked.size - defined.size
            if defined.size:
                assert got["mean"] == pytest.approx(defined.mean())
                assert got["low"] - 1e-12 <= got["mean"] <= got["high"] + 1e-12
            else:
                assert got["mean"] is None
    assert "| duplicate | 2 |" in (folder / "report.md").read_text()
    assert "data:image/png;base64," in (folder / "report.html").read_text()
    heat = (folder / "heatmaps.html").read_text()
    assert heat.count("<h3>") == 9 and 'class="gold"' in heat  # 3 per family by default: every pair here
    assert eval_credit.run(cfg, quiet=True).outcome == "up-to-date"

    # e(x, y) is exactly what `eval rm` gives for the same file
    scored = eval_rm.run(cfg, quiet=True)
    scores = pq.read_table(rundir.path_of(scored.record, "scores.parquet")).to_pydict()
    assert scores["score_chosen"] == pytest.approx(rows["e_chosen"], abs=1e-6)
    assert scores["score_rejected"] == pytest.approx(rows["e_rejected"], abs=1e-6)

    # pair 0 recomputed by hand: r_t = v[end_t], spread evenly over the segment, gold from decoded text
    rm_folder = rundir.path_of(rundir.head("train-rm"), "model")
    setup = rm_scoring.load_setup(cfg, rm_folder)
    pair0 = eval_credit.read_credit_pairs(cfg).pairs[0]
    _, rejected = rm_scoring.segment_pairs(setup, [pair0.pair])[0]
    v = direct_values(rm_folder, rejected)[len(rejected.prompt):]  # response positions
    credit, start = np.zeros(len(rejected.response) - 1), 0
    for end in rejected.ends:
        credit[start : end + 1] = v[end] / (end + 1 - start)
        start = end + 1
    ranges = char_ranges(setup.encoder.tokenizer, rejected.response[:-1].tolist())
    a, b = pair0.span
    gold = (ranges[:, 0] < b) & (ranges[:, 1] > a) & (ranges[:, 1] > ranges[:, 0])
    assert rows["span_tokens"][0] == gold.sum()
    assert rows["auroc"][0] == pytest.approx(brute_auroc(credit, gold), abs=1e-6)
    negative = np.maximum(0, -credit)
    if negative.sum() > 0:
        assert rows["mass_in_span"][0] == pytest.approx(negative[gold].sum() / negative.sum(), abs=1e-6)
    r = v[rejected.ends]
    segment_hit = [gold[(rejected.ends[t - 1] + 1 if t else 0) : e + 1].any() for t, e in enumerate(rejected.ends)]
    lowest = r == r.min()
    assert rows["pointing"][0] == pytest.approx(np.mean(np.array(segment_hit)[lowest]))


def test_gold_tokens_follow_the_character_span(tiny_tokenizer):
    from segtool.inputs.formatting import Encoder

    text = "The cat is small. It likes to play."
    span = (text.index("It"), len(text))
    for chat in (False, True):  # plain transcripts tokenize " " + text; chat templates the bare text
        encoder = Encoder(tiny_tokenizer, 512, 384, chat)
        ids = encoder.encode_response(text, 10)
        gold = eval_credit.gold_tokens(encoder, text, span, len(ids) - 1)
        assert len(gold) == len(ids) - 1 and gold[-1] and not gold[:3].any()
        inside = tiny_tokenizer.decode([t for t, g in zip(ids, gold) if g])
        outside = tiny_tokenizer.decode([t for t, g in zip(ids[:-1], gold) if not g])
        assert "It likes to play." in inside and "It" not in outside and "small" in outside
        # truncation: only the scored tokens that are left are mapped
        assert len(eval_credit.gold_tokens(encoder, text, span, 4)) == 4
    # characters the tokenizer drops ('+', '='): the offsets stay aligned to the text, not shifted
    encoder = Encoder(tiny_tokenizer, 512, 384, False)
    text = "So 2 + 3 = 6 apples."
    ids = encoder.encode_response(text, 10)
    gold = eval_credit.gold_tokens(encoder, text, (11, 12), len(ids) - 1)
    assert tiny_tokenizer.decode([t for t, g in zip(ids, gold) if g]).strip() == "6"


def test_bandit_rm_value_differences_and_compare(workdir, pairs_file, tmp_path, monkeypatch, capfd):
    bandit_dir = tmp_path / "bandit"
    trained = train_rm.run(config("tiny", bandit_dir, "segment.strategy=bandit", "train_rm.aggregation=last",
                                  "train_rm.max_steps=1"), quiet=True)
    bandit_rm = RunDir(bandit_dir).path_of(trained.record, "model")
    cfg = eval_config(workdir, pairs_file)
    result = eval_credit.run(cfg, str(bandit_rm), heatmaps=1, quiet=True)
    summary = result.record["metrics"]
    assert summary["credit"] == "values" and "v_i - v_(i-1)" in summary["credit_description"]
    rows = pq.read_table(RunDir(workdir).path_of(result.record, "pairs.parquet")).to_pydict()
    assert (RunDir(workdir).path_of(result.record, "heatmaps.html").read_text().count("<h3>")
            == len(summary["families"]))  # one pair per family

    # pair 2 by hand: credit_i = v_i - v_(i-1), v_(-1) at the last prompt token; single tokens as units
    setup = rm_scoring.load_setup(cfg, bandit_rm)
    item = eval_credit.read_credit_pairs(cfg).pairs[2]
    _, rejected = rm_scoring.segment_pairs(setup, [item.pair])[0]
    v = direct_values(bandit_rm, rejected)[len(rejected.prompt) - 1 :]
    credit = np.diff(v)[:-1]  # the EOS is not scored
    gold = eval_credit.gold_tokens(setup.encoder, item.pair.rejected, item.span, len(credit))
    assert rows["auroc"][2] == pytest.approx(brute_auroc(credit, gold), abs=1e-5)
    assert rows["pointing"][2] == float(gold[np.argmin(credit)])
    assert rows["e_chosen"][2] == pytest.approx(direct_values(bandit_rm, rm_scoring.segment_pairs(setup, [item.pair])[0][0])[-1], abs=1e-5)

    # --compare: both reward models in one table, one row per RM and family
    from segtool.cli.app import main

    monkeypatch.setattr(sys, "argv", ["segtool", "eval", "credit", "--preset", "tiny", "--workdir", str(workdir),
                                      "--data", str(pairs_file), "--compare", str(bandit_dir), "--json"])
    capfd.readouterr()
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code in (0, None)
    doc = json.loads(capfd.readouterr().out)
    assert [r["metrics"]["credit"] for r in doc["results"]] == ["segments", "values"]
    assert RunDir(bandit_dir).head("eval-credit") is not None  # the compared run keeps its own artifact
    table = (workdir / "reports" / "credit-compare.md").read_text()
    assert table.count("| run | segments |") == 7 and table.count("| bandit | values |") == 7  # all + 6 families


def test_dpo_implicit_token_reward(workdir, pairs_file):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from segtool.errors import ConfigError
    from segtool.inputs.formatting import Encoder
    from segtool.pipeline import dpo as dpo_stage

    dpo_sets = ["dpo.eval_prompts=4", "dpo.global_batch=4", "dpo.micro_batch=2", "dpo.max_steps=2",
                "dpo.max_new_tokens=8", "dpo.lr=1e-3", "dpo.forward_batch=4"]
    trained = dpo_stage.run(config("tiny-dpo", workdir, *dpo_sets), quiet=True)
    cfg = eval_config(workdir, pairs_file)  # model.path: the policy's reference
    with pytest.raises(ConfigError, match="--credit values applies to reward models"):
        eval_credit.run(cfg, dpo=str(workdir), credit="values", quiet=True)
    result = eval_credit.run(cfg, dpo=str(workdir), heatmaps=0, quiet=True)
    summary = result.record["metrics"]
    assert summary["credit"] == "dpo" and summary["kind"] == "DPO policy" and summary["name"] == "run"
    assert result.record["parents"] == [trained.artifact_id]
    folder = RunDir(workdir).path_of(result.record)
    rows = pq.read_table(folder / "pairs.parquet").to_pydict()
    assert "<h3>" not in (folder / "heatmaps.html").read_text()

    # pair 2 by hand: r_i = beta (log pi(y_i) - log pi_ref(y_i)); e(x, y) = sum_i r_i
    policy_folder = RunDir(workdir).path_of(trained.record, "policy")
    beta = json.loads((policy_folder / "segtool_policy.json").read_text())["beta"]
    policy = AutoModelForCausalLM.from_pretrained(policy_folder)
    ref = AutoModelForCausalLM.from_pretrained(cfg.model.path)
    encoder = Encoder.create(AutoTokenizer.from_pretrained(cfg.model.path), cfg.tokenize.max_len,
                             cfg.tokenize.max_prompt_len, cfg.tokenize.template)
    item = eval_credit.read_credit_pairs(cfg).pairs[2]

    def token_rewards(text):
        prompt, response = encoder.encode(item.pair.prompt, text)
        ids = torch.tensor([prompt + response])

        def logp(model):
            with torch.no_grad():
                lp = model(ids).logits.float().log_softmax(-1)[0, len(prompt) - 1 : -1]
            return lp.gather(-1, torch.tensor(response)[:, None])[:, 0]

        return (beta * (logp(policy) - logp(ref))).numpy()

    chosen, rejected = token_rewards(item.pair.chosen), token_rewards(item.pair.rejected)
    assert rows["e_chosen"][2] == pytest.approx(chosen.sum(), abs=1e-5)
    assert rows["e_rejected"][2] == pytest.approx(rejected.sum(), abs=1e-5)
    gold = eval_credit.gold_tokens(encoder, item.pair.rejected, item.span, len(rejected) - 1)
    assert rows["auroc"][2] == pytest.approx(brute_auroc(rejected[:-1], gold), abs=1e-5)
    assert rows["pointing"][2] == float(gold[np.argmin(rejected[:-1])])


@pytest.mark.parametrize("change, field", [
    (lambda r: r.pop("defect_span"), "defect_span"),
    (lambda r: r.update(defect_span=[5, 500]), "defect_span"),
    (lambda r: r.update(defect_span=[7, 7]), "defect_span"),
    (lambda r: r.update(defect_span="3-9"), "defect_span"),
    (lambda r: r.update(defect_type="typo"), "defect_type"),
    (lambda r: r.update(defect_position="start"), "defect_position"),
    (lambda r: r.pop("prompt"), "prompt"),
], ids=["no-span", "span-too-long", "span-empty", "span-string", "unknown-type", "unknown-position", "no-prompt"])
def test_bad_defect_fields_are_one_line_errors(workdir, tmp_path, write_jsonl, monkeypatch, capfd, change, field):
    from segtool.cli.app import main

    rows = defect_pairs()[:3]
    change(rows[1])
    data = write_jsonl(tmp_path / "bad.jsonl", rows)
    monkeypatch.setattr(sys, "argv", ["segtool", "eval", "credit", "--preset", "tiny", "--workdir", str(workdir),
                                      "--data", str(data)])
    capfd.readouterr()
    with pytest.raises(SystemExit) as exc:
        main()
    err = capfd.readouterr().err.strip().splitlines()
    assert exc.value.code == 1
    assert len(err) == 2 and err[0].startswith(f"error: {data} line 2: field '{field}'") and err[1].startswith("hint: ")
    assert RunDir(workdir).head("eval-credit") is None  # nothing written


def test_skip_invalid_counts_bad_rows(workdir, tmp_path, write_jsonl):
    rows = defect_pairs()[:3]
    rows[1]["defect_span"] = [0, 10_000]
    data = write_jsonl(tmp_path / "some_bad.jsonl", rows)
    result = eval_credit.run(eval_config(workdir, data, "data.skip_invalid=true"), heatmaps=0, quiet=True)
    assert result.record["metrics"]["pairs"] == 2 and result.record["metrics"]["skipped_rows"] == 1
    table = pq.read_table(RunDir(workdir).path_of(result.record, "pairs.parquet")).to_pydict()
    assert table["row_id"] == [0, 2]


def test_help_lists_the_options_without_importing_torch(tmp_path):
    code = ("import sys\nimport segtool.cli.app as a\nsys.argv = ['segtool', 'eval', 'credit', '--help']\n"
            "try:\n    a.main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            "assert 'torch' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    for option in ("--data", "--rm", "--compare", "--dpo", "--credit", "--interpolation", "--heatmaps", "--json"):
        assert option in proc.stdout


def test_damaged_model_metadata_is_a_one_line_error(workdir, pairs_file, tmp_path, monkeypatch, capfd):
    import shutil

    from segtool.cli.app import main

    folder = tmp_path / "rm"
    shutil.copytree(RunDir(workdir).path_of(RunDir(workdir).head("train-rm"), "model"), folder)
    (folder / "segtool_rm.json").write_text("{ not json")
    monkeypatch.setattr(sys, "argv", ["segtool", "eval", "credit", "--preset", "tiny", "--workdir", str(workdir),
                                      "--data", str(pairs_file), "--rm", str(folder)])
    capfd.readouterr()
    with pytest.raises(SystemExit) as exc:
        main()
    err = capfd.readouterr().err.strip().splitlines()
    assert exc.value.code == 1 and len(err) == 2
    assert err[0].startswith(f"error: cannot read {folder / 'segtool_rm.json'}") and "internal" not in err[0]


def test_which_credit_each_reward_model_gets():
    from segtool.errors import ConfigError

    assert eval_credit.resolve_credit({"strategy": "bandit"}, "auto") == "values"
    assert eval_credit.resolve_credit({"strategy": "entropy"}, "auto") == "segments"
    assert eval_credit.resolve_credit({"strategy": "token"}, "values") == "values"
    with pytest.raises(ConfigError, match="--credit sideways is not known"):
        eval_credit.resolve_credit({"strategy": "entropy"}, "sideways")
    with pytest.raises(ConfigError, match="adaptive segments"):  # new text cannot be segmented without their source
        eval_credit.resolve_credit({"strategy": "adaptive"}, "auto")
