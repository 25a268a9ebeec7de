"""Sentence boundaries from a SaT sentence segmenter (the `sat` strategy; wtpsplit, optional).

A splitter maps texts to their sentences (``list[str] -> list[list[str]]``). The SaT one comes from
the optional ``wtpsplit`` package (``pip install 'segtool[sat]'``), imported only here and only
when the strategy is used; tests pass a stand-in splitter. Sentences are mapped to response tokens
exactly: a sentence ending at character c ends the segment at the response token holding character
c - 1 (``inputs.offsets``), its trailing whitespace left to the next segment.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from segtool.artifacts.fingerprint import fingerprint_path
from segtool.errors import ConfigError
from segtool.inputs.offsets import sentence_char_ends, token_ending_at

Splitter = Callable[[list[str]], list[list[str]]]
HUB_PREFIX = "segment-any-text"  # wtpsplit's hub organisation for a bare model name


def sat_identity(name: str) -> dict:
    """What identifies the SaT model in an artifact: a local folder by content, a hub name by name."""
    if Path(name).expanduser().is_dir():
        return {"kind": "local", "sha256": fingerprint_path(Path(name).expanduser())}
    return {"kind": "hub", "id": f"{HUB_PREFIX}/{name}"}


def load_sat(name: str, device: str = "cpu") -> Splitter:
    """The SaT model ``name`` (a segment-any-text hub name such as sat-3l-sm, or a local folder)
    as a splitter; ConfigError when wtpsplit is missing or the model cannot be loaded."""
    try:
        from wtpsplit import SaT  # optional dependency: lazy
    except ImportError:
        raise ConfigError("segment.strategy = 'sat' needs the wtpsplit package",
                          "pip install 'segtool[sat]'") from None
    local = Path(name).expanduser()
    try:
        model = SaT(str(local) if local.is_dir() else name)
    except (OSError, ValueError) as err:
        raise ConfigError(f"segment.sat_model = {name!r}: cannot load this SaT model ({err})",
                          "name a segment-any-text model (e.g. sat-3l-sm) with the hub reachable, or a local folder") from None
    if device != "cpu":
        model.to(device)

    def split(texts: list[str]) -> list[list[str]]:
        return [list(sentences) for sentences in model.split(list(texts))]

    return split


def wtpsplit_version() -> str | None:
    try:
        return version("wtpsplit")
    except PackageNotFoundError:
        return None


def sentence_end_marks(splitter: Splitter, encoder, texts: list[str], lengths: list[int]) -> np.ndarray:
    """[sum(lengths)] bool over the flat response positions of ``texts`` (each encoded by ``encoder``
    to ``lengths[i]`` tokens, EOS included): True on the token ending a sentence. Ends past the
    max_len cut are dropped; the EOS policy closes the last segment."""
    sentences = splitter(list(texts))
    if len(sentences) != len(texts):
        raise ConfigError(f"the sentence splitter (segment.sat_model) returned {len(sentences)} results for "
                          f"{len(texts)} texts", "install wtpsplit >= 2: pip install 'segtool[sat]'")
    marks = np.zeros(int(sum(lengths)), dtype=bool)
    offset = 0
    for text, parts, n in zip(texts, sentences, lengths):
        try:
            char_ends = sentence_char_ends(text, parts)
        except ValueError as err:
            raise ConfigError(f"the sentences of segment.sat_model do not match the response {text[:40]!r}: {err}",
                              "install wtpsplit >= 2 (pip install 'segtool[sat]'): its sentences are the text's, in order") from None
        offsets = encoder.response_offsets(text)
        for end in char_ends:
            j = token_ending_at(offsets, end)
            if 0 <= j < n - 1:  # n - 1 is the EOS (or the last kept token after the cut, made EOS)
                marks[offset + j] = True
        offset += n
    return marks
