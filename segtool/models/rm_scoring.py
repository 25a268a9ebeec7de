"""Score new text with a trained reward model, segmented exactly as in its training (shared by
`eval rm`, `eval credit`, `show rewards`, the proxy judge and ``segtool.reward_model``).

The RM folder's segtool_rm.json says how: strategy, c_ent, n, EOS policy, template and lengths (and
the SaT model of strategy sat, which splits the new text's sentences).
Entropy segmentation needs pi_SFT; it must be the model the RM was trained from (checked by
fingerprint), otherwise the segments would differ from training.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer

from segtool.artifacts.manifest import RunDir
from segtool.config.schema import Config
from segtool.console import STDERR
from segtool.core.batching import micro_batches, pair_micro_batches
from segtool.core.boundaries import punct_table
from segtool.core.rewards import segment_rewards
from segtool.errors import ArtifactError, ConfigError, InputError
from segtool.inputs.formatting import Encoder
from segtool.models.loading import DTYPES, load_causal_lm, pad_id_of, pick_device, resolve_model_source
from segtool.models.packing import packing_width
from segtool.models.reward import METADATA, load_reward_model
from segtool.models.rm_batches import Example, collate, forward_batch, pairs_from_segments, sequence_scores
from segtool.models.sat import load_sat, sentence_end_marks
from segtool.models.segmentation import (
    Sequence,
    compute_entropies,
    encode_pairs,
    entropy_pack_width,
    pair_texts,
    shard_table,
)

REQUIRED_KEYS = {"strategy", "c_ent", "n", "eos_in_last_segment", "readout", "aggregation", "template",
                 "max_len", "max_prompt_len", "sft_model"}


@dataclass
class ScoringSetup:
    folder: Path
    meta: dict
    cfg: Config  # the run config with the RM's segmentation and lengths applied
    rm: object
    encoder: object
    device: str
    pack_width: int = 0  # tokens per packed row of the RM's passes (train_rm.packing); 0 = padded
    splitter: object = None  # the sentence splitter of an RM segmented with strategy sat (models.sat)


def resolve_rm_folder(cfg: Config, rm: str | None) -> tuple[Path, list[str]]:
    """The RM folder to use and its parent artifact ids: --rm DIR, else the run directory's train-rm."""
    if rm:
        folder = Path(rm).expanduser().resolve()
        if not (folder / METADATA).is_file():
            raise ArtifactError(f"{folder} is not a segtool reward model folder (no {METADATA})",
                                "pass the model/ folder of a train-rm artifact")
        return folder, []
    rundir = RunDir(cfg.run.workdir)
    record = rundir.require_head("train-rm")
    return rundir.path_of(record, "model"), [record["id"]]


def read_metadata(folder: Path) -> dict:
    """The RM folder's segtool_rm.json, checked for every key scoring needs."""
    try:
        meta = json.loads((folder / METADATA).read_text())
    except (OSError, ValueError) as err:
        raise ArtifactError(f"cannot read {folder / METADATA}: {err}", "retrain with `segtool train-rm --force`") from None
    missing = sorted(REQUIRED_KEYS - set(meta) | ({"sat_model"} - set(meta) if meta.get("strategy") == "sat" else set()))
    if missing:
        raise ArtifactError(f"{folder / METADATA} lacks {', '.join(missing)}",
                            "it was written by an older segtool: retrain with `segtool train-rm --force`")
    return meta


def load_setup(cfg: Config, folder: Path) -> ScoringSetup:
    meta = read_metadata(folder)
    seg = dataclasses.replace(cfg.segment, strategy=meta["strategy"], c_ent=meta["c_ent"], n=meta["n"],
                              eos_in_last_segment=meta["eos_in_last_segment"],
                              sat_model=meta.get("sat_model", cfg.segment.sat_model))
    tok_cfg = dataclasses.replace(cfg.tokenize, max_len=meta["max_len"], max_prompt_len=meta["max_prompt_len"],
                                  template="auto" if meta["template"] == "chat" else "plain")
    run_cfg = dataclasses.replace(cfg, segment=seg, tokenize=tok_cfg)
    device = pick_device(cfg.model.device)
    rm, _ = load_reward_model(folder, getattr(torch, DTYPES[cfg.model.dtype]), device)
    encoder = Encoder.create(AutoTokenizer.from_pretrained(folder), tok_cfg.max_len, tok_cfg.max_prompt_len, tok_cfg.template)
    splitter = load_sat(seg.sat_model, device) if seg.strategy == "sat" else None
    return ScoringSetup(folder, meta, run_cfg, rm, encoder, device, rm_pack_width(rm, cfg, device), splitter)


def rm_pack_width(rm, cfg: Config, device) -> int:
    """Tokens per packed row for ``rm``'s passes under train_rm.packing (0: padded; a note says why
    when the probe turned packing off)."""
    width, note = packing_width(cfg.train_rm.packing, cfg.train_rm.pack_width, {"reward model": rm.backbone},
                                rm.hf.config.vocab_size, device, "train_rm.packing")
    if note:
        STDERR.print(f"[yellow]note:[/] {note}", highlight=False)
    return width


def segment_pairs(setup: ScoringSetup, pairs) -> list:
    """[(chosen Example, rejected Example)] segmented as in the RM's training."""
    return pairs_from_segments(_segment_table(setup, encode_pairs(pairs, setup.encoder), pair_texts(pairs)))[1]


def segment_responses(setup: ScoringSetup, items) -> list:
    """[Example] for (prompt messages, response text) items, segmented as in the RM's training."""
    seqs, texts = [], []
    for k, (messages, response) in enumerate(items):
        prompt, ids = setup.encoder.encode(messages, response)
        if len(ids) < 2:  # the EOS alone
            raise InputError(f"response {k} has no tokens", "give a non-empty response")
        seqs.append(Sequence(k, "chosen", prompt, ids))
        texts.append(response)
    table = _segment_table(setup, seqs, texts)
    columns = [table[c].to_pylist() for c in ("prompt_token_ids", "response_token_ids", "segment_ends")]
    return [Example(*(np.asarray(v) for v in row)) for row in zip(*columns)]


def _segment_table(setup: ScoringSetup, seqs, texts: list[str]):
    """The segment table of encoded sequences (in their order; ``texts`` their response texts), with
    entropies from pi_SFT when the strategy needs them."""
    if setup.cfg.segment.strategy == "entropy":
        source = resolve_model_source(setup.cfg.model)
        if source.fingerprint() != setup.meta["sft_model"]:
            raise ConfigError(
                "the configured model is not the pi_SFT this reward model was segmented with",
                "pass that model with --set model.path=... (entropy segments depend on it)",
            )
        sft = load_causal_lm(source, setup.cfg.model, setup.device)
        entropies = compute_entropies(sft, seqs, setup.cfg, setup.device,
                                      pack_width=entropy_pack_width(sft, setup.cfg, setup.device))
    else:  # these strategies never look at entropies
        entropies = [np.zeros(len(s.response), dtype=np.float32) for s in seqs]
    table_punct = punct_table(setup.encoder.tokenizer) if setup.cfg.segment.strategy == "punct" else None
    sentences = None if setup.splitter is None else sentence_end_marks(
        setup.splitter, setup.encoder, texts, [len(s.response) for s in seqs])
    return shard_table(seqs, entropies, setup.cfg, table_punct, sentence_ends=sentences)


def batch_scores(setup: ScoringSetup, examples: list, autocast) -> np.ndarray:
    """e(x, y) of ``examples`` from one forward pass, computed as in training: [N] float32."""
    return _forward(setup, examples, autocast)[0]


def _forward(setup: ScoringSetup, examples: list, autocast, keep_values: bool = False):
    """One forward pass over ``examples``: (e(x, y) [N] float32, v [N, L] float32 or None)."""
    batch = collate(examples, pad_id_of(setup.encoder.tokenizer), setup.pack_width)
    with torch.no_grad(), autocast():
        outputs = forward_batch(setup.rm, batch, setup.device)
        e = sequence_scores(setup.rm, batch, setup.meta["readout"], setup.meta["aggregation"], setup.device, outputs)
    return e.float().cpu().numpy(), (outputs[0].float().cpu().numpy() if keep_values else None)


def score_responses(setup: ScoringSetup, items, micro_batch: int, autocast) -> np.ndarray:
    """e(x, y) of every (prompt messages, response text) item, each response its own sequence as in
    training, in length-sorted micro-batches: [N] float32 in the items' order."""
    examples = segment_responses(setup, items)
    scores = np.zeros(len(examples), dtype=np.float32)
    for idx in micro_batches(np.arange(len(examples)), [e.length for e in examples], micro_batch):
        scores[idx] = batch_scores(setup, [examples[i] for i in idx], autocast)
    return scores


def segment_rewards_of(setup: ScoringSetup, example) -> np.ndarray:
    """r_t of every segment of one example (METHOD §3 read-out), float32."""
    batch = collate([example], pad_id_of(setup.encoder.tokenizer))  # one sequence: nothing to pack
    with torch.no_grad():
        values, _ = forward_batch(setup.rm, batch, setup.device)
        r = segment_rewards(values, batch["ends"].to(setup.device), batch["rows"].to(setup.device),
                            setup.meta["readout"], batch["prompt_last"].to(setup.device))
    return r.float().cpu().numpy()


def score_pairs(setup: ScoringSetup, pairs, micro_batch: int, autocast, keep_values: bool = False):
    """e(x, y) of chosen and rejected for every pair, as in training: ([N, 2] float32, values).

    One forward pass per length-grouped micro-batch. With ``keep_values``, values[i] = (chosen,
    rejected) arrays of v from the last prompt token to the EOS (len(response) + 1, float32);
    otherwise values is None.
    """
    scores = np.zeros((len(pairs), 2), dtype=np.float32)
    values = [[None, None] for _ in pairs] if keep_values else None
    for idx in pair_micro_batches(pairs, np.arange(len(pairs)), micro_batch):
        examples = [pairs[i][0] for i in idx] + [pairs[i][1] for i in idx]
        e, v = _forward(setup, examples, autocast, keep_values)
        scores[idx] = e.reshape(2, -1).T
        if keep_values:
            for row, example in enumerate(examples):
                side, k = divmod(row, len(idx))
                values[idx[k]][side] = v[row, len(example.prompt) - 1 : example.length]
    return scores, values
