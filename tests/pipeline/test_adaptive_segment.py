"""`segment` with strategy adaptive on the tiny model: token rewards are the reward model's value
differences, states follow the Schmitt trigger, segments are state runs, pivots are flips; other
strategies keep their table and identity; `show segments` colours states."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from align_helpers import config, upstream_copy

from segtool.artifacts.manifest import RunDir
from segtool.artifacts.tables import load_segments
from segtool.core.adaptive import schmitt_states
from segtool.errors import ArtifactError
from segtool.pipeline import segment, train_rm

ADAPTIVE = ["segment.strategy=adaptive", "segment.delta=0.3", "segment.baseline=sequence"]


@pytest.fixture
def workdir(tmp_path_factory, tmp_path):
    return upstream_copy(tmp_path_factory, tmp_path / "run")


def test_adaptive_table_follows_the_trigger(workdir):
    from segtool.models.reward import load_reward_model

    cfg = config("tiny", workdir, *ADAPTIVE)
    result = segment.run(cfg, quiet=True)
    rundir = RunDir(workdir)
    rm_record = rundir.get(train_rm.plan(config("tiny", workdir)).art_id)
    assert result.record["schema_version"] == 2 and result.record["parents"] == [rm_record["id"]]
    _, table = load_segments(rundir, art_id=result.artifact_id)
    assert table.column_names[-5:] == ["token_reward", "baseline", "state", "band", "pivots"]
    rm, _ = load_reward_model(rundir.path_of(rm_record, "model"))
    for i in range(table.num_rows):
        r = np.array(table["token_reward"][i].as_py())
        b = np.array(table["baseline"][i].as_py())
        state = np.array(table["state"][i].as_py())
        n = len(r)
        assert b == pytest.approx(np.full(n, r[: n - 1].mean()), abs=1e-5)  # sequence baseline, EOS excluded
        trig = schmitt_states(torch.tensor(r[None, : n - 1]), torch.tensor(b[None, : n - 1]), 0.3)[0].numpy()
        assert (state[: n - 1] > 0).tolist() == trig.tolist() and state[-1] == state[-2]  # EOS joins the last run
        flips = [j for j in range(1, n) if state[j] != state[j - 1]]
        assert table["pivots"][i].as_py() == flips
        # Segments: maximal runs of one state; the last ends before EOS (default EOS policy).
        assert table["segment_ends"][i].as_py() == [j - 1 for j in flips] + [n - 2]
        if i < 3:  # rewards are value differences of the RM, recomputed on the unpadded sequence
            prompt = table["prompt_token_ids"][i].as_py()
            ids = torch.tensor([prompt + table["response_token_ids"][i].as_py()])
            with torch.no_grad():
                v, _ = rm(ids, torch.ones_like(ids))
            expected = (v[0, len(prompt):] - v[0, len(prompt) - 1 : -1]).numpy()
            assert r == pytest.approx(expected, abs=1e-5)
    assert 0 < result.summary["good_token_fraction"] < 1 and 0 < result.summary["dpo_mask_kept_fraction"] < 1


def test_other_strategies_keep_their_table_and_identity(workdir):
    base = config("tiny", workdir)
    assert segment.plan(base).art_id == segment.plan(config("tiny", workdir, "segment.delta=0.9")).art_id
    result = segment.run(base, quiet=True)
    assert result.outcome == "up-to-date" and result.record["schema_version"] == 1
    _, table = load_segments(RunDir(workdir))
    assert table.num_columns == 6


def test_adaptive_needs_a_reward_model(tmp_path):
    cfg = config("tiny", tmp_path / "empty", *ADAPTIVE)
    with pytest.raises(ArtifactError, match="needs a reward model") as err:
        segment.run(cfg, quiet=True)
    assert "segment.adaptive_model" in err.value.hint
    assert not (tmp_path / "empty" / "artifacts").exists()


def test_show_segments_colours_good_and_bad(workdir, tmp_path):
    from segtool.viz.segments import STATE_COLOURS, segments_report

    cfg = config("tiny", workdir, *ADAPTIVE)
    segment.run(cfg, quiet=True)
    page = tmp_path / "row.html"
    segments_report(cfg, 1, "both", page, json_out=True)
    text = page.read_text()
    assert STATE_COLOURS[(1, False)] in text and STATE_COLOURS[(-1, False)] in text
    assert 'class="tok pivot"' in text and "r = " in text
