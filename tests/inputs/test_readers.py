"""segtool.inputs.readers: raw records from .jsonl, .jsonl.gz, .parquet and hub dataset names."""

from __future__ import annotations

import gzip
import sys
import types

import pytest

from segtool.errors import InputError
from segtool.inputs.readers import RawRecord, describe_source, read_records
from segtool.inputs.rows import read_pairs


def _write_parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows)
    pq.write_table(table, path)
    return path


# --------------------------------------------------------------------------------------------
# the three local formats agree


def test_jsonl_gz_and_parquet_yield_the_same_pairs(tmp_path, write_jsonl):
    # Parquet needs one type per column, so the cross-format comparison uses string prompts.
    flat = [
        {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"},
        {"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."},
        {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Seven."},
    ]
    jsonl = write_jsonl(tmp_path / "p.jsonl", flat)
    gz = write_jsonl(tmp_path / "p.jsonl.gz", flat)
    pq_path = _write_parquet(tmp_path / "p.parquet", flat)

    results = {}
    for path in (jsonl, gz, pq_path):
        records = list(read_records(str(path)))
        assert [r.row_id for r in records] == [0, 1, 2]
        assert [r.data for r in records] == flat
        assert all(r.error is None for r in records)
        results[path.suffix] = read_pairs(str(path)).pairs

    assert results[".jsonl"] == results[".gz"] == results[".parquet"]
    assert [p.prompt for p in results[".jsonl"]] == [
        ({"role": "user", "content": "What is 2+2?"},),
        ({"role": "user", "content": "Hi"},),
        ({"role": "user", "content": "Name a colour."},),
    ]
    assert [(p.chosen, p.rejected) for p in results[".parquet"]] == [("4", "5"), ("Hello!", "Go away."), ("Blue.", "Seven.")]


def test_parquet_with_message_list_prompts(tmp_path):
    rows = [
        {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "chosen": "Hello.", "rejected": "Bye."},
    ]
    path = _write_parquet(tmp_path / "chat.parquet", rows)
    (pair,) = read_pairs(str(path)).pairs
    assert pair.prompt == ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"})
    assert (pair.row_id, pair.chosen, pair.rejected) == (0, "Hello.", "Bye.")


def test_parquet_location_names_file_and_row(tmp_path):
    path = _write_parquet(tmp_path / "p.parquet", [{"prompt": "a", "chosen": "b", "rejected": "c"}] * 3)
    assert [r.where for r in read_records(str(path))] == [f"{path} row 0", f"{path} row 1", f"{path} row 2"]


# --------------------------------------------------------------------------------------------
# JSON lines: blank lines, row ids, locations


@pytest.mark.parametrize("name", ["data.jsonl", "data.jsonl.gz"])
def test_blank_lines_skipped_row_ids_dense_locations_one_based(tmp_path, write_jsonl, name):
    a = {"prompt": "a", "chosen": "b", "rejected": "c"}
    b = {"prompt": "d", "chosen": "e", "rejected": "f"}
    c = {"prompt": "g", "chosen": "h", "rejected": "i"}
    # line 1: blank, 2: a, 3: whitespace only, 4: b, 5: blank, 6: c
    path = write_jsonl(tmp_path / name, ["", a, "   \t", b, "", c])
    records = list(read_records(str(path)))
    assert [r.row_id for r in records] == [0, 1, 2]
    assert [r.data for r in records] == [a, b, c]
    assert [r.where for r in records] == [f"{path} line 2", f"{path} line 4", f"{path} line 6"]


def test_crlf_line_endings(tmp_path):
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b'{"prompt": "a", "chosen": "b", "rejected": "c"}\r\n\r\n{"prompt": "d", "chosen": "e", "rejected": "f"}\r\n')
    records = list(read_records(str(path)))
    assert [(r.row_id, r.where, r.data["prompt"]) for r in records] == [(0, f"{path} line 1", "a"), (1, f"{path} line 3", "d")]


def test_malformed_json_line_is_a_record_error(tmp_path, write_jsonl):
    ok = {"prompt": "a", "chosen": "b", "rejected": "c"}
    path = write_jsonl(tmp_path / "bad.jsonl", [ok, "", '{"prompt": "a", "chosen": ', ok])
    records = list(read_records(str(path)))
    # the malformed record keeps its place in the row numbering: ids 0, 1, 2
    assert [r.row_id for r in records] == [0, 1, 2]
    bad = records[1]
    assert bad.data is None and isinstance(bad.error, InputError)
    assert bad.where == f"{path} line 3"
    assert bad.error.message.startswith(f"{path} line 3: malformed JSON (")
    assert "bad.jsonl" in bad.error.message
    assert "--skip-invalid" in bad.error.hint
    assert records[2].where == f"{path} line 4" and records[2].data == ok

    with pytest.raises(InputError) as exc:
        read_pairs(str(path))
    assert "bad.jsonl" in exc.value.message
    assert "line 3" in exc.value.message
    assert "malformed JSON" in exc.value.message


@pytest.mark.parametrize(
    "line, type_name",
    [("[1, 2, 3]", "list"), ('"just a string"', "str"), ("42", "int"), ("null", "NoneType")],
)
def test_non_object_json_line(tmp_path, write_jsonl, line, type_name):
    path = write_jsonl(tmp_path / "arr.jsonl", [line])
    (rec,) = list(read_records(str(path)))
    assert rec.data is None
    assert rec.error.message == f"{path} line 1: expected a JSON object, got {type_name}"
    with pytest.raises(InputError, match="expected a JSON object"):
        read_pairs(str(path))


def test_not_gzip_although_named_gz(tmp_path):
    path = tmp_path / "fake.jsonl.gz"
    path.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n')
    with pytest.raises(InputError) as exc:
        list(read_records(str(path)))
    assert exc.value.message.startswith(f"{path}: not gzip data")


def test_truncated_gzip(tmp_path):
    full = gzip.compress(b'{"prompt": "a", "chosen": "b", "rejected": "c"}\n' * 200)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(InputError) as exc:
        list(read_records(str(path)))
    assert exc.value.message.startswith(f"{path}: the gzip data is cut off or damaged (")
    assert "copy or download it again" in exc.value.hint


def test_invalid_utf8_line_is_a_record_error_that_can_be_skipped(tmp_path):
    path = tmp_path / "latin1.jsonl"
    good = b'{"prompt": "a", "chosen": "b", "rejected": "c"}\n'
    path.write_bytes(good + '{"prompt": "caf\u00e9", "chosen": "b", "rejected": "c"}\n'.encode("latin-1") + good)
    records = list(read_records(str(path)))
    assert [(r.row_id, r.data is None) for r in records] == [(0, False), (1, True), (2, False)]
    assert records[1].error.message == f"{path} line 2: invalid UTF-8 (byte 0xe9 at column 16)"
    assert "--skip-invalid" in records[1].error.hint
    with pytest.raises(InputError, match="line 2: invalid UTF-8"):
        read_pairs(str(path))
    report = read_pairs(str(path), skip_invalid=True)
    assert [p.row_id for p in report.pairs] == [0, 2]
    assert [e.message for e in report.invalid] == [records[1].error.message]


def test_damaged_parquet(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InputError) as exc:
        list(read_records(str(path)))
    assert exc.value.message.startswith(f"cannot read {path} as Parquet")


# --------------------------------------------------------------------------------------------
# describe_source and missing files


@pytest.mark.parametrize("name", ["missing.jsonl", "missing.jsonl.gz", "missing.parquet", "./missing", "~/no/such/segtool-file", "a/b/c", "ABS"])
def test_missing_local_file_not_found(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    path = str(tmp_path / "gone.jsonl") if name == "ABS" else name
    with pytest.raises(InputError) as exc:
        describe_source(path)
    assert exc.value.message == f"data file {path} not found"
    assert exc.value.hint == "check the path given to --data or data.path"
    with pytest.raises(InputError, match="not found"):
        list(read_records(path))


def test_directory_is_an_error(tmp_path):
    with pytest.raises(InputError, match="is a directory, not a file"):
        describe_source(str(tmp_path))


def test_existing_file_is_file(tmp_path, write_jsonl):
    assert describe_source(str(write_jsonl(tmp_path / "x.jsonl", []))) == "file"


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "prefs.csv"
    path.write_text("prompt,chosen,rejected\n")
    with pytest.raises(InputError, match=r"unsupported file type"):
        list(read_records(str(path)))


def test_empty_path_says_no_data_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as exc:
        describe_source("")
    assert exc.value.message == "no preference data given"


@pytest.mark.parametrize("name", ["Anthropic/hh-rlhf", "imdb", "trl-lib/ultrafeedback_binarized"])
def test_hub_names_are_hub(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)  # nothing of that name exists here
    assert describe_source(name) == "hub"


# --------------------------------------------------------------------------------------------
# hub datasets (no network: a fake `datasets` module)


@pytest.fixture
def fake_datasets(monkeypatch):
    """A stand-in `datasets` module whose load_dataset records its arguments: _hub_records does
    `import datasets` at call time, so the real library (slow import, network) is never touched."""
    calls = []
    rows = [
        {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello.", "rejected": "\n\nHuman: Hi\n\nAssistant: Go."},
        {"prompt": "Q", "chosen": "A", "rejected": "B"},
    ]

    def load_dataset(name, config=None, split=None, **kwargs):
        calls.append((name, config, split, kwargs))
        if name == "org/broken":
            raise ConnectionError("hub unreachable")
        return list(rows)

    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", module)
    return calls, rows


def test_hub_records_use_name_config_and_split(tmp_path, monkeypatch, fake_datasets):
    monkeypatch.chdir(tmp_path)
    calls, rows = fake_datasets
    records = list(read_records("Anthropic/hh-rlhf", "helpful-base", "test"))
    assert calls == [("Anthropic/hh-rlhf", "helpful-base", "test", {})]
    assert records == [
        RawRecord(0, "dataset Anthropic/hh-rlhf split test row 0", rows[0]),
        RawRecord(1, "dataset Anthropic/hh-rlhf split test row 1", rows[1]),
    ]


def test_hub_empty_config_means_default(tmp_path, monkeypatch, fake_datasets):
    monkeypatch.chdir(tmp_path)
    calls, _ = fake_datasets
    report = read_pairs("Anthropic/hh-rlhf")
    assert calls == [("Anthropic/hh-rlhf", None, "train", {})]
    assert [(p.row_id, p.prompt, p.chosen, p.rejected) for p in report.pairs] == [
        (0, ({"role": "user", "content": "Hi"},), "Hello.", "Go."),
        (1, ({"role": "user", "content": "Q"},), "A", "B"),
    ]


def test_hub_load_failure_is_input_error(tmp_path, monkeypatch, fake_datasets):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as exc:
        list(read_records("org/broken", "", "validation"))
    assert exc.value.message == (
        "cannot load Hugging Face dataset 'org/broken' (config default, split 'validation'): hub unreachable"
    )


def test_utf8_byte_order_mark_is_tolerated(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    (rec,) = list(read_records(str(path)))
    assert rec.error is None and rec.data == {"prompt": "p", "chosen": "a", "rejected": "b"}
