"""Explicit Arrow schemas of the tabular artifacts (bump a stage's SCHEMA_VERSION on change)."""

from __future__ import annotations

import pyarrow as pa

SEGMENTS = pa.schema(
    [
        pa.field("row_id", pa.int64(), nullable=False),  # 0-based position of the pair in the input
        pa.field("side", pa.string(), nullable=False),  # "chosen" or "rejected"
        pa.field("prompt_token_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("response_token_ids", pa.list_(pa.int32()), nullable=False),  # ends with EOS
        pa.field("entropy", pa.list_(pa.float32()), nullable=False),  # H_j per response position
        pa.field("segment_ends", pa.list_(pa.int32()), nullable=False),  # indices into the response
    ]
)
