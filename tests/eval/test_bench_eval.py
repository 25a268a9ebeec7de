"""Benchmark evaluations on the tiny model: MT-Bench's two turns and temperatures, the proxy
evaluation that ends `segtool run`, resumable answers, GSM8K grading, and comparison reports."""

import dataclasses
import json
import shutil

import pytest

from segtool.artifacts.manifest import RunDir
from segtool.eval import answering, benchmarks
from segtool.pipeline import bench_answers, bench_eval


def _cfg(cfg, **eval_kw):
    return dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, **eval_kw))


def _encoder(tokenizer, cfg):
    from segtool.inputs.formatting import Encoder

    return Encoder.create(tokenizer, cfg.tokenize.max_len, cfg.tokenize.max_prompt_len, cfg.tokenize.template)


def test_mtbench_two_turns_with_fastchat_temperatures(tiny_eval_run, tiny_tokenizer, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    cfg, _ = tiny_eval_run
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()
    qs = [q for q in benchmarks.questions("mtbench") if q.category in ("math", "writing")][::10][:2]
    assert [q.category for q in qs] == ["writing", "math"]
    seen = []

    class Recording:  # the real encoder, recording the conversations it is asked to encode
        def __init__(self, enc):
            self.enc, self.tokenizer, self.eos_id = enc, enc.tokenizer, enc.eos_id

        def encode_prompt(self, messages):
            seen.append([dict(m) for m in messages])
            return self.enc.encode_prompt(messages)

    settings = answering.Settings(max_new_tokens=12, temperature=0.0, top_p=1.0, seed=0, batch_size=4)
    enc = Recording(_encoder(tiny_tokenizer, cfg))
    answers = answering.answer_questions(model, enc, "mtbench", qs, settings, context=512)
    assert [a.temperature for a in answers] == [0.7, 0.0]  # FastChat: writing 0.7, math greedy
    assert all(len(a.turns) == 2 and len(a.new_tokens) == 2 for a in answers)
    second = [m for m in seen if len(m) == 3]  # turn 2: question 1, the model's own answer, question 2
    assert [m[1] for m in second] == [{"role": "assistant", "content": a.turns[0]} for a in answers]
    assert all(n <= 12 for a in answers for n in a.new_tokens)
    again = answering.answer_questions(model, enc, "mtbench", qs, settings, context=512)
    assert again[1].turns == answers[1].turns  # greedy (math) answers are reproducible


def test_proxy_evaluation_of_the_policy(tiny_eval_run):
    """run_proxy: the ppo policy against the SFT model's answers on AlpacaEval prompts, judged by the
    reward model; labelled a proxy; a second call is a no-op."""
    cfg, workdir = tiny_eval_run
    cfg = _cfg(cfg, proxy_prompts=4, max_new_tokens=8)
    result = bench_eval.run_proxy(cfg, resume=False, force=False, quiet=True)
    m = result.record["metrics"]
    assert result.stage == "eval-proxy" and m["proxy"] is True and "PROXY" in m["note"]
    assert m["baseline"] == "tinystories-656k" and m["model"] == "run-ppo" and m["n_total"] == 4
    rundir = RunDir(workdir)
    annotations = json.loads(rundir.path_of(result.record, "annotations.json").read_text())
    assert all(1.0 <= a["preference"] <= 2.0 for a in annotations)
    assert m["win_rate"] == pytest.approx(sum(a["preference"] - 1 for a in annotations) / 4 * 100)
    assert "PROXY" in rundir.path_of(result.record, "report.md").read_text()
    assert bench_eval.plan_proxy(cfg).art_id == result.artifact_id  # what `segtool status` compares against
    assert bench_eval.run_proxy(cfg, resume=False, force=False, quiet=True).outcome == "up-to-date"


def test_proxy_probabilities_are_symmetric(tiny_eval_run, tmp_path):
    from segtool.eval import judges
    from segtool.eval.judges.cache import JudgeCache

    cfg, _ = tiny_eval_run
    judge = judges.build(_cfg(cfg, judge="proxy"), "alpaca")
    cache = JudgeCache(tmp_path, judge.identity)
    prompt = [{"role": "user", "content": "Tell me a story."}]
    a, b = "Once upon a time there was a cat.", "The dog ran to the park and played."
    p_ab, p_ba, p_aa, p_empty = judge.win_probabilities(cache, [(prompt, a, b), (prompt, b, a), (prompt, a, a), (prompt, "", b)])
    assert p_ab + p_ba == pytest.approx(1.0, abs=1e-6) and p_aa == pytest.approx(0.5) and p_empty == 0.0


def test_answers_resume_after_an_interruption(tiny_eval_run, tmp_path, monkeypatch, tiny_model_dir):
    """GSM8K answers in shards of 2: killed after the first shard, resumed: the kept shard is not
    regenerated, and the result equals an uninterrupted run's."""
    cfg0, _ = tiny_eval_run
    cfg = dataclasses.replace(_cfg(cfg0, limit=4, shard_prompts=2, max_new_tokens=12),
                              run=dataclasses.replace(cfg0.run, workdir=str(tmp_path / "a")))
    target = bench_answers.model_target(cfg, str(tiny_model_dir))
    real = answering.answer_questions
    calls = []

    def dying(*args, **kw):
        if calls:
            raise KeyboardInterrupt
        calls.append(len(args[3]))
        return real(*args, **kw)

    monkeypatch.setattr(answering, "answer_questions", dying)
    with pytest.raises(KeyboardInterrupt):
        bench_eval.run(cfg, "gsm8k", target, quiet=True)
    record = RunDir(cfg.run.workdir).head("answers-gsm8k")
    assert record["status"] == "partial" and sorted(record["files"]) == ["part-00000.parquet"]

    monkeypatch.setattr(answering, "answer_questions", lambda *a, **k: calls.append(len(a[3])) or real(*a, **k))
    resumed = bench_eval.run(cfg, "gsm8k", target, resume=True, quiet=True)
    assert calls == [2, 2]  # shard 0 once (before the kill), shard 1 once (after)
    straight = bench_eval.run(dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, workdir=str(tmp_path / "b"))),
                              "gsm8k", target, quiet=True)
    rows = [bench_answers.load(RunDir(r.workdir), RunDir(r.workdir).head("answers-gsm8k")) for r in (resumed, straight)]
    assert rows[0] == rows[1]
    m = resumed.record["metrics"]
    graded = [json.loads(x) for x in RunDir(resumed.workdir).path_of(resumed.record, "graded.jsonl").read_text().splitlines()]
    assert m["questions"] == 4 and m["correct"] == sum(g["correct"] for g in graded) and m["accuracy"] == m["correct"] / 4
    answers_file = RunDir(resumed.workdir).path_of(RunDir(resumed.workdir).head("answers-gsm8k"), "answers.jsonl")
    first = json.loads(answers_file.read_text().splitlines()[0])
    assert set(first) == {"question", "answer", "output", "generator"} and "####" in first["answer"]


def test_compare_two_policies_writes_a_report(tiny_eval_run, tmp_path, segtool_cli):
    cfg, workdir = tiny_eval_run
    other = tmp_path / "other"
    shutil.copytree(workdir, other)
    code, out, err = segtool_cli("eval", "arena", "--preset", "tiny", "--workdir", workdir, "--compare", other,
                                 "--limit", "2", "--set", "eval.max_new_tokens=8", "--set", "eval.bootstrap_rounds=10")
    assert code == 0, err
    assert "run-ppo" in out and "other-ppo" in out and "PROXY" in out
    reports = workdir / "reports"
    md = (reports / "arena-compare.md").read_text()
    assert "| run-ppo |" in md and "| other-ppo |" in md and "PROXY" in md and "arena-compare.png" in md
    assert (reports / "arena-compare.png").read_bytes()[:4] == b"\x89PNG"
    assert "data:image/png;base64," in (reports / "arena-compare.html").read_text()
    assert RunDir(other).head("eval-arena")["status"] == "complete"  # each policy's eval lives in its own run


def test_local_judge_logprobs_and_an_mtbench_run(tiny_eval_run, tiny_model_dir, tmp_path):
    """The hf judge: top-k logprobs of the generated token (greedy picks the best one), and MT-Bench
    graded end to end by it (the tiny model gives no [[rating]]: every turn counts as unrated)."""
    import math

    from segtool.eval import judges
    from segtool.eval.judges.base import ChatRequest
    from segtool.eval.judges.cache import answer_all

    cfg0, _ = tiny_eval_run
    cfg = dataclasses.replace(_cfg(cfg0, judge="hf", judge_model=str(tiny_model_dir), judge_max_tokens=6, limit=1,
                                   max_new_tokens=6), run=dataclasses.replace(cfg0.run, workdir=str(tmp_path / "w")))
    judge = judges.build(cfg, "mtbench")
    req = ChatRequest.of([{"role": "system", "content": "Answer m or M."}, {"role": "user", "content": "Which one?"}], 1, 0.0, 5)
    (out,) = answer_all(judge, judges.cache_for(cfg, judge), [req], quiet=True)
    top = out.top_logprobs[0]
    assert len(out.top_logprobs) == 1 and len(top) == 5
    assert [t["logprob"] for t in top] == sorted((t["logprob"] for t in top), reverse=True)
    assert sum(math.exp(t["logprob"]) for t in top) <= 1.0 + 1e-6
    assert out.text.strip() == top[0]["token"].strip()  # greedy: the generated token is the most likely one
    result = bench_eval.run(cfg, "mtbench", bench_answers.model_target(cfg, "sft"), judge=judge, quiet=True)
    m = result.record["metrics"]
    assert m["rated"] + m["unrated"] == 2 and m["judge_kind"] == "hf" and m["proxy"] is False
    lines = RunDir(result.workdir).path_of(result.record, "judgment_single.jsonl").read_text().splitlines()
    assert [json.loads(x)["judge"][1] for x in lines] == ["single-v1", "single-v1-multi-turn"]
