"""The quota loop: generate candidates in rounds of shards and validate them until the target number
of accepted samples is reached. Backend-agnostic: a generator backend supplies ``write_raw(round,
prompts, jobs)``, which has every job's raw Parquet shard written (:func:`write_raw_shard`),
normally as tasks of the phase (``PhaseContext.map_tasks``), so any executor can run them.

Target: ``generate.num_samples``; when null, the prompt source's own count times the samples per
prompt for finite sources (``real_blocks``, ``prompt_dataset``); else, for language data, the tokens
the curation regime will draw from S(k) (what it declares, its ``needs`` hook, see
:func:`collapsebench.registry.synthetic_need`: e.g. alpha x the real data's tokens for replace), met
by the shortest run of accepted samples whose tokens reach it; else the number of real training
rows. Round r draws ``ceil(missing * factor / m)`` prompts (m samples each; missing tokens count as
samples of the mean length accepted so far, or of the real documents' before any is) from the prompt
source, called with a seed of its own (round 0 with the phase seed), where ``factor`` is
``generate.oversample`` in round 0 and afterwards the larger of it and 1 / (acceptance so far).
Candidates drawn in all rounds are capped at ``generate.max_attempts`` x target (in samples); when
the cap is spent, or the observed acceptance rate says it will be, a UserError names the validator
that rejects the most. Accepted samples are taken in (round, shard, row) order up to the target; the
surplus of the last round is not in ``samples/``. Rejected candidates go to ``rejected/`` with
``rejected_by`` and ``reason``, and every candidate, accepted, surplus or rejected, to
``candidates/`` (:mod:`collapsebench.generators.outputs`). Token targets count generated tokens:
a sample's ``n_tokens`` less the tokens of the prompt it keeps (``n_prompt_tokens``).

Files (in ``shards/``; every write atomic): ``prompts_r<round>.parquet``, ``raw_r<round>_<shard>``
(generated, not yet validated) and ``shard_r<round>_<shard>`` (validated). Shard s of round r is
generated with the seed (phase seed, r, s), so a killed phase resumes by skipping finished shards
and reproduces the same samples, whichever executor and however many workers ran them.

(Over 300 lines: the round loop, the shard naming and the acceptance bookkeeping share the
resumption rules above; the output folders went to :mod:`collapsebench.generators.outputs`.)
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collapsebench.api import Dataset, PhaseContext, Tokenizer
from collapsebench.config import GenerateConfig
from collapsebench.errors import UserError
from collapsebench.generators.outputs import finalize
from collapsebench.io import atomic_write_with, derive_seed
from collapsebench.models.tokens import COLUMN as TOKENS
from collapsebench.models.tokens import FRAME, PROMPT_COLUMN
from collapsebench.registry import prompt_sources
from collapsebench.validators.chain import (
    apply_chain,
    decide_pool,
    pool_selector,
    run_segment,
    segments,
    start_chain,
    validator_keys,
)

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
                    continuation_ids: list[list[int]], per_prompt: int) -> None:
    """The candidates of one job: ``per_prompt`` continuations per prompt, prompt-major, as text
    and as the token ids the model generated."""
    if len(continuations) != len(prompts) * per_prompt or len(continuation_ids) != len(continuations):
        raise RuntimeError(f"{len(continuations)} continuations ({len(continuation_ids)} as ids) for "
                           f"{len(prompts)} prompts x {per_prompt}")
    write_table({"prompt": [p for p in prompts for _ in range(per_prompt)],
                 "parent": [p for p in parents for _ in range(per_prompt)],
                 "continuation": continuations, "continuation_ids": continuation_ids,
                 "new_tokens": [len(x) for x in continuation_ids]}, Path(path))


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


@dataclass(frozen=True)
class Target:
    """What the phase accepts: ``samples`` samples, or, when ``tokens`` is set, the shortest run of
    accepted samples whose tokens reach it. ``natural``: a finite prompt source's own count;
    ``tokens_per_sample``: the length expected before any sample is accepted (token targets)."""

    samples: int | None = None
    tokens: int | None = None
    natural: int | None = None
    tokens_per_sample: float = 1.0

    def reached(self, tally: Tally) -> bool:
        if self.tokens is not None:
            return tally.tokens >= self.tokens
        return tally.accepted >= (self.samples or 0)

    def goal(self, tally: Tally) -> int:
        """Accepted samples the target is expected to take, from what was accepted so far."""
        if self.tokens is None:
            return self.samples or 0
        if tally.tokens >= self.tokens:
            return tally.accepted
        mean = tally.tokens / tally.accepted if tally.accepted else self.tokens_per_sample
        return tally.accepted + max(1, math.ceil((self.tokens - tally.tokens) / max(mean, 1e-9)))

    def __str__(self) -> str:
        if self.tokens is not None:
            return f"{self.tokens} tokens of accepted samples"
        return f"{self.samples} accepted samples"


def target_size(ctx: PhaseContext, per_prompt: int, tokenizer: Tokenizer) -> Target:
    """The target of this phase (see the module docstring)."""
    cfg = ctx.config.generate
    spec = cfg.prompts
    if cfg.num_samples is not None:
        return Target(samples=cfg.num_samples)
    if not prompt_sources.entry(spec.name, key="generate.prompts").finite:
        return _regime_target(ctx)
    shard_dir = ctx.out_dir / "shards"
    shard_dir.mkdir(exist_ok=True)
    natural, round0 = shard_dir / "prompts_natural.parquet", shard_dir / "prompts_r000.parquet"
    if not natural.exists() and not round0.exists():
        ds = prompt_sources.call(spec.name, ctx, None, tokenizer, key="generate.prompts", kwargs=spec.kwargs)
        _save_prompts(ds, natural)
    count = _num_rows(natural if natural.exists() else round0)
    return Target(samples=count * per_prompt, natural=count)


def _regime_target(ctx: PhaseContext) -> Target:
    """The most tokens the curation regime (or a training stage's) will draw from S(k), for
    language data; else the number of real training rows."""
    from collapsebench.models.tokens import has_token_counts, token_total
    from collapsebench.regimes.stages import synthetic_needs

    real = ctx.real()
    if not has_token_counts(real):
        return Target(samples=ctx.num_samples())
    real_tokens = token_total(ctx, real).tokens
    tokens = [amount for unit, amount in synthetic_needs(ctx, real, real_tokens) if unit == "tokens"]
    if not tokens:
        return Target(samples=ctx.num_samples())
    return Target(tokens=max(1, *tokens), tokens_per_sample=real_tokens / max(len(real), 1))


# ------------------------------------------------------------------------------------ the tally


@dataclass
class Tally:
    """Accepted and seen candidates so far, in total and per validator ([seen, kept])."""

    keys: list[str]
    accepted: int = 0
    tokens: int = 0  # generated tokens of the accepted samples (their kept prompts' aside)
    candidates: int = 0
    per: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.per = {k: [0, 0] for k in self.keys}

    def add(self, table: dict[str, list[Any]], rows: int) -> int:
        """Count one validated shard (its ``accepted``, ``rejected_by`` and token count columns);
        return its accepted rows."""
        generated = [n - p for n, p in zip(table[TOKENS], table[PROMPT_COLUMN])]
        rejected_by = table["rejected_by"]
        for i, key in enumerate(self.keys):
            earlier = set(self.keys[:i])
            seen = sum(1 for r in rejected_by if r not in earlier)
            kept = seen - sum(1 for r in rejected_by if r == key)
            self.per[key] = [self.per[key][0] + seen, self.per[key][1] + kept]
        got = int(sum(table["accepted"]))
        self.accepted += got
        self.tokens += int(sum(n for n, ok in zip(generated, table["accepted"]) if ok))
        self.candidates += rows
        return got

    @property
    def rate(self) -> float:
        return self.accepted / max(self.candidates, 1)

    def unreachable(self, target: Target, cfg: GenerateConfig) -> UserError:
        per = self.per
        worst = min(per, key=lambda k: per[k][1] / max(per[k][0], 1)) if per else None
        blame = (f"; validator '{worst}' rejects the most (accepts {per[worst][1]} of {per[worst][0]} it sees, "
                 f"{per[worst][1] / max(per[worst][0], 1):.1%})") if worst else ""
        goal = target.goal(self)
        return UserError(
            f"generate: the target of {target} is unreachable: {self.accepted} accepted of "
            f"{self.candidates} candidates ({self.rate:.1%}) within generate.max_attempts = "
            f"{cfg.max_attempts:g} x {goal} candidates{blame}. Loosen the validators or raise generate.max_attempts.")


# ------------------------------------------------------------------------------------ the loop

def _budget(target: Target, tally: Tally, cfg: GenerateConfig) -> int:
    """The cap on candidates: ``generate.max_attempts`` x the accepted samples the target takes."""
    return math.floor(cfg.max_attempts * target.goal(tally))


def _round_size(r: int, target: Target, tally: Tally, cfg: GenerateConfig, per_prompt: int) -> int:
    """Prompts to draw in round ``r``: the missing samples times the oversampling factor."""
    left = _budget(target, tally, cfg) - tally.candidates
    if left < per_prompt:
        raise tally.unreachable(target, cfg)
    factor = cfg.oversample if r == 0 else max(cfg.oversample, tally.candidates / max(tally.accepted, 1))
    want = min(math.ceil((target.goal(tally) - tally.accepted) * factor), left)
    return max(1, min(math.ceil(want / per_prompt), left // per_prompt))


def _jobs(ctx: PhaseContext, r: int, n_prompts: int, per_shard: int, shard_dir: Path) -> list[Job]:
    return [Job(r, s, lo, min(n_prompts, lo + per_shard), derive_seed(ctx.seed, r, s) % 2**63,
                str(shard_dir / f"raw_r{r:03d}_{s:05d}.parquet"))
            for s, lo in enumerate(range(0, n_prompts, per_shard))]


def _candidates(ctx: PhaseContext, job: Job, keep_prompt: bool,
                tokenizer: Tokenizer) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """One raw shard's candidates: the batch the validators see (text, prompt, parent) and what the
    samples keep besides: their token ids (``input_ids``: the prompt's tokens when the prompt is
    kept, then the generated ones, as generated), framed token count ``n_tokens`` and, of it, the
    prompt's (``n_prompt_tokens``), whether
    re-tokenizing the text would give the same ids, and the U+FFFD characters in the text (bytes of
    a multi-byte character cut by the generation, which decoding replaced)."""
    raw = _read(Path(job.path))
    texts = [p + c if keep_prompt else c for p, c in zip(raw["prompt"], raw["continuation"])]
    ids = raw["continuation_ids"]
    prompt_lengths = [0] * len(ids)
    if keep_prompt:
        prompt_ids = tokenizer(raw["prompt"], add_special_tokens=False)["input_ids"]
        ids, prompt_lengths = [p + c for p, c in zip(prompt_ids, ids)], [len(p) for p in prompt_ids]
    retokenized = tokenizer(texts, add_special_tokens=False)["input_ids"]
    batch = {ctx.text_field: texts, "prompt": raw["prompt"], "parent": raw["parent"]}
    extra = {"new_tokens": raw["new_tokens"], "input_ids": ids, TOKENS: [len(x) + FRAME for x in ids],
             PROMPT_COLUMN: prompt_lengths,
             "retokenizes_same": [r == x for r, x in zip(retokenized, ids)],
             "replacement_chars": [t.count("\ufffd") for t in texts]}
    return batch, extra


def shards_validate_alone(ctx: PhaseContext) -> bool:
    """Whether each shard can be validated on its own (no validator of the chain decides over the
    round's pool), so a backend may validate it in the task that generated it."""
    specs = list(ctx.config.generate.validators)
    return len(segments(specs) or [(0, 0)]) == 1 and not (specs and pool_selector(specs[-1]))


def validate_shard(ctx: PhaseContext, job: Job, keep_prompt: bool, tokenizer: Tokenizer) -> None:
    """Run the validator chain over one raw shard; write the validated shard; drop the raw one.

    Only for chains that validate shards alone (:func:`shards_validate_alone`). A backend may call
    it in the task that generated the shard (the transformers backend does, so per-sample scoring
    runs where the shard was made); the loop validates what is left raw."""
    batch, extra = _candidates(ctx, job, keep_prompt, tokenizer)
    chain = apply_chain(ctx, batch, list(ctx.config.generate.validators), tokens=extra["new_tokens"])
    write_table({**batch, **extra, **chain}, job.final)
    os.remove(job.path)


def _validate_round(ctx: PhaseContext, jobs: list[Job], keep_prompt: bool, tokenizer: Tokenizer) -> None:
    """Run the validator chain over a round's raw shards and write the validated shards.

    Without a validator that decides over a pool, each shard is validated on its own, its raw file
    removed once its validated one is written. With one, the round is the pool: every shard is
    scored, the pool decided once, the rest of the chain run shard by shard, and only then are the
    validated shards written and the raw ones removed; a round killed in between is validated
    again from its raw shards."""
    specs = list(ctx.config.generate.validators)
    keys = validator_keys(specs)
    parts = segments(specs) or [(0, 0)]
    finals = [job.final for job in jobs]
    if shards_validate_alone(ctx):
        for job in jobs:
            if not job.final.exists():
                validate_shard(ctx, job, keep_prompt, tokenizer)
        return
    if all(final.exists() for final in finals):
        return
    for final in finals:  # a round cut short while writing: decide it again, as a whole
        final.unlink(missing_ok=True)
    states = [start_chain(_num_rows(Path(job.path)), keys, _read(Path(job.path), ["new_tokens"])["new_tokens"])
              for job in jobs]
    for lo, hi in parts:
        for job, state in zip(jobs, states):
            run_segment(ctx, _candidates(ctx, job, keep_prompt, tokenizer)[0], specs, keys, state, lo, hi)
        if pool_selector(specs[hi - 1]):
            decide_pool(ctx, specs[hi - 1], keys[hi - 1], hi - 1, states)
    for job, state, final in zip(jobs, states, finals):
        batch, extra = _candidates(ctx, job, keep_prompt, tokenizer)
        write_table({**batch, **extra, **state.out}, final)
    for job in jobs:
        os.remove(job.path)


def run_quota(ctx: PhaseContext, write_raw: WriteRaw, *, tokenizer: Tokenizer, per_prompt: int = 1,
              keep_prompt: bool = True) -> dict[str, Any]:
    """Drive the rounds; save ``samples/``, ``rejected/`` and ``candidates/``; return the phase stats.

    ``write_raw(round, prompts_path, jobs)`` has the listed jobs' raw shards written (prompts from
    :func:`read_prompts`)."""
    cfg = ctx.config.generate
    keys = validator_keys(list(cfg.validators))
    shard_dir = ctx.out_dir / "shards"
    shard_dir.mkdir(exist_ok=True)
    target = target_size(ctx, per_prompt, tokenizer)
    per_shard = max(1, cfg.shard_size // per_prompt)
    tally, resumed, generated, new_tokens, validated = Tally(keys), 0, 0, 0, []
    start = time.time()
    r = 0
    total = target.tokens if target.tokens is not None else target.samples
    with ctx.progress("generate", total) as advance:
        while not target.reached(tally):
            n_prompts = _round_size(r, target, tally, cfg, per_prompt)
            prompts = _prompts_for_round(ctx, r, None if r == 0 and n_prompts == target.natural else n_prompts,
                                         tokenizer, shard_dir)
            jobs = _jobs(ctx, r, _num_rows(prompts), per_shard, shard_dir)
            missing = [j for j in jobs if not j.final.exists() and not Path(j.path).exists()]
            resumed += sum(1 for j in jobs if j.final.exists())
            if missing:
                write_raw(r, prompts, missing)
                generated += len(missing)
                new_tokens += sum(sum(_read(j.final if j.final.exists() else Path(j.path), ["new_tokens"])["new_tokens"])
                                  for j in missing)
            _validate_round(ctx, jobs, keep_prompt, tokenizer)
            for job in jobs:
                final = job.final
                before = tally.tokens if target.tokens is not None else tally.accepted
                tally.add(_read(final, ["accepted", "rejected_by", TOKENS, PROMPT_COLUMN]), (job.hi - job.lo) * per_prompt)
                now = tally.tokens if target.tokens is not None else tally.accepted
                advance(max(min(now, total or 0) - before, 0))
                validated.append(final)
            r += 1
            budget = _budget(target, tally, cfg)
            if (not target.reached(tally) and tally.candidates >= EARLY_STOP_MIN_CANDIDATES
                    and tally.accepted + tally.rate * (budget - tally.candidates) < target.goal(tally)):
                raise tally.unreachable(target, cfg)
    elapsed = time.time() - start
    kept, sample_stats = finalize(ctx, validated, target.samples, target.tokens, keys)
    metrics: dict[str, Any] = {"samples": kept, "acceptance": tally.rate, "candidates": tally.candidates,
                               "rounds": r, "tokens_per_second": new_tokens / max(elapsed, 1e-9), **sample_stats}
    for k in keys:
        metrics[f"{k}_acceptance"] = tally.per[k][1] / max(tally.per[k][0], 1)
    return {"metrics": metrics, "target": target.samples, "target_tokens": target.tokens,
            "samples_per_prompt": per_prompt, "shards": len(validated), "shards_resumed": resumed,
            "shards_generated": generated,
            "new_tokens": new_tokens, "surplus": tally.accepted - kept,
            "validators": {k: {"seen": s, "kept": a} for k, (s, a) in tally.per.items()},
            "seconds": round(elapsed, 3)}
