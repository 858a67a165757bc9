"""The quota loop: generate candidates in rounds of shards and validate them until the target number
of accepted samples is reached. Backend-agnostic: a generator backend supplies ``write_raw(round,
prompts, jobs)``, which has every job's raw Parquet shard written (:func:`write_raw_shard`),
normally as tasks of the phase (``PhaseContext.map_tasks``), so any executor can run them.

Target: ``generate.num_samples``; when null, the prompt source's own count times the samples per
prompt for finite sources (``real_blocks``, ``prompt_dataset``), else the number of real training
rows. Round r draws ``ceil(missing * factor / m)`` prompts (m samples each) from the prompt
source, called with a seed of its own (round 0 with the phase seed), where ``factor`` is
``generate.oversample`` in round 0 and afterwards the larger of it and 1 / (acceptance so far).
Candidates drawn in all rounds are capped at ``generate.max_attempts`` x target; when the cap is
spent, or the observed acceptance rate says it will be, a UserError names the validator that
rejects the most. Accepted samples are taken in (round, shard, row) order up to the target; the
surplus of the last round is dropped. Rejected candidates go to ``rejected/`` with
``rejected_by`` and ``reason``.

Files (in ``shards/``; every write atomic): ``prompts_r<round>.parquet``, ``raw_r<round>_<shard>``
(generated, not yet validated) and ``shard_r<round>_<shard>`` (validated). Shard s of round r is
generated with the seed (phase seed, r, s), so a killed phase resumes by skipping finished shards
and reproduces the same samples, whichever executor and however many workers ran them.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from collapsebench.api import Dataset, PhaseContext, Tokenizer
from collapsebench.config import GenerateConfig
from collapsebench.errors import UserError
from collapsebench.io import atomic_write_with, derive_seed
from collapsebench.registry import prompt_sources
from collapsebench.validators.chain import apply_chain, validator_keys

EARLY_STOP_MIN_CANDIDATES = 100  # judge reachability from the acceptance rate only past this many


@dataclass(frozen=True)
class Job:
    """One shard of one round: prompts ``[lo, hi)`` of the round's prompt table."""

    round: int
    shard: int
    lo: int
    hi: int
    seed: int
    path: str  # the raw shard to write

    @property
    def name(self) -> str:
        return f"r{self.round:03d}-s{self.shard:05d}"

    @property
    def final(self) -> Path:
        """The validated shard."""
        return Path(self.path).with_name(f"shard_r{self.round:03d}_{self.shard:05d}.parquet")


WriteRaw = Callable[[int, Path, list[Job]], None]


# ------------------------------------------------------------------------------------ shard files

def write_table(rows: dict[str, list[Any]], path: Path) -> None:
    """Write a Parquet file atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    atomic_write_with(Path(path), lambda tmp: pq.write_table(pa.table(rows), tmp))


def write_raw_shard(path: str | Path, prompts: list[str], parents: list[str], continuations: list[str],
                    new_tokens: list[int], per_prompt: int) -> None:
    """The candidates of one job: ``per_prompt`` continuations per prompt, prompt-major."""
    if len(continuations) != len(prompts) * per_prompt:
        raise RuntimeError(f"{len(continuations)} continuations for {len(prompts)} prompts x {per_prompt}")
    write_table({"prompt": [p for p in prompts for _ in range(per_prompt)],
                 "parent": [p for p in parents for _ in range(per_prompt)],
                 "continuation": continuations, "new_tokens": new_tokens}, Path(path))


def _read(path: Path, columns: list[str] | None = None) -> dict[str, list[Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=columns).to_pydict()


def read_prompts(path: str | Path, lo: int, hi: int) -> dict[str, list[Any]]:
    """Rows ``[lo, hi)`` of a round's prompt table (``prompt``, ``parent``), memory-mapped."""
    import pyarrow.parquet as pq

    return pq.read_table(path, memory_map=True).slice(lo, hi - lo).to_pydict()


def _num_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


# ------------------------------------------------------------------------------------ prompts and target

def _save_prompts(ds: Dataset, path: Path) -> None:
    import datasets

    table = ds.select_columns(["prompt", "parent"]).cast_column("parent", datasets.Value("string"))
    atomic_write_with(path, lambda tmp: table.to_parquet(str(tmp)))


def _prompts_for_round(ctx: PhaseContext, r: int, n: int | None, tokenizer: Tokenizer, shard_dir: Path) -> Path:
    """Write (once) and return the round's prompt table."""
    path = shard_dir / f"prompts_r{r:03d}.parquet"
    if path.exists():
        return path
    if n is None and (shard_dir / "prompts_natural.parquet").exists():
        os.replace(shard_dir / "prompts_natural.parquet", path)
        return path
    spec = ctx.config.generate.prompts
    rctx = ctx if r == 0 else ctx.replace(seed=derive_seed(ctx.seed, r) % 2**63)
    ds = prompt_sources.call(spec.name, rctx, n, tokenizer, key="generate.prompts", kwargs=spec.kwargs)
    if n is not None and len(ds) != n:
        raise UserError(f"generate.prompts: '{spec.name}' returned {len(ds)} prompts for {n}")
    _save_prompts(ds, path)
    return path


def target_size(ctx: PhaseContext, per_prompt: int, tokenizer: Tokenizer) -> tuple[int, int | None]:
    """(accepted samples wanted, the finite prompt source's own count or None)."""
    cfg = ctx.config.generate
    spec = cfg.prompts
    if cfg.num_samples is not None or not prompt_sources.entry(spec.name, key="generate.prompts").finite:
        return ctx.num_samples(), None
    shard_dir = ctx.out_dir / "shards"
    shard_dir.mkdir(exist_ok=True)
    natural, round0 = shard_dir / "prompts_natural.parquet", shard_dir / "prompts_r000.parquet"
    if not natural.exists() and not round0.exists():
        ds = prompt_sources.call(spec.name, ctx, None, tokenizer, key="generate.prompts", kwargs=spec.kwargs)
        _save_prompts(ds, natural)
    count = _num_rows(natural if natural.exists() else round0)
    return count * per_prompt, count


# ------------------------------------------------------------------------------------ the tally

@dataclass
class Tally:
    """Accepted and seen candidates so far, in total and per validator ([seen, kept])."""

    keys: list[str]
    accepted: int = 0
    candidates: int = 0
    per: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.per = {k: [0, 0] for k in self.keys}

    def add(self, table: dict[str, list[Any]], rows: int) -> int:
        """Count one validated shard (its ``accepted`` and ``rejected_by`` columns); return its accepted rows."""
        rejected_by = table["rejected_by"]
        for i, key in enumerate(self.keys):
            earlier = set(self.keys[:i])
            seen = sum(1 for r in rejected_by if r not in earlier)
            kept = seen - sum(1 for r in rejected_by if r == key)
            self.per[key] = [self.per[key][0] + seen, self.per[key][1] + kept]
        got = int(sum(table["accepted"]))
        self.accepted += got
        self.candidates += rows
        return got

    @property
    def rate(self) -> float:
        return self.accepted / max(self.candidates, 1)

    def unreachable(self, target: int, cfg: GenerateConfig) -> UserError:
        per = self.per
        worst = min(per, key=lambda k: per[k][1] / max(per[k][0], 1)) if per else None
        blame = (f"; validator '{worst}' rejects the most (accepts {per[worst][1]} of {per[worst][0]} it sees, "
                 f"{per[worst][1] / max(per[worst][0], 1):.1%})") if worst else ""
        return UserError(
            f"generate: the target of {target} accepted samples is unreachable: {self.accepted} accepted of "
            f"{self.candidates} candidates ({self.rate:.1%}) within generate.max_attempts = "
            f"{cfg.max_attempts:g} x {target} candidates{blame}. Loosen the validators or raise generate.max_attempts.")


# ------------------------------------------------------------------------------------ the loop

def _round_size(r: int, target: int, budget: int, tally: Tally, cfg: GenerateConfig, per_prompt: int) -> int:
    """Prompts to draw in round ``r``: the missing samples times the oversampling factor."""
    left = budget - tally.candidates
    if left < per_prompt:
        raise tally.unreachable(target, cfg)
    factor = cfg.oversample if r == 0 else max(cfg.oversample, tally.candidates / max(tally.accepted, 1))
    want = min(math.ceil((target - tally.accepted) * factor), left)
    return max(1, min(math.ceil(want / per_prompt), left // per_prompt))


def _jobs(ctx: PhaseContext, r: int, n_prompts: int, per_shard: int, shard_dir: Path) -> list[Job]:
    return [Job(r, s, lo, min(n_prompts, lo + per_shard), derive_seed(ctx.seed, r, s) % 2**63,
                str(shard_dir / f"raw_r{r:03d}_{s:05d}.parquet"))
            for s, lo in enumerate(range(0, n_prompts, per_shard))]


def validate_shard(ctx: PhaseContext, job: Job, keep_prompt: bool) -> None:
    """Run the validator chain over one raw shard; write the validated shard; drop the raw one.

    A backend may call it in the task that generated the shard (the transformers backend does, so
    per-sample scoring runs where the shard was made); the loop validates what is left raw."""
    raw = _read(Path(job.path))
    texts = [p + c if keep_prompt else c for p, c in zip(raw["prompt"], raw["continuation"])]
    batch = {ctx.text_field: texts, "prompt": raw["prompt"], "parent": raw["parent"]}
    verdicts = apply_chain(ctx, batch, list(ctx.config.generate.validators))
    write_table({**batch, "new_tokens": raw["new_tokens"], **verdicts}, job.final)
    os.remove(job.path)


def run_quota(ctx: PhaseContext, write_raw: WriteRaw, *, tokenizer: Tokenizer, per_prompt: int = 1,
              keep_prompt: bool = True) -> dict[str, Any]:
    """Drive the rounds; save ``samples/`` and ``rejected/``; return the phase stats.

    ``write_raw(round, prompts_path, jobs)`` has the listed jobs' raw shards written (prompts from
    :func:`read_prompts`)."""
    cfg = ctx.config.generate
    keys = validator_keys(list(cfg.validators))
    shard_dir = ctx.out_dir / "shards"
    shard_dir.mkdir(exist_ok=True)
    target, natural = target_size(ctx, per_prompt, tokenizer)
    budget = math.floor(cfg.max_attempts * target)
    per_shard = max(1, cfg.shard_size // per_prompt)
    tally, resumed, generated, new_tokens, validated = Tally(keys), 0, 0, 0, []
    start = time.time()
    r = 0
    with ctx.progress("generate", target) as advance:
        while tally.accepted < target:
            n_prompts = _round_size(r, target, budget, tally, cfg, per_prompt)
            prompts = _prompts_for_round(ctx, r, None if r == 0 and n_prompts == natural else n_prompts,
                                         tokenizer, shard_dir)
            jobs = _jobs(ctx, r, _num_rows(prompts), per_shard, shard_dir)
            done = [j.final for j in jobs]
            missing = [j for j, d in zip(jobs, done) if not d.exists() and not Path(j.path).exists()]
            resumed += sum(1 for d in done if d.exists())
            generated += len(missing)
            if missing:
                write_raw(r, prompts, missing)
                new_tokens += sum(sum(_read(j.final if j.final.exists() else Path(j.path), ["new_tokens"])["new_tokens"])
                                  for j in missing)
            for job, final in zip(jobs, done):
                if not final.exists():
                    validate_shard(ctx, job, keep_prompt)
                got = tally.add(_read(final, ["accepted", "rejected_by"]), (job.hi - job.lo) * per_prompt)
                advance(min(got, max(target - (tally.accepted - got), 0)))
                validated.append(final)
            r += 1
            if (tally.accepted < target and tally.candidates >= EARLY_STOP_MIN_CANDIDATES
                    and tally.accepted + tally.rate * (budget - tally.candidates) < target):
                raise tally.unreachable(target, cfg)
    elapsed = time.time() - start
    kept = finalize(ctx, validated, target, keys)
    metrics: dict[str, Any] = {"samples": kept, "acceptance": tally.rate, "candidates": tally.candidates,
                               "rounds": r, "tokens_per_second": new_tokens / max(elapsed, 1e-9)}
    for k in keys:
        metrics[f"{k}_acceptance"] = tally.per[k][1] / max(tally.per[k][0], 1)
    return {"metrics": metrics, "target": target, "samples_per_prompt": per_prompt, "shards": len(validated),
            "shards_resumed": resumed, "shards_generated": generated, "new_tokens": new_tokens, "surplus": tally.accepted - kept,
            "validators": {k: {"seen": s, "kept": a} for k, (s, a) in tally.per.items()},
            "seconds": round(elapsed, 3)}


def finalize(ctx: PhaseContext, files: list[Path], target: int, keys: list[str]) -> int:
    """Write ``samples/`` (the first ``target`` accepted, with lineage) and ``rejected/``; remove shards."""
    import datasets

    from collapsebench.data import add_lineage, save

    ds = datasets.Dataset.from_parquet([str(f) for f in files], cache_dir=str(ctx.cache_dir))
    flags = ds.data.column("accepted").to_numpy(zero_copy_only=False).astype(bool)
    keep_rows = np.flatnonzero(flags)[:target]
    score_cols = [f"score_{k}" for k in keys]
    base = ["parent", "prompt", ctx.text_field, *score_cols]
    it = ctx.iteration

    samples = add_lineage(ds.select(keep_rows).select_columns(base), origin="synthetic", generation=it,
                          prefix=f"g{it:03d}-")  # keeps each sample's parent
    save(samples.select_columns(["id", "origin", "generation", *base]), ctx.out_dir / "samples")
    rejected = ds.select(np.flatnonzero(~flags)).select_columns([*base, "rejected_by", "reason"])
    rejected = add_lineage(rejected, origin="synthetic", generation=it, prefix=f"g{it:03d}-rejected-")
    save(rejected, ctx.out_dir / "rejected")
    del ds, samples, rejected
    shard_dir = ctx.out_dir / "shards"
    for f in shard_dir.iterdir():
        f.unlink()
    shard_dir.rmdir()
    return len(keep_rows)
