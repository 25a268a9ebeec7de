"""Malformed inputs through the real command line, one table: data files, config, run-directory
artifacts and eval files. Every case must end with exit 1, exactly one ``error:`` line naming the
file (and line/row and field where there is one) plus one ``hint:`` line, and nothing written: the
run directory is byte for byte what it was before (absent stays absent, so no ``complete`` artifact).

Each case uses the cheapest command that reaches its check: data and config errors stop before any
model is loaded; artifact cases re-run ``segment`` on a copy of one real segmented run directory
(made once per module), which stops at the hash check or the first manifest write.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
from cli_helpers import assert_user_error, segtool, tree_state

GOOD = [
    {"prompt": "Tell me a story", "chosen": "Once upon a time there was a cat.", "rejected": "No."},
    {"prompt": "Hi", "chosen": "Hello there, friend.", "rejected": "Go away."},
]
INVALID_UTF8_ROW = b'{"prompt": "caf\xe9?", "chosen": "Yes.", "rejected": "No."}'  # latin-1, not UTF-8
ARENA_ROW = {"model": "m", "games": [{"score": "A>B"}, {"score": "B>A"}]}
MTBENCH_ROW = {"model": "m", "turn": 1, "score": 7}
ALPACA_ROW = {"instruction": "Say hi.", "output_1": "hi", "output_2": "hello", "preference": 1.5}


class Setup:
    """Builds one case's files under its own tmp folder; ``workdir`` is the run directory."""

    def __init__(self, tmp: Path, request):
        self.tmp, self.request = tmp, request
        self.workdir = tmp / "run"

    def file(self, name: str, content) -> Path:
        """Rows (dicts as JSON, strings verbatim, one per line), text or bytes; gzip for *.gz."""
        if isinstance(content, list):
            content = "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in content)
        data = content.encode() if isinstance(content, str) else content
        path = self.tmp / name
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        return path

    def truncated_gz(self, name: str, rows: list) -> Path:
        path = self.file(name, rows * 20)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return path

    def lines(self, name: str, *raw: bytes) -> Path:
        return self.file(name, b"".join(line + b"\n" for line in raw))

    def segment(self, data: Path, *extra: str) -> list[str]:
        return ["segment", "--preset", "tiny", "--data", str(data), *extra]

    def segmented_copy(self) -> Path:
        """Copy the module's real segmented run to ``workdir``; returns the data it was made from."""
        data, run, _ = self.request.getfixturevalue("segmented_run")
        shutil.copytree(run, self.workdir)
        return data

    def shard(self) -> Path:
        return next(self.workdir.glob("artifacts/segment-*/part-00000.parquet"))


CASES: dict[str, object] = {}


def case(kind: str):
    def register(fn):
        CASES[f"{kind}-{fn.__name__}"] = fn
        return fn

    return register


# -- data files -----------------------------------------------------------------------------------
@case("data")
def bad_json_line(t):
    f = t.file("bad.jsonl", [GOOD[0], '{"prompt": "x",'])
    return t.segment(f), [f"{f} line 2: malformed JSON"]


@case("data")
def line_not_an_object(t):
    f = t.file("list.jsonl", ['["a", "b", "c"]'])
    return t.segment(f), [f"{f} line 1: expected a JSON object, got list"]


@case("data")
def missing_field(t):
    f = t.file("missing.jsonl", [GOOD[0], {"prompt": "a", "chosen": "b"}])
    return t.segment(f), [f"{f} line 2: field 'rejected' is missing"]


@case("data")
def empty_response(t):
    f = t.file("empty.jsonl", [{"prompt": "a", "chosen": " \n ", "rejected": "c"}])
    return t.segment(f), [f"{f} line 1: field 'chosen' is an empty response"]


@case("data")
def chosen_equals_rejected(t):
    f = t.file("same.jsonl", [GOOD[0], {"prompt": "a", "chosen": "same", "rejected": "same"}])
    return t.segment(f), [f"{f} line 2: field 'rejected' is identical to 'chosen'"]


@case("data")
def wrong_type_of_field(t):
    f = t.file("type.jsonl", [{"prompt": "a", "chosen": 5, "rejected": "c"}])
    return t.segment(f), [f"{f} line 1: field 'chosen' must be a string, got int"]


@case("data")
def bad_chat_message(t):
    f = t.file("chat.jsonl", [{"prompt": [{"role": "bot", "content": "hi"}], "chosen": "b", "rejected": "c"}])
    return t.segment(f), [f"{f} line 1: field 'prompt[0]' is not a chat message"]


@case("data")
def invalid_utf8(t):
    f = t.lines("latin1.jsonl", json.dumps(GOOD[0]).encode(), INVALID_UTF8_ROW)
    return t.segment(f), [f"{f} line 2: invalid UTF-8 (byte 0xe9 at column 16)"]


@case("data")
def invalid_utf8_every_line_skipped(t):
    f = t.lines("latin1-only.jsonl", INVALID_UTF8_ROW, INVALID_UTF8_ROW)
    return t.segment(f, "--skip-invalid"), [f"{f}: no valid preference rows (2 invalid rows skipped",
                                            f"{f} line 1: invalid UTF-8"]


@case("data")
def lone_surrogate_in_response(t):
    f = t.file("surrogate.jsonl", [GOOD[0], '{"prompt": "a", "chosen": "b\\ud800", "rejected": "c"}'])
    return t.segment(f), [f"{f} line 2: field 'chosen' contains a lone UTF-16 surrogate (\\ud800"]


@case("data")
def lone_surrogate_in_prompt(t):
    f = t.file("surrogate-prompt.jsonl", ['{"prompt": "\\udc00a", "chosen": "b", "rejected": "c"}'])
    return t.segment(f), [f"{f} line 1: field 'prompt' contains a lone UTF-16 surrogate (\\udc00"]


@case("data")
def hh_transcript_without_assistant(t):
    f = t.file("hh.jsonl", [{"chosen": "\n\nHuman: hi\n\nHuman: yo", "rejected": "\n\nHuman: hi\n\nHuman: no"}])
    return t.segment(f), [f"{f} line 1: field 'chosen' has no '\\n\\nAssistant:' turn"]


@case("data")
def hh_rejected_without_assistant(t):
    f = t.file("hh2.jsonl", [{"chosen": "\n\nHuman: hi\n\nAssistant: yo", "rejected": "\n\nHuman: hi"}])
    return t.segment(f), [f"{f} line 1: field 'rejected' has no '\\n\\nAssistant:' turn"]


@case("data")
def truncated_jsonl_gz(t):
    f = t.truncated_gz("cut.jsonl.gz", GOOD * 50)
    return t.segment(f), [f"{f}: the gzip data is cut off or damaged ("]


@case("data")
def jsonl_gz_that_is_not_gzip(t):
    f = t.tmp / "plain.jsonl.gz"
    f.write_text(json.dumps(GOOD[0]) + "\n")
    return t.segment(f), [f"{f}: not gzip data"]


@case("data")
def empty_file(t):
    f = t.file("nothing.jsonl", "")
    return t.segment(f), [f"{f}: no valid preference rows"]


@case("data")
def unknown_extension(t):
    f = t.file("prefs.csv", "prompt,chosen,rejected\n")
    return t.segment(f), [f"{f}: unsupported file type"]


@case("data")
def parquet_missing_column(t):
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = t.tmp / "two-columns.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": "a", "chosen": "b"}]), f)
    return t.segment(f), [f"{f} row 0: field 'rejected' is missing"]


@case("data")
def damaged_parquet(t):
    f = t.file("damaged.parquet", b"PAR1 not really parquet")
    return t.segment(f), [f"cannot read {f} as Parquet"]


@case("data")
def data_path_is_a_folder(t):
    (t.tmp / "prefs").mkdir()
    return t.segment(t.tmp / "prefs"), [f"data path {t.tmp / 'prefs'} is a directory"]


# -- config ---------------------------------------------------------------------------------------
def tiny(*sets: str) -> list[str]:
    return ["segment", "--preset", "tiny", *[a for s in sets for a in ("--set", s)]]


@case("config")
def unknown_key(t):
    f = t.file("mine.toml", '[segment]\ncent = 2.0\n')
    return ["segment", "--config", str(f)], [f"{f}: unknown key segment.cent"]


@case("config")
def unknown_section(t):
    f = t.file("mine.toml", '[segmnt]\nc_ent = 2.0\n')
    return ["segment", "--config", str(f)], [f"{f}: unknown section [segmnt]"]


@case("config")
def bad_toml_syntax(t):
    f = t.file("mine.toml", '[segment\nc_ent = 2.0\n')
    return ["segment", "--config", str(f)], [f"{f}: invalid TOML", "line 1"]


@case("config")
def missing_config_file(t):
    return ["segment", "--config", str(t.tmp / "nope.toml")], [f"config file {t.tmp / 'nope.toml'} not found"]


@case("config")
def nan_in_config_file(t):
    f = t.file("mine.toml", '[segment]\nc_ent = nan\n')
    return ["segment", "--config", str(f)], [f"{f}: segment.c_ent = nan is not a finite number: it must be >= 0"]


@case("config")
def negative_in_config_file(t):
    f = t.file("mine.toml", '[segment]\nc_ent = -1\n')
    return ["segment", "--config", str(f)], [f"{f}: segment.c_ent = -1.0 is out of range: it must be >= 0"]


@case("config")
def nan_override(t):
    return tiny("segment.c_ent=nan"), ["--set segment.c_ent=nan: segment.c_ent = nan is not a finite number"]


@case("config")
def infinite_override(t):
    return tiny("ppo.kl_coef=inf"), ["--set ppo.kl_coef=inf: ppo.kl_coef = inf is not a finite number: it must be >= 0"]


@case("config")
def eval_fraction_out_of_range(t):
    return tiny("train_rm.eval_fraction=1.5"), ["train_rm.eval_fraction = 1.5 is out of range: it must be in (0, 1)"]


@case("config")
def top_p_zero(t):
    return tiny("ppo.top_p=0"), ["ppo.top_p = 0.0 is out of range: it must be in (0, 1]"]


@case("config")
def label_smoothing_half(t):
    return tiny("dpo.label_smoothing=0.5"), ["dpo.label_smoothing = 0.5 is out of range: it must be in [0, 0.5)"]


@case("config")
def negative_seed(t):
    return tiny("run.seed=-1"), ["--set run.seed=-1: run.seed = -1 is out of range: it must be in [0, 4294967295]"]


@case("config")
def zero_batch(t):
    return tiny("eval.batch_size=0"), ["eval.batch_size = 0 is out of range: it must be >= 1"]


@case("config")
def wrong_type_override(t):
    return tiny("segment.n=2.5"), ["--set segment.n=2.5: segment.n must be an integer, got 2.5"]


@case("config")
def wrong_type_in_config_file(t):
    f = t.file("mine.toml", '[segment]\nc_ent = "2"\n')
    return ["segment", "--config", str(f)], [f"{f}: segment.c_ent must be a number, got '2'"]


@case("config")
def run_stages_is_a_number(t):
    return ["run", "--preset", "tiny", "--set", "run.stages=5"], ["--set run.stages=5: run.stages must be a list of strings, got 5"]


@case("config")
def run_stages_unknown_name(t):
    return ["run", "--preset", "tiny", "--set", 'run.stages=["segmnt"]'], ["run.stages names unknown stage(s) ['segmnt']"]


@case("config")
def nested_knob_out_of_range(t):
    return tiny("ppo.sampling.top_p=0"), ["ppo.sampling.top_p = 0.0 is out of range: it must be in (0, 1]"]


@case("config")
def old_key_beside_its_new_key(t):
    f = t.file("mine.toml", "[train_rm]\nlr = 1e-5\noptim.lr = 2e-5\n")
    return ["segment", "--config", str(f)], [f"{f}: train_rm.lr and train_rm.optim.lr are both set"]


@case("config")
def table_given_a_value(t):
    return tiny("ppo.actor=1e-6"), ["--set ppo.actor=1e-6: ppo.actor must be a table"]


@case("config")
def unknown_reward_mode(t):
    return tiny("ppo.reward_mode=dense"), ["ppo.reward_mode = 'dense' is not known"]


# -- run-directory artifacts ----------------------------------------------------------------------
def write_manifest(t, text: str) -> list[str]:
    t.workdir.mkdir()
    (t.workdir / "manifest.json").write_text(text)
    return t.segment(t.file("good.jsonl", GOOD))


@case("artifacts")
def manifest_is_a_list(t):
    return write_manifest(t, "[]"), [f"{t.workdir / 'manifest.json'} holds an array, not a manifest object"]


@case("artifacts")
def manifest_without_artifacts(t):
    args = write_manifest(t, '{"manifest_version": 1, "heads": {}}')
    return args, [f"{t.workdir / 'manifest.json'}: field 'artifacts' is missing"]


@case("artifacts")
def manifest_record_without_files(t):
    record = {"id": "abc", "stage": "segment", "status": "complete", "dir": "artifacts/segment-abc"}
    args = write_manifest(t, json.dumps({"manifest_version": 1, "artifacts": {"abc": record}, "heads": {}}))
    return args, [f"{t.workdir / 'manifest.json'}: artifacts.abc field 'files' is missing"]


@case("artifacts")
def manifest_not_json(t):
    return write_manifest(t, '{"manifest_version": 1,'), [f"{t.workdir / 'manifest.json'} is not valid JSON"]


@case("artifacts")
def manifest_wrong_version(t):
    args = write_manifest(t, '{"manifest_version": 7, "artifacts": {}, "heads": {}}')
    return args, [f"{t.workdir / 'manifest.json'} has manifest version 7"]


@case("artifacts")
def status_of_a_list_manifest(t):
    write_manifest(t, "[]")
    return ["status"], [f"{t.workdir / 'manifest.json'} holds an array"]


@case("artifacts")
def deleted_shard(t):
    data = t.segmented_copy()
    shard = t.shard()
    shard.unlink()
    return t.segment(data, "--skip-invalid"), [f"{shard} is missing (artifact "]


@case("artifacts")
def changed_shard(t):
    data = t.segmented_copy()
    shard = t.shard()
    shard.write_bytes(shard.read_bytes() + b"\0")
    return t.segment(data, "--skip-invalid"), [f"{shard} does not match the hash recorded in"]


@case("artifacts")
def read_only_run_directory(t):
    data = t.segmented_copy()  # complete: re-running it would only record it as the head
    args = t.segment(data, "--skip-invalid")  # the first write is the run-directory lock file
    return args, [f"cannot create the lock file {t.workdir / '.run.lock'} (Read-only file system)"], "read-only"


@case("artifacts")
def full_disk(t):
    data = t.segmented_copy()
    args = t.segment(data, "--skip-invalid")
    return args, [f"cannot write {t.workdir / 'manifest.json'}: No space left on device"], "full-disk"


@case("artifacts")
def truncated_model_safetensors(t):
    model = t.tmp / "model"
    shutil.copytree(t.request.getfixturevalue("tiny_model_dir"), model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    data = t.file("good.jsonl", GOOD)
    return t.segment(data, "--set", f"model.path={json.dumps(str(model))}"), [f"{weights} is truncated or damaged"]


# -- eval files -----------------------------------------------------------------------------------
@case("eval")
def judgments_invalid_utf8(t):
    f = t.lines("judgment.jsonl", json.dumps(ARENA_ROW).encode(), b'{"model": "m\xff", "games": []}')
    return ["eval", "arena", "--from-judgments", str(f)], [f"{f}: line 2: invalid UTF-8 (byte 0xff at column 13)"]


@case("eval")
def judgments_truncated_jsonl_gz(t):
    f = t.truncated_gz("judgment.jsonl.gz", [MTBENCH_ROW] * 50)
    return ["eval", "mtbench", "--from-judgments", str(f)], [f"{f}: the gzip data is cut off or damaged"]


@case("eval")
def judgments_not_gzip(t):
    f = t.tmp / "judgment.jsonl.gz"
    f.write_text(json.dumps(ARENA_ROW) + "\n")
    return ["eval", "arena", "--from-judgments", str(f)], [f"{f}: not gzip data"]


@case("eval")
def annotations_truncated_json_gz(t):
    f = t.tmp / "annotations.json.gz"
    data = gzip.compress(json.dumps([ALPACA_ROW] * 200).encode())
    f.write_bytes(data[: len(data) // 2])
    return ["eval", "alpaca", "--from-annotations", str(f)], [f"{f}: the gzip data is cut off or damaged"]


@case("eval")
def annotations_invalid_utf8(t):
    f = t.lines("annotations.json", b"[", json.dumps(ALPACA_ROW).encode() + b",", b'{"instruction": "\xff"}]')
    return ["eval", "alpaca", "--from-annotations", str(f)], [f"{f}: line 3: invalid UTF-8"]


@case("eval")
def annotations_not_json(t):
    f = t.file("annotations.json", '[{"instruction": ')
    return ["eval", "alpaca", "--from-annotations", str(f)], [f"{f}: not valid JSON"]


@case("eval")
def annotations_missing_preference(t):
    row = {k: v for k, v in ALPACA_ROW.items() if k != "preference"}
    f = t.file("annotations.json", json.dumps([ALPACA_ROW, row]))
    return ["eval", "alpaca", "--from-annotations", str(f)], [f"{f}: row 1: field 'preference'", "(got missing)"]


@case("eval")
def arena_judgment_missing_games(t):
    f = t.file("judgment.jsonl", [ARENA_ROW, {"model": "m"}])
    return ["eval", "arena", "--from-judgments", str(f)], [f"{f}: line 2: field 'games'", "(got missing)"]


@case("eval")
def mtbench_judgment_missing_score(t):
    f = t.file("judgment.jsonl", [MTBENCH_ROW, {"model": "m", "turn": 2}])
    return ["eval", "mtbench", "--from-judgments", str(f)], [f"{f}: line 2: field 'score'", "(got missing)"]


@case("eval")
def judgment_line_not_an_object(t):
    f = t.file("judgment.jsonl", [ARENA_ROW, "[1, 2]"])
    return ["eval", "arena", "--from-judgments", str(f)], [f"{f}: line 2: not a JSON object"]


@case("eval")
def answers_file_bad_json_line(t):
    judgments = t.file("judgment.jsonl", [ARENA_ROW])
    answers = t.file("answers.jsonl", ['{"model_id": "m", "choices": [{"turns": [{"token_len": 3}]}]}', '{"model_id": "m"'])
    args = ["eval", "arena", "--from-judgments", str(judgments), "--answers", str(answers)]
    return args, [f"{answers}: line 2: not valid JSON"]


# -- the table ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def segmented_run(tmp_path_factory):
    """A real `segment` run (tiny preset) on two good rows and one invalid UTF-8 line, skipped."""
    root = tmp_path_factory.mktemp("segmented")
    data = root / "prefs.jsonl"
    data.write_bytes(b"".join(json.dumps(row).encode() + b"\n" for row in GOOD) + INVALID_UTF8_ROW + b"\n")
    proc = segtool("segment", "--preset", "tiny", "--data", str(data), "--workdir", str(root / "run"), "--skip-invalid",
                   cwd=root)
    assert proc.returncode == 0, proc.stderr
    return data, root / "run", proc


def test_skip_invalid_skips_an_invalid_utf8_line(segmented_run):
    data, run, proc = segmented_run
    assert f"skipped {data} line 3: invalid UTF-8 (byte 0xe9 at column 16)" in proc.stderr
    record = next(iter(json.loads((run / "manifest.json").read_text())["artifacts"].values()))
    assert record["status"] == "complete"
    assert record["rows"] == {"pairs": 2, "sequences": 4, "invalid_skipped": 1}


def test_the_table_covers_every_kind():
    kinds = [name.split("-")[0] for name in CASES]
    assert len(CASES) >= 40
    assert set(kinds) == {"data", "config", "artifacts", "eval"}
    assert min(kinds.count(k) for k in set(kinds)) >= 5


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_input_is_a_one_line_error(name, tmp_path, request):
    t = Setup(tmp_path, request)
    args, needles, *fault = CASES[name](t)
    before = tree_state(t.workdir)
    proc = segtool(*args, "--workdir", str(t.workdir), cwd=tmp_path, fault=fault[0] if fault else None,
                   fault_root=t.workdir)
    lines = assert_user_error(proc)
    assert len(lines) == 2 and lines[1].startswith("hint: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    assert "internal error" not in lines[0]
    assert tree_state(t.workdir) == before  # nothing written: no partial, no complete artifact
