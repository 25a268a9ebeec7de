"""Read raw records from .jsonl, .jsonl.gz, Parquet, or a Hugging Face dataset name.

Each record comes with its row id (0-based position among the records) and a location string
for error messages ("data/prefs.jsonl line 18").
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from segtool.errors import InputError
from segtool.inputs.textfiles import UTF8_HINT, read_lines
from segtool.paths import looks_local

SKIP_HINT = "or pass --skip-invalid to skip and count such rows"


@dataclass
class RawRecord:
    row_id: int
    where: str
    data: dict | None  # None when the record itself could not be read
    error: InputError | None = None


def describe_source(path: str) -> str:
    """'file' for local files; 'hub' for dataset names. Missing local files are errors."""
    if not path:
        raise InputError("no preference data given", "pass --data FILE or set data.path in the preset")
    p = Path(path).expanduser()
    if p.is_file():
        return "file"
    if p.exists():
        raise InputError(f"data path {path} is a directory, not a file", "point --data at a .jsonl, .jsonl.gz or .parquet file")
    if looks_local(path):
        raise InputError(f"data file {path} not found", "check the path given to --data or data.path")
    return "hub"


def _jsonl_records(path: Path) -> Iterator[RawRecord]:
    row_id = 0
    for line in read_lines(path):
        if line.text is not None and not line.text.strip():
            continue
        where = f"{path} line {line.number}"
        data, error = None, None
        if line.text is None:
            error = InputError(f"{where}: {line.problem}", f"{UTF8_HINT}; {SKIP_HINT}")
        else:
            try:
                data = json.loads(line.text)
                if not isinstance(data, dict):
                    data, error = None, InputError(
                        f"{where}: expected a JSON object, got {type(data).__name__}",
                        f"write one object per line, e.g. {{\"prompt\": ..., \"chosen\": ..., \"rejected\": ...}}; {SKIP_HINT}",
                    )
            except json.JSONDecodeError as err:
                error = InputError(f"{where}: malformed JSON ({err.msg} at column {err.colno})", f"fix or remove that line; {SKIP_HINT}")
        yield RawRecord(row_id, where, data, error)
        row_id += 1


def _parquet_records(path: Path) -> Iterator[RawRecord]:
    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for damaged files
        raise InputError(f"cannot read {path} as Parquet: {err}", "check that the file is a complete Parquet file") from None
    row_id = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for data in batch.to_pylist():
            yield RawRecord(row_id, f"{path} row {row_id}", data)
            row_id += 1


def _hub_records(name: str, config: str, split: str) -> Iterator[RawRecord]:
    import datasets  # lazy: hub sources only, and resolved per call (the tests stand a fake in sys.modules)

    try:
        dataset = datasets.load_dataset(name, config or None, split=split)
    except Exception as err:  # network, missing dataset, bad split: all reported the same way
        raise InputError(
            f"cannot load Hugging Face dataset {name!r} (config {config or 'default'}, split {split!r}): {err}",
            "check the dataset name, data.name and data.split, and that the hub is reachable",
        ) from None
    for row_id, data in enumerate(dataset):
        yield RawRecord(row_id, f"dataset {name} split {split} row {row_id}", data)


def read_records(path: str, name: str = "", split: str = "train") -> Iterator[RawRecord]:
    if describe_source(path) == "hub":
        yield from _hub_records(path, name, split)
        return
    p = Path(path).expanduser()
    if p.name.endswith((".jsonl", ".jsonl.gz")):
        yield from _jsonl_records(p)
    elif p.suffix == ".parquet":
        yield from _parquet_records(p)
    else:
        raise InputError(f"{path}: unsupported file type", "use .jsonl, .jsonl.gz or .parquet")
