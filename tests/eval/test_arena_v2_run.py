"""`eval arena --version v2.0` end to end on the tiny run: the policy's answers to the first hard_prompt
questions against o3-mini, judged by the reward-model proxy, scored per category, creative writing
absent from the limited question set."""

import dataclasses
import json

from segtool.artifacts.manifest import RunDir
from segtool.pipeline import bench_eval


def test_v2_run_scores_hard_prompt_with_and_without_style_control(tiny_eval_run):
    cfg, workdir = tiny_eval_run
    cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, judge="proxy", baseline="official", limit=3, max_new_tokens=8,
                                                            bootstrap_rounds=5))
    target = bench_eval.resolve_target(cfg)
    result = bench_eval.run(cfg, "arena-v2", target, quiet=True)
    m = result.record["metrics"]
    assert result.stage == "eval-arena-v2" and m["proxy"] is True
    assert m["scored_categories"] == ["hard_prompt"] and m["skipped_categories"] == {}
    hard = m["categories"]["hard_prompt"]
    assert hard["baseline"] == "o3-mini-2025-01-31" and hard["questions"] == 3
    assert 0.0 <= hard["lower"] <= hard["score"] <= hard["upper"] <= 100.0
    assert m["score"] == hard["score_style"] and m["headline"] == "hard_prompt, style control"
    rows = [json.loads(line) for line in RunDir(workdir).path_of(result.record, "judgment.jsonl").read_text().splitlines()]
    assert [r["category"] for r in rows] == ["hard_prompt"] * 3 and all(len(r["games"]) == 2 for r in rows)
