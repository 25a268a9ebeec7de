"""Telling a local path from a Hugging Face hub id ("org/name") by its spelling alone."""

from __future__ import annotations

LOCAL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet", ".gguf", ".safetensors")


def looks_local(value: str, suffixes: tuple[str, ...] = LOCAL_SUFFIXES) -> bool:
    """True for anything that cannot be a hub id: a relative or absolute path, a path of more than
    two parts, or a name ending in one of ``suffixes``."""
    return value.startswith((".", "/", "~")) or value.count("/") > 1 or value.endswith(suffixes)
