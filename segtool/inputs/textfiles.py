"""Text files (plain or gzipped) read line by line, with errors a user can act on.

Lines are decoded one at a time, so invalid UTF-8 is reported with its line and column (and a caller
can skip that line); a truncated or damaged gzip stream is an InputError naming the file and the
last complete line, never a bare EOFError.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from segtool.errors import InputError

UTF8_HINT = "re-save the file as UTF-8, or fix that line"


@dataclass(frozen=True)
class Line:
    number: int  # 1-based
    text: str | None  # None when the bytes are not valid UTF-8
    problem: str = ""  # why text is None


def _decode(raw: bytes, first: bool) -> tuple[str | None, str]:
    try:
        return raw.decode("utf-8-sig" if first else "utf-8"), ""  # -sig: tolerate a byte-order mark
    except UnicodeDecodeError as err:
        return None, f"invalid UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1})"


def read_lines(path: Path) -> Iterator[Line]:
    """Every line of ``path`` (gzip when the name ends in .gz), decoded or with its problem."""
    opener = gzip.open if path.name.endswith(".gz") else open
    number = 0
    try:
        with opener(path, "rb") as fh:
            for number, raw in enumerate(fh, start=1):
                text, problem = _decode(raw, number == 1)
                yield Line(number, text, problem)
    except gzip.BadGzipFile as err:
        raise InputError(f"{path}: not gzip data ({err})", "compress it with gzip, or drop .gz from its name") from None
    except (EOFError, zlib.error) as err:  # gzip's own words for a truncated stream
        read = f"; lines 1-{number} were read" if number else ""  # gzip reads ahead: the cut may come later
        raise InputError(
            f"{path}: the gzip data is cut off or damaged ({err}{read})",
            "the file is incomplete: copy or download it again (`gzip -t FILE` checks it)",
        ) from None
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror or err}", "check that the file exists and is readable") from None


def read_text(path: Path, where: str = "{path}: line {number}") -> str:
    """The whole file as text; invalid UTF-8 is an InputError naming the line (``where`` formats it)."""
    parts = []
    for line in read_lines(path):
        if line.text is None:
            raise InputError(f"{where.format(path=path, number=line.number)}: {line.problem}", UTF8_HINT)
        parts.append(line.text)
    return "".join(parts)
