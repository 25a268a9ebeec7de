"""The answers artifact of a benchmark evaluation (stage ``answers-<bench>``): a model's answers to
the benchmark's prompts, written shard by shard (``eval.shard_prompts`` questions each) so a killed
run continues with ``--resume``, then gathered into ``answers.parquet`` and the benchmark's own file
format (``segtool.eval.formats``).

Identity: the benchmark, the prompts' content, the model's content (never its path), its display
name (written into the upstream files), and every generation setting; batch sizes are not part of it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from segtool.artifacts.files import atomic_path
from segtool.artifacts.fingerprint import fingerprint_path
from segtool.artifacts.manifest import RunDir, artifact_id
from segtool.config.loader import config_to_dict
from segtool.config.schema import Config
from segtool.console import STDERR, progress
from segtool.errors import ArtifactError
from segtool.eval import answering, benchmarks, formats
from segtool.inputs.formatting import Encoder
from segtool.models.generators import make_generator
from segtool.models.loading import load_causal_lm, load_tokenizer, pick_device, resolve_model_source
from segtool.pipeline.common import already_complete

SCHEMA_VERSION = 2  # 2: special-token strings removed from the answers (older answers keep them)
SHARD = "part-{:05d}.parquet"


@dataclass(frozen=True)
class Target:
    """A model that answers: a folder or hub id, its display name, and its parent artifacts."""

    name: str
    model_cfg: object  # ModelConfig with path = this model
    parents: tuple[str, ...] = ()
    what: str = ""

    @property
    def source(self):
        return resolve_model_source(self.model_cfg)


def stage_name(bench: str) -> str:
    return f"answers-{bench}"


def model_target(cfg: Config, model: str, name: str | None = None) -> Target:
    """--model PATH_OR_HUB_ID; ``sft`` means the configured pi_SFT (model.path)."""
    if model == "sft" and not Path("sft").exists():
        return Target(name or _default_name(cfg.model.path), cfg.model, (), f"the SFT model {cfg.model.path}")
    path = Path(model).expanduser()
    location = str(path.resolve()) if path.exists() else model
    model_cfg = dataclasses.replace(cfg.model, path=location, gguf_file="", revision="main")
    return Target(name or _default_name(model), model_cfg, (), f"model {location}")


def policy_target(cfg: Config, name: str | None = None) -> Target:
    """The run directory's PPO policy (the ``policy`` folder of its ppo artifact)."""
    rundir = RunDir(cfg.run.workdir)
    if rundir.head("ppo") is None:
        raise ArtifactError(
            f"nothing to evaluate: {rundir.root} has no ppo artifact",
            "pass --model PATH_OR_HUB_ID (--model sft evaluates model.path), or train a policy with `segtool ppo` first",
        )
    record = rundir.require_head("ppo")
    folder = rundir.path_of(record, "policy")
    if not (folder / "config.json").is_file():
        raise ArtifactError(f"{folder} is not a Hugging Face model folder", f"re-run `segtool ppo --workdir {rundir.root} --force`")
    model_cfg = dataclasses.replace(cfg.model, path=str(folder), gguf_file="", revision="main")
    return Target(name or f"{rundir.root.name}-ppo", model_cfg, (record["id"],), f"the ppo policy of {rundir.root}")


def _default_name(model: str) -> str:
    path = Path(model)
    return path.name if path.exists() else model


def max_new_tokens(cfg: Config, bench: str) -> int:
    return cfg.eval.max_new_tokens or benchmarks.spec(bench).default_max_new_tokens


def identity(cfg: Config, bench: str, target: Target) -> dict:
    """Everything that decides the answers (and the upstream files' content)."""
    spec = benchmarks.spec(bench)
    ident = {
        "bench": bench, "prompts": fingerprint_path(spec.prompts), "limit": cfg.eval.limit,
        "model": target.source.fingerprint(), "dtype": cfg.model.dtype, "name": target.name,
        "max_new_tokens": max_new_tokens(cfg, bench), "top_p": cfg.eval.top_p, "seed": cfg.run.seed,
        "template": cfg.tokenize.template, "max_prompt_len": cfg.tokenize.max_prompt_len,
    }
    if bench != "mtbench":  # MT-Bench uses FastChat's per-category temperatures
        ident["temperature"] = cfg.eval.temperature
    if bench == "gsm8k":
        ident["gsm8k_shots"] = cfg.eval.gsm8k_shots
    if cfg.eval.generator != "hf":  # answers made before the knob keep their ids
        ident["generator"] = cfg.eval.generator
    return ident


def plan_id(cfg: Config, bench: str, target: Target) -> str:
    return artifact_id(stage_name(bench), identity(cfg, bench, target), list(target.parents), SCHEMA_VERSION)


def load(rundir: RunDir, record: dict) -> list[dict]:
    rundir.verify(record, ["answers.parquet"])
    return pq.read_table(rundir.path_of(record, "answers.parquet")).to_pylist()


def ensure(cfg: Config, bench: str, target: Target, *, resume: bool, force: bool, quiet: bool) -> tuple[dict, list[dict]]:
    """(complete answers record, answer rows): reused when complete, else generated (continuing a
    partial artifact's shards with ``resume``)."""
    rundir = RunDir(cfg.run.workdir)
    stage = stage_name(bench)
    ident = identity(cfg, bench, target)
    art_id = artifact_id(stage, ident, list(target.parents), SCHEMA_VERSION)
    done = already_complete(rundir, stage, art_id, None, force)
    if done:
        return done.record, load(rundir, done.record)
    return _generate(cfg, bench, target, rundir, art_id, ident, resume, quiet)


def _generate(cfg, bench, target, rundir, art_id, ident, resume, quiet) -> tuple[dict, list[dict]]:
    started = time.perf_counter()
    items = benchmarks.questions(bench, cfg.eval.limit)
    shots = benchmarks.gsm8k_shots(cfg.eval.gsm8k_shots) if bench == "gsm8k" else []
    source = target.source
    tokenizer = load_tokenizer(source, target.model_cfg)
    device = pick_device(cfg.model.device)
    model = load_causal_lm(source, target.model_cfg, device)
    context = answering.context_length(model, cfg.tokenize.max_len)
    encoder = Encoder.create(tokenizer, context, min(cfg.tokenize.max_prompt_len, context - 1), cfg.tokenize.template)
    prior = rundir.get(art_id)
    resuming = resume and prior is not None and prior["status"] == "partial"
    if prior is not None and prior["status"] == "partial" and not resume:
        STDERR.print(f"found partial {bench} answers {art_id[:12]}; starting over (pass --resume to continue them)")
    inputs = {"model": {"source": source.location, "what": target.what}, "benchmark": str(benchmarks.spec(bench).prompts),
              "template": "chat" if encoder.use_chat_template else "plain", "context": context}
    record = rundir.begin(stage_name(bench), art_id, config=config_to_dict(cfg), identity_config=ident,
                          parents=list(target.parents), schema_version=SCHEMA_VERSION, inputs=inputs, resume=resume,
                          layout={"shard_prompts": cfg.eval.shard_prompts})
    if resuming:
        rundir.verify(record)
    settings = answering.Settings(max_new_tokens(cfg, bench), cfg.eval.temperature, cfg.eval.top_p, cfg.run.seed, cfg.eval.batch_size)
    size = record["layout"]["shard_prompts"]  # a resumed artifact keeps its sharding
    shards = [items[k : k + size] for k in range(0, len(items), size)]
    todo = [k for k in range(len(shards)) if SHARD.format(k) not in record["files"]]
    turns_left = sum(len(q.turns) for k in todo for q in shards[k])
    longest = min(context, encoder.max_prompt_len + settings.max_new_tokens)  # prompts keep their right end
    generator = make_generator(cfg.eval.generator, model, max_model_len=longest, max_batch=cfg.eval.batch_size,
                               seed=cfg.run.seed, knob="eval.generator") if todo else None
    try:
        with progress(quiet, turns_left, f"{bench} answers ({target.name})", unit="turns") as advance:
            for k in todo:
                answers = answering.answer_questions(model, encoder, bench, shards[k], settings, shots=shots,
                                                     context=context, advance=advance, generator=generator)
                with atomic_path(rundir.path_of(record, SHARD.format(k))) as tmp:
                    pq.write_table(_table(answers), tmp)
                rundir.add_file(art_id, SHARD.format(k), {"questions": len(answers)})
    finally:
        if generator is not None:
            generator.close()
    record = rundir.get(art_id)
    rundir.verify(record)
    table = pa.concat_tables([pq.read_table(rundir.path_of(record, SHARD.format(k))) for k in range(len(shards))])
    with atomic_path(rundir.path_of(record, "answers.parquet")) as tmp:
        pq.write_table(table, tmp)
    rundir.add_file(art_id, "answers.parquet")
    rows = table.to_pylist()
    name = formats.ANSWER_FILES[bench]
    formats.write_records(rundir.path_of(record, name), formats.answer_records(bench, target.name, rows), bench == "alpaca")
    rundir.add_file(art_id, name)
    metrics = _summary(rows, bench, target)
    record = rundir.complete(art_id, rows={"questions": len(rows)}, metrics=metrics, seconds=time.perf_counter() - started)
    return record, rows


def _table(answers):
    return pa.table({
        "qid": pa.array([a.question.qid for a in answers], pa.string()),
        "index": pa.array([a.question.index for a in answers], pa.int64()),
        "category": pa.array([a.question.category for a in answers], pa.string()),
        "turns": pa.array([a.turns for a in answers], pa.list_(pa.string())),
        "new_tokens": pa.array([a.new_tokens for a in answers], pa.list_(pa.int32())),
        "truncated": pa.array([a.truncated for a in answers], pa.list_(pa.bool_())),
        "temperature": pa.array([a.temperature for a in answers], pa.float32()),
    })


def _summary(rows: list[dict], bench: str, target: Target) -> dict:
    tokens = [n for r in rows for n in r["new_tokens"]]
    cut = [c for r in rows for c in r["truncated"]]
    return {"benchmark": bench, "model": target.name, "questions": len(rows), "turns": len(tokens),
            "avg_new_tokens": round(sum(tokens) / len(tokens), 2), "truncated_share": round(sum(cut) / len(cut), 4),
            "empty_answers": sum(1 for r in rows for t in r["turns"] if not t.strip())}
