"""segtool: segment-level reward RLHF for language models."""

__version__ = "0.1.0"
