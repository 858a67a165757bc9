"""The quota loop: generate candidates in rounds of shards and validate them until the target number
of accepted samples is reached. Backend-agnostic: a generator backend supplies ``write_raw(round,
prompts, jobs)``, which writes one raw Parquet shard per job (:func:`write_raw_shard`).

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
and reproduces the same samples.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from collapsebench.errors import UserError
from collapsebench.generation.validators import apply_chain, validator_keys

if TYPE_CHECKING:
    from collapsebench.context import PhaseContext

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


def derive_seed(*parts: int) -> int:
    import hashlib

    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:15], 16)


def write_table(rows: dict[str, list], path: Path) -> None:
    """Write a Parquet file atomically (temp file, fsync, rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    part = Path(path).with_suffix(".part")
    pq.write_table(pa.table(rows), part)
    with open(part, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(part, path)


def write_raw_shard(path: str | Path, prompts: list[str], parents: list[str], continuations: list[str],
                    new_tokens: list[int], per_prompt: int) -> None:
    """The candidates of one job: ``per_prompt`` continuations per prompt, prompt-major."""
    if len(continuations) != len(prompts) * per_prompt:
        raise RuntimeError(f"{len(continuations)} continuations for {len(prompts)} prompts x {per_prompt}")
    write_table({"prompt": [p for p in prompts for _ in range(per_prompt)],
                 "parent": [p for p in parents for _ in range(per_prompt)],
                 "continuation": continuations, "new_tokens": new_tokens}, Path(path))


def _read(path: Path, columns: list[str] | None = None) -> dict[str, list]:
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=columns).to_pydict()


def read_prompts(path: str | Path, lo: int, hi: int) -> dict[str, list]:
    """Rows ``[lo, hi)`` of a round's prompt table (``prompt``, ``parent``), memory-mapped."""
    import pyarrow.parquet as pq

    return pq.read_table(path, memory_map=True).slice(lo, hi - lo).to_pydict()


def _prompts_for_round(ctx: "PhaseContext", r: int, n: int | None, tokenizer: Any, shard_dir: Path) -> Path:
    """Write (once) and return the round's prompt table."""
    from collapsebench.registry import prompt_sources

    path = shard_dir / f"prompts_r{r:03d}.parquet"
    if path.exists():
        return path
    if n is None and (shard_dir / "prompts_natural.parquet").exists():
        os.replace(shard_dir / "prompts_natural.parquet", path)
        return path
    spec = ctx.config.generate.prompts
    source = prompt_sources.get(spec.name, key="generate.prompts")
    rctx = ctx if r == 0 else replace(ctx, seed=derive_seed(ctx.seed, r) % 2**63)
    ds = source(rctx, n, tokenizer, **spec.kwargs)
    if n is not None and len(ds) != n:
        raise UserError(f"generate.prompts: '{spec.name}' returned {len(ds)} prompts for {n}")
    _save_prompts(ds, path)
    return path


def _save_prompts(ds: Any, path: Path) -> None:
    ds.select_columns(["prompt", "parent"]).cast_column("parent", _string()).to_parquet(str(path) + ".part")
    os.replace(str(path) + ".part", path)


def _string() -> Any:
    import datasets

    return datasets.Value("string")


def target_size(ctx: "PhaseContext", per_prompt: int, tokenizer: Any) -> tuple[int, int | None]:
    """(accepted samples wanted, the finite prompt source's own count or None)."""
    from collapsebench.registry import prompt_sources

    cfg = ctx.config.generate
    spec = cfg.prompts
    source = prompt_sources.get(spec.name, key="generate.prompts")
    if cfg.num_samples is None and getattr(source, "finite", False):
        shard_dir = ctx.out_dir / "shards"
        shard_dir.mkdir(exist_ok=True)
        natural_path = shard_dir / "prompts_natural.parquet"
        round0 = shard_dir / "prompts_r000.parquet"
        if not natural_path.exists() and not round0.exists():
            _save_prompts(source(ctx, None, tokenizer, **spec.kwargs), natural_path)
        import pyarrow.parquet as pq

        count = pq.ParquetFile(natural_path if natural_path.exists() else round0).metadata.num_rows
        return count * per_prompt, count
    from collapsebench.phases.generate import num_samples

    return num_samples(ctx), None


def _counts(table: dict[str, list], keys: list[str]) -> tuple[int, dict[str, list[int]]]:
    """Accepted rows and, per validator, [seen, kept] of one validated shard."""
    rejected_by = table["rejected_by"]
    per: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        earlier = set(keys[:i])
        seen = sum(1 for r in rejected_by if r not in earlier)
        per[key] = [seen, seen - sum(1 for r in rejected_by if r == key)]
    return sum(table["accepted"]), per


def _unreachable(target: int, accepted: int, candidates: int, per: dict[str, list[int]], cfg: Any) -> UserError:
    worst = min(per, key=lambda k: per[k][1] / max(per[k][0], 1)) if per else None
    blame = (f"; validator '{worst}' rejects the most (accepts {per[worst][1]} of {per[worst][0]} it sees, "
             f"{per[worst][1] / max(per[worst][0], 1):.1%})") if worst else ""
    return UserError(
        f"generate: the target of {target} accepted samples is unreachable: {accepted} accepted of "
        f"{candidates} candidates ({accepted / max(candidates, 1):.1%}) within generate.max_attempts = "
        f"{cfg.max_attempts:g} x {target} candidates{blame}. Loosen the validators or raise generate.max_attempts.")


def run_quota(ctx: "PhaseContext", write_raw: Callable[[int, Path, list[Job]], int], *,
              tokenizer: Any, per_prompt: int = 1, keep_prompt: bool = True) -> dict[str, Any]:
    """Drive the rounds; save ``samples/`` and ``rejected/``; return the phase stats.

    ``write_raw(round, prompts_path, jobs)`` generates the listed jobs' raw shards (prompts from
    :func:`read_prompts`) and returns the number of new tokens it generated."""
    import pyarrow.parquet as pq

    cfg = ctx.config.generate
    specs = list(cfg.validators)
    keys = validator_keys(specs)
    shard_dir = ctx.out_dir / "shards"
    shard_dir.mkdir(exist_ok=True)
    target, natural = target_size(ctx, per_prompt, tokenizer)
    budget = math.floor(cfg.max_attempts * target)
    prompts_per_shard = max(1, cfg.shard_size // per_prompt)
    accepted = candidates = resumed = new_tokens = 0
    per = {k: [0, 0] for k in keys}
    validated: list[Path] = []
    start = time.time()
    r = 0
    with ctx.progress("generate", target) as advance:
        while accepted < target:
            left = budget - candidates
            if left < per_prompt:
                raise _unreachable(target, accepted, candidates, per, cfg)
            factor = cfg.oversample if r == 0 else max(cfg.oversample, candidates / max(accepted, 1))
            want = min(math.ceil((target - accepted) * factor), left)
            n_prompts = max(1, min(math.ceil(want / per_prompt), left // per_prompt))
            if r == 0 and natural is not None and n_prompts == natural:
                n_prompts_arg: int | None = None
            else:
                n_prompts_arg = n_prompts
            prompts = _prompts_for_round(ctx, r, n_prompts_arg, tokenizer, shard_dir)
            n_prompts = pq.ParquetFile(prompts).metadata.num_rows
            jobs = [Job(r, s, lo, min(n_prompts, lo + prompts_per_shard), derive_seed(ctx.seed, r, s) % 2**63,
                        str(shard_dir / f"raw_r{r:03d}_{s:05d}.parquet"))
                    for s, lo in enumerate(range(0, n_prompts, prompts_per_shard))]
            done = [shard_dir / f"shard_r{j.round:03d}_{j.shard:05d}.parquet" for j in jobs]
            missing = [j for j, d in zip(jobs, done) if not d.exists() and not Path(j.path).exists()]
            resumed += sum(1 for d in done if d.exists())
            if missing:
                new_tokens += write_raw(r, prompts, missing)
            for job, final in zip(jobs, done):
                if not final.exists():
                    raw = _read(Path(job.path))
                    batch = {ctx.text_field: [p + c if keep_prompt else c for p, c in zip(raw["prompt"], raw["continuation"])],
                             "prompt": raw["prompt"], "parent": raw["parent"]}
                    verdicts = apply_chain(ctx, batch, specs)
                    write_table({**batch, "new_tokens": raw["new_tokens"], **verdicts}, final)
                    os.remove(job.path)
                got, shard_per = _counts(_read(final, ["accepted", "rejected_by"]), keys)
                rows = (job.hi - job.lo) * per_prompt
                advance(min(got, max(target - accepted, 0)))
                accepted, candidates = accepted + got, candidates + rows
                for k in keys:
                    per[k] = [per[k][0] + shard_per[k][0], per[k][1] + shard_per[k][1]]
                validated.append(final)
            r += 1
            rate = accepted / max(candidates, 1)
            if (accepted < target and candidates >= EARLY_STOP_MIN_CANDIDATES
                    and accepted + rate * (budget - candidates) < target):
                raise _unreachable(target, accepted, candidates, per, cfg)
    elapsed = time.time() - start
    kept = finalize(ctx, validated, target, keys)
    metrics: dict[str, Any] = {"samples": kept, "acceptance": accepted / max(candidates, 1),
                               "candidates": candidates, "rounds": r,
                               "tokens_per_second": new_tokens / max(elapsed, 1e-9)}
    for k in keys:
        metrics[f"{k}_acceptance"] = per[k][1] / max(per[k][0], 1)
    return {"metrics": metrics, "target": target, "samples_per_prompt": per_prompt, "shards": len(validated),
            "shards_resumed": resumed, "new_tokens": new_tokens, "surplus": accepted - kept,
            "validators": {k: {"seen": s, "kept": a} for k, (s, a) in per.items()}, "seconds": round(elapsed, 3)}


def finalize(ctx: "PhaseContext", files: list[Path], target: int, keys: list[str]) -> int:
    """Write ``samples/`` (the first ``target`` accepted, with lineage) and ``rejected/``; remove shards."""
    import datasets

    from collapsebench.data import add_lineage

    ds = datasets.Dataset.from_parquet([str(f) for f in files], cache_dir=str(ctx.cache_dir))
    flags = ds.data.column("accepted").to_numpy(zero_copy_only=False).astype(bool)
    keep_rows = np.flatnonzero(flags)[:target]
    score_cols = [f"score_{k}" for k in keys]
    base = ["parent", "prompt", ctx.text_field, *score_cols]
    it = ctx.iteration

    samples = add_lineage(ds.select(keep_rows).select_columns(base), origin="synthetic", generation=it,
                          prefix=f"g{it:03d}-")  # keeps each sample's parent
    samples.select_columns(["id", "origin", "generation", *base]).save_to_disk(str(ctx.out_dir / "samples"))
    rejected = ds.select(np.flatnonzero(~flags)).select_columns([*base, "rejected_by", "reason"])
    rejected = add_lineage(rejected, origin="synthetic", generation=it, prefix=f"g{it:03d}-rejected-")
    rejected.save_to_disk(str(ctx.out_dir / "rejected"))
    del ds, samples, rejected
    shard_dir = ctx.out_dir / "shards"
    for f in shard_dir.iterdir():
        f.unlink()
    shard_dir.rmdir()
    return len(keep_rows)
