"""Fixtures shared by every test folder.

* ``tiny_model_dir``: the embedded TinyStories-656K model folder (a real Llama; tokenizer without a
  chat template, bos id 1, eos ``<|end_story|>`` id 2).
* ``tiny_tokenizer``: its tokenizer, loaded once per session (loading costs ~3 s of imports).
* ``write_jsonl(path, rows)``: write preference rows to ``.jsonl`` / ``.jsonl.gz``.
* ``stand_in_sat``: a stand-in ``wtpsplit`` module (the SaT weights come from the hub, which tests
  never reach) whose ``SaT(name).split(texts)`` cuts after '.', '!' or '?' and the whitespace after.
* an autouse fixture pointing ``SEGTOOL_CACHE`` at a per-test temporary folder, so content
  fingerprint caches never touch ``~/.cache``.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import sys
import tempfile
import types
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL_DIR = REPO_ROOT / "data" / "models" / "tinystories-656k"
TINY_PREFS = REPO_ROOT / "data" / "prefs" / "hh-helpful-tiny.jsonl.gz"

_SESSION_CACHE: str | None = None


def pytest_configure(config):
    # Before any test module imports segtool: even code that read SEGTOOL_CACHE at import time
    # would point at a throwaway folder, never at ~/.cache.
    global _SESSION_CACHE
    _SESSION_CACHE = tempfile.mkdtemp(prefix="segtool-test-cache-")
    os.environ["SEGTOOL_CACHE"] = _SESSION_CACHE


def pytest_unconfigure(config):
    if _SESSION_CACHE:
        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


@pytest.fixture(autouse=True)
def _isolated_segtool_cache(monkeypatch, tmp_path_factory):
    """SEGTOOL_CACHE -> a fresh folder for each test (read per call by segtool.artifacts.fingerprint,
    and inherited by subprocesses); SEGTOOL_DEBUG unset so error output is the user-facing one."""
    cache_dir = tmp_path_factory.mktemp("segtool-cache")
    monkeypatch.setenv("SEGTOOL_CACHE", str(cache_dir))
    monkeypatch.delenv("SEGTOOL_DEBUG", raising=False)
    return cache_dir


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    assert (TINY_MODEL_DIR / "config.json").is_file(), f"embedded model missing at {TINY_MODEL_DIR}"
    return TINY_MODEL_DIR


@pytest.fixture(scope="session")
def tiny_prefs_path() -> Path:
    assert TINY_PREFS.is_file(), f"bundled preference data missing at {TINY_PREFS}"
    return TINY_PREFS


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


def _write_jsonl(path, rows) -> Path:
    """Write ``rows`` one per line: dicts/lists are JSON-encoded, strings are written verbatim
    (for blank or malformed lines). A ``.gz`` suffix writes gzip."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    text = "".join(line + "\n" for line in lines)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def write_jsonl():
    return _write_jsonl


def stand_in_sentences(text: str) -> list[str]:
    """Sentences cut after '.', '!' or '?' and the whitespace that follows, kept on the sentence as
    SaT (wtpsplit) keeps it: their concatenation is the text."""
    return re.findall(r".+?(?:[.!?]\s+|$)", text, flags=re.S)


class StandInSaT:
    """``wtpsplit.SaT`` as segtool calls it: built from a model name, ``split(list)`` yields lists."""

    loaded: list[str] = []
    sentences = staticmethod(stand_in_sentences)

    def __init__(self, name):
        StandInSaT.loaded.append(name)

    def split(self, texts):
        assert isinstance(texts, list)  # a batch, so SaT yields one list of sentences per text
        return (stand_in_sentences(t) for t in texts)


@pytest.fixture
def stand_in_sat(monkeypatch):
    """Install the stand-in ``wtpsplit`` module for this test; returns StandInSaT (``.loaded``: the
    names it was built from; ``.sentences(text)``: its sentences of one text)."""
    module = types.ModuleType("wtpsplit")
    module.SaT = StandInSaT
    monkeypatch.setitem(sys.modules, "wtpsplit", module)
    monkeypatch.setattr(StandInSaT, "loaded", [])
    return StandInSaT


@pytest.fixture
def cli(capfd, monkeypatch):
    """(exit code, stdout, stderr) of ``segtool ARGS`` run in this process through its entry point."""
    from segtool.cli.app import main

    def run(*args):
        capfd.readouterr()
        monkeypatch.setattr(sys, "argv", ["segtool", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        out, err = capfd.readouterr()
        return code, out, err

    return run
