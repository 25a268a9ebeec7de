"""Explicit Arrow schemas of the tabular artifacts (bump a stage's SCHEMA_VERSION on change)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from segtool.errors import ArtifactError

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

# `segment` with strategy adaptive (schema version 2): the six columns above plus, per response
# position, the token reward r_i, the baseline b_i, the Schmitt-trigger state (+1 good, -1 bad),
# the eq.-15 band (+1 above b + delta, -1 below b - delta, 0 neutral) and the pivot tokens (indices
# where the state flips). Other strategies keep the six-column table (schema version 1).
SEGMENTS_ADAPTIVE = pa.schema(
    list(SEGMENTS)
    + [
        pa.field("token_reward", pa.list_(pa.float32()), nullable=False),
        pa.field("baseline", pa.list_(pa.float32()), nullable=False),
        pa.field("state", pa.list_(pa.int8()), nullable=False),
        pa.field("band", pa.list_(pa.int8()), nullable=False),
        pa.field("pivots", pa.list_(pa.int32()), nullable=False),
    ]
)

# `credit make`'s defect pairs: an ordinary preference file (prompt, chosen, rejected) plus where the
# one injected defect of `rejected` is. The prompt column is text, or chat messages when any prompt
# has more than one turn (a Parquet column has one type).
CHAT_MESSAGES = pa.list_(pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())]))


def credit_pairs_schema(chat_prompts: bool) -> pa.Schema:
    return pa.schema(
        [
            pa.field("prompt", CHAT_MESSAGES if chat_prompts else pa.string(), nullable=False),
            pa.field("chosen", pa.string(), nullable=False),  # the clean response
            pa.field("rejected", pa.string(), nullable=False),  # the same response with one defect
            pa.field("defect_type", pa.string(), nullable=False),
            pa.field("defect_position", pa.string(), nullable=False),  # beginning, middle or end
            pa.field("defect_span", pa.list_(pa.int64()), nullable=False),  # [start, end) characters of rejected
            pa.field("defect_token_span", pa.list_(pa.int64()), nullable=False),  # [start, end) response tokens
            pa.field("source", pa.string(), nullable=False),
            pa.field("source_row", pa.int64(), nullable=False),
            pa.field("seed", pa.int64(), nullable=False),  # the defect's random.Random seed
        ]
    )


def load_segments(rundir, columns: list[str] | None = None, art_id: str | None = None):
    """(record, Arrow table) of the run directory's current segment artifact (or of ``art_id``),
    hashes verified."""
    if art_id is None:
        record = rundir.require_head("segment")
    else:
        record = rundir.get(art_id)
        if record is None or record["status"] != "complete":
            raise ArtifactError(f"segment artifact {art_id[:12]} is missing or partial in {rundir.root}",
                                f"run `segtool segment --workdir {rundir.root} --resume`")
        rundir.verify(record)
    names = sorted(n for n in record["files"] if n.startswith("part-"))
    return record, pq.read_table([str(rundir.path_of(record, n)) for n in names], columns=columns)
