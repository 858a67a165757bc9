"""``compare``'s verdicts on the claims declared in a config's ``contrasts:`` block.

For each claim: pick the runs of each arm among the compared runs, read the metric at the claim's
iteration, estimate A - B (:mod:`collapsebench.analysis.contrast_stats`: a paired t-interval over
seeds when both arms have the same seeds, Welch's otherwise; for an item-level metric a bootstrap
over seeds and items and, for 0/1 items, the CMH test), adjust every interval for the family of
claims, and give the verdict. A declared precondition that a run of a claim fails (the facts were
never learned, the reference is not calibrated) makes that claim *not testable*: its interval is
still computed, but no verdict is given on an experiment that could not show the effect. The rows
go to ``contrasts.csv`` and ``contrasts.json`` and to the terminal. The rules are written out in
docs/metrics.md ("Contrasts"). Over 300 lines because the claim's whole path (arms, values,
preconditions, estimate, family, output) reads top to bottom in one place.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from collapsebench.analysis import contrast_stats as S
from collapsebench.analysis.runs import Member
from collapsebench.analysis.stats import write_csv
from collapsebench.config import read_yaml
from collapsebench.config.contrasts import Arm, Contrast, ContrastsConfig, Precondition
from collapsebench.errors import UserError
from collapsebench.io import atomic_write

COLUMNS = ("name", "metric", "iteration", "a", "b", "a_cells", "b_cells", "level", "method", "n_a", "n_b",
           "n_pairs", "effect", "ci_low", "ci_high", "ci_confidence", "p", "p_adj", "correction", "family_size",
           "direction", "published_effect", "margin", "verdict", "why", "cmh_statistic", "cmh_p",
           "mh_odds_ratio", "preconditions", "note")
ITEMS_SUFFIX = "_accuracy"  # <prefix>_accuracy is the mean of <prefix>_items.jsonl's "correct"

# ------------------------------------------------------------------------------------ the declared block


def declared(members: Sequence[Member], path: str | Path | None = None) -> tuple[ContrastsConfig | None, Path]:
    """The contrasts block and the folder its ``runs:`` paths are relative to: from the YAML file
    ``path`` (a config, or a file holding only ``contrasts:``) when given, else from the compared
    runs' configs, which must agree (a sweep's cells all carry their base config's block)."""
    if path is not None:
        file = Path(path)
        try:
            raw = read_yaml(file.read_text(encoding="utf-8"), str(file))
        except OSError as exc:
            raise UserError(f"compare --contrasts: cannot read {file}: {exc}") from None
        if not isinstance(raw, dict) or "contrasts" not in raw:
            raise UserError(f"compare --contrasts: {file} has no 'contrasts:' block")
        from pydantic import ValidationError

        from collapsebench.config import format_validation_error
        try:
            return ContrastsConfig.model_validate(raw["contrasts"]), file.resolve().parent
        except ValidationError as exc:
            raise UserError(format_validation_error(exc, f"{file} (contrasts)")) from None
    blocks = {json.dumps(m.config.contrasts.model_dump(mode="json"), sort_keys=True): m
              for m in members if m.config.contrasts is not None}
    if len(blocks) > 1:
        first, second = list(blocks.values())[:2]
        raise UserError(f"the compared runs declare different contrasts blocks ({first.run.path} and "
                        f"{second.run.path}); compare them separately or give --contrasts FILE")
    if not blocks:
        return None, Path.cwd()
    member = next(iter(blocks.values()))
    assert member.config.contrasts is not None
    return member.config.contrasts, Path(member.config.config_dir or member.run.path)


# ------------------------------------------------------------------------------------ arms and values


def arm_members(claim: Contrast, side: str, arm: Arm, members: Sequence[Member], base: Path) -> list[Member]:
    """The runs of one arm; an empty arm, or two runs of one seed, is an error naming the claim."""
    where = f"contrasts: claim '{claim.name}', arm {side}"
    if arm.runs:
        wanted = {(base / r).resolve(): r for r in arm.runs}
        picked = [m for m in members if m.run.path.resolve() in wanted]
        missing = set(wanted) - {m.run.path.resolve() for m in picked}
        if missing:
            raise UserError(f"{where}: {', '.join(wanted[p] for p in sorted(missing))} not among the compared runs")
    else:
        picked = [m for m in members if arm.matches(m.config.dump())]
        if not picked:
            cells = sorted({m.cell for m in members})
            raise UserError(f"{where}: no compared run has {arm.describe()}; cells: {', '.join(cells)}")
    _one_per_seed(where, arm, [(m.cell, m.seed) for m in picked])
    return picked


def _one_per_seed(where: str, arm: Arm, picked: Sequence[tuple[str, int]]) -> None:
    seeds = [seed for _, seed in picked]
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        cells = sorted({cell for cell, seed in picked if seed in twice})
        raise UserError(f"{where}: {arm.describe()} matches several runs of seed {twice[0]} (cells: "
                        f"{'; '.join(cells)}); add a key that tells them apart")


def check_grid(block: ContrastsConfig, cells: Sequence[tuple[str, int, dict[str, Any]]]) -> None:
    """Before a sweep runs, on its cells' (label, seed, resolved config): every ``where`` arm matches
    a cell and no two cells of one seed, so a typo in a claim costs no compute."""
    for claim in block.claims:
        for side, arm in (("a", claim.a), ("b", claim.b)):
            if arm.runs:
                continue
            picked = [(label, seed) for label, seed, dumped in cells if arm.matches(dumped)]
            where = f"contrasts: claim '{claim.name}', arm {side}"
            if not picked:
                labels = ", ".join(dict.fromkeys(label for label, _, _ in cells))
                raise UserError(f"{where}: no cell of the sweep has {arm.describe()}; cells: {labels}")
            _one_per_seed(where, arm, picked)
    for check in block.preconditions:
        scope = check.runs
        if scope is not None and not any(scope.matches(dumped) for _, _, dumped in cells):
            labels = ", ".join(dict.fromkeys(label for label, _, _ in cells))
            raise UserError(f"contrasts: precondition '{check.name}': no cell of the sweep has "
                            f"{scope.describe()}; cells: {labels}")


def _metric_at(rows: list[dict[str, Any]], metric: str) -> dict[int, float]:
    out = {}
    for row in rows:
        value = row.get(metric)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[int(row["iteration"])] = float(value)
    return out


def item_values(member: Member, metric: str, iteration: int) -> dict[str, float] | None:
    """The per-item values behind ``metric`` at ``iteration`` (item id -> value), or None where the
    evaluation wrote none: ``<prefix>_accuracy`` is the mean of ``<prefix>_items.jsonl``'s ``correct``
    (``knowledge``, ``calibration``; item id: its ``id``, else its line), and
    ``lm_eval/<task>/<metric>[/<filter>]`` the mean of that field of ``lm_eval_samples_<task>.jsonl``
    over the rows of that filter (item id: ``doc_id``)."""
    folder = member.run.phase_dir(iteration, "evaluate")
    parts = metric.split("/")
    if parts[0] == "lm_eval" and len(parts) in (3, 4):
        path, field, key = folder / f"lm_eval_samples_{parts[1]}.jsonl", parts[2], "doc_id"
        wanted = parts[3] if len(parts) == 4 else "none"
    elif metric.endswith(ITEMS_SUFFIX):
        path, field, key, wanted = folder / f"{metric[: -len(ITEMS_SUFFIX)]}_items.jsonl", "correct", "id", None
    else:
        return None
    if not path.exists():
        return None
    out: dict[str, float] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            row = json.loads(line) if line.strip() else {}
        except json.JSONDecodeError:
            raise UserError(f"{path}, line {n}: not JSON") from None
        if field not in row or (wanted is not None and row.get("filter", "none") != wanted):
            continue
        value = row[field]
        if not isinstance(value, (bool, int, float)) or not math.isfinite(value):
            raise UserError(f"{path}, line {n}: '{field}' is {value!r}, not a number")
        out[str(row.get(key, n))] = float(value)
    return out or None


# ------------------------------------------------------------------------------------ preconditions


def preconditions(block: ContrastsConfig, members: Sequence[Member],
                  rows: dict[Path, list[dict[str, Any]]]) -> tuple[dict[Path, list[str]], list[str]]:
    """(run -> the preconditions it fails, each with its value; one summary line per precondition).
    A run without the metric at that iteration fails: it cannot show that it met it."""
    failed: dict[Path, list[str]] = {}
    summary = []
    for check in block.preconditions:
        scope = check.runs
        runs = [m for m in members if scope is None or scope.matches(m.config.dump())]
        if not runs:
            cells = sorted({m.cell for m in members})
            raise UserError(f"contrasts: precondition '{check.name}': no compared run has "
                            f"{scope.describe() if scope else 'any config'}; cells: {', '.join(cells)}")
        misses = []
        for m in sorted(runs, key=lambda m: (m.cell, m.seed)):
            problem = _miss(check, _metric_at(rows.get(m.run.path, []), check.metric))
            if problem:
                failed.setdefault(m.run.path, []).append(f"{check.name} ({problem})")
                misses.append(f"{m.cell} seed {m.seed}: {problem}")
        summary.append(f"  {check.name}: {check.describe()}: met by {len(runs) - len(misses)} of {len(runs)} runs"
                       + (f"; not by {'; '.join(misses)}" if misses else ""))
    return failed, summary


def _miss(check: Precondition, values: dict[int, float]) -> str:
    """Why a run's values miss the precondition ('' when they meet it)."""
    k = (max(values) if values else -1) if check.iteration == "last" else check.iteration
    if k not in values:
        return f"no {check.metric} at iteration {check.iteration}"
    value = values[k]
    if check.at_least is not None and value < check.at_least:
        return f"{value:.4g} < {check.at_least:g}"
    if check.at_most is not None and value > check.at_most:
        return f"{value:.4g} > {check.at_most:g}"
    return ""


# ------------------------------------------------------------------------------------ one claim


def estimate(claim: Contrast, a: list[Member], b: list[Member], rows: dict[Path, list[dict[str, Any]]],
             n_resamples: int) -> tuple[S.Estimate, int | str, str]:
    """(the estimate, the iteration used — "K vs J" where the arms are read at different iterations —,
    'run' or 'item') of one claim."""
    values = {m.run.path: _metric_at(rows.get(m.run.path, []), claim.metric) for m in (*a, *b)}
    notes = []
    ka, kb = (_iteration(claim, arm, side, (*a, *b), values) for arm, side in ((claim.a, a), (claim.b, b)))
    iteration: int | str = (ka if ka > 0 else "last") if ka == kb else f"{ka} vs {kb}"
    lacking = [m for m in a if ka not in values[m.run.path]] + [m for m in b if kb not in values[m.run.path]]
    if lacking:
        notes.append(f"{len(lacking)} run(s) without {claim.metric} at iteration {iteration} left out")
    a = [m for m in a if ka in values[m.run.path]]
    b = [m for m in b if kb in values[m.run.path]]
    paired = bool(a) and {m.seed for m in a} == {m.seed for m in b}
    if not paired and a and b:
        notes.append("the arms' seeds differ: unpaired")
    level, items_a, items_b = "run", {}, {}
    if claim.level != "run" and a and b:
        found_a = {m.run.path: item_values(m, claim.metric, ka) for m in a}
        found_b = {m.run.path: item_values(m, claim.metric, kb) for m in b}
        missing = [path for path, v in (*found_a.items(), *found_b.items()) if v is None]
        if claim.level == "item" and (missing or not paired):
            raise UserError(f"contrasts: claim '{claim.name}' asks for level: item, but " + (
                f"{missing[0]} has no per-item values of {claim.metric} at iteration {iteration}" if missing
                else "the arms' seeds differ"))
        if paired and not missing:
            level = "item"
            items_a = {path: v for path, v in found_a.items() if v is not None}
            items_b = {path: v for path, v in found_b.items() if v is not None}
    if level == "item":
        est = _item_estimate(a, b, items_a, items_b, n_resamples)
    else:
        xa = [values[m.run.path][ka] for m in sorted(a, key=lambda m: m.seed)]
        if paired:
            by_seed = {m.seed: values[m.run.path][kb] for m in b}
            est = S.paired_t(xa, [by_seed[m.seed] for m in sorted(a, key=lambda m: m.seed)])
        else:
            est = S.welch_t(xa, [values[m.run.path][kb] for m in b])
    est.notes[:0] = notes
    return est, iteration, level


def _iteration(claim: Contrast, arm: Arm, runs: Sequence[Member], both: Sequence[Member],
               values: dict[Path, dict[int, float]]) -> int:
    """The iteration an arm is read at: its own ``iteration`` if it has one, else the claim's; 'last'
    is the last iteration every run concerned (the arm's own, or both arms') evaluated the metric at;
    -1 when no run has it (every run is then left out)."""
    wanted, concerned = (arm.iteration, runs) if arm.iteration is not None else (claim.iteration, both)
    if wanted != "last":
        return int(wanted)
    ends = [max(values[m.run.path]) for m in concerned if values[m.run.path]]
    return min(ends) if ends else -1


def _item_estimate(a: list[Member], b: list[Member], items_a: dict[Path, dict[str, float]],
                   items_b: dict[Path, dict[str, float]], n_resamples: int) -> S.Estimate:
    """Item-wise A - B per seed over the items both arms have; the bootstrap, and CMH for 0/1 items."""
    other = {m.seed: m for m in b}
    diffs, tables = [], []
    for m in sorted(a, key=lambda m: m.seed):
        ya, yb = items_a[m.run.path], items_b[other[m.seed].run.path]
        shared = [k for k in ya if k in yb]
        xa, xb = np.array([ya[k] for k in shared]), np.array([yb[k] for k in shared])
        diffs.append(xa - xb)
        tables.append([[xa.sum(), len(xa) - xa.sum()], [xb.sum(), len(xb) - xb.sum()]])
    est = S.hierarchical_bootstrap(diffs, n_resamples)
    binary = all(set(v.values()) <= {0.0, 1.0} for v in (*items_a.values(), *items_b.values()))
    if binary and all(len(d) for d in diffs):
        est.extra = S.cmh(np.moveaxis(np.array(tables, dtype=np.int64), 0, -1))
    return est


# ------------------------------------------------------------------------------------ the family


def evaluate(block: ContrastsConfig, members: Sequence[Member], rows: dict[Path, list[dict[str, Any]]],
             base: Path, failed: dict[Path, list[str]]) -> list[dict[str, Any]]:
    """One row per claim, in the declared order (columns: :data:`COLUMNS`); ``failed``: the runs that
    fail a precondition (:func:`preconditions`), whose claims are not testable."""
    done = []
    for claim in block.claims:
        a = arm_members(claim, "a", claim.a, members, base)
        b = arm_members(claim, "b", claim.b, members, base)
        both = {m.run.path for m in a} & {m.run.path for m in b}
        if both and claim.a.iteration == claim.b.iteration:
            raise UserError(f"contrasts: claim '{claim.name}': a run is in both arms ({sorted(both)[0]}) at "
                            "the same iteration (give the arms their own iteration: to compare a run with itself)")
        done.append((claim, a, b, *estimate(claim, a, b, rows, block.n_resamples)))
    adjusted, levels = S.family_levels([e.p for _, _, _, e, _, _ in done], block.correction, block.confidence)
    family = sum(math.isfinite(p) for p in adjusted)
    out = []
    for (claim, a, b, est, iteration, level), p_adj, conf in zip(done, adjusted, levels):
        low, high = est.interval(conf) if math.isfinite(conf) else (S.NAN, S.NAN)
        n_min = est.n_pairs if est.n_pairs is not None else min(est.n_a, est.n_b)
        verdict, why = S.verdict(low, high, claim.direction, claim.effect, claim.margin, n_min)
        failing = [m for m in (*a, *b) if m.run.path in failed]
        if failing:
            first = failing[0]
            verdict = "not testable"
            why = (f"a precondition fails in {len(failing)} of {len(a) + len(b)} runs (first: {first.cell} "
                   f"seed {first.seed}: {', '.join(failed[first.run.path])})")
        checked = "; ".join(c.name for c in block.preconditions)
        out.append({"name": claim.name, "metric": claim.metric, "iteration": iteration,
                    "a": claim.a.describe(), "b": claim.b.describe(),
                    "a_cells": "; ".join(dict.fromkeys(m.cell for m in a)),
                    "b_cells": "; ".join(dict.fromkeys(m.cell for m in b)), "level": level, "method": est.method,
                    "n_a": est.n_a, "n_b": est.n_b, "n_pairs": est.n_pairs if est.n_pairs is not None else "",
                    "effect": est.effect, "ci_low": low, "ci_high": high, "ci_confidence": conf, "p": est.p,
                    "p_adj": p_adj, "correction": block.correction, "family_size": family,
                    "direction": claim.direction, "published_effect": _or_blank(claim.effect),
                    "margin": _or_blank(claim.margin), "verdict": verdict, "why": why,
                    "cmh_statistic": est.extra.get("cmh_statistic", ""), "cmh_p": est.extra.get("cmh_p", ""),
                    "mh_odds_ratio": est.extra.get("mh_odds_ratio", ""), "preconditions": checked,
                    "note": "; ".join(est.notes)})
    return out


def _or_blank(value: float | None) -> float | str:
    return "" if value is None else value


# ------------------------------------------------------------------------------------ output


def write(rows: list[dict[str, Any]], folder: Path) -> None:
    """``contrasts.csv``, ``contrasts.json`` (NaN as null) and ``contrasts.md``: the verdicts as a
    Markdown table, to paste into a paper's or a recipe's README as printed."""
    write_csv(rows, folder / "contrasts.csv", columns=COLUMNS)
    clean = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()} for r in rows]
    atomic_write(folder / "contrasts.json", json.dumps(clean, indent=2) + "\n")
    table = ["| claim | A - B | effect [interval] | n | verdict |", "|---|---|---|---|---|"]
    for r in rows:
        n = r["n_pairs"] if r["n_pairs"] != "" else f"{r['n_a']} + {r['n_b']}"
        table.append(f"| {r['name']} | {r['metric']} at iteration {r['iteration']} | {_num(r['effect'])} "
                     f"[{_num(r['ci_low'])}, {_num(r['ci_high'])}] ({_pct(r['ci_confidence'])}) | {n} | "
                     f"{r['verdict']} |")
    atomic_write(folder / "contrasts.md", "\n".join(table) + "\n")


def lines(rows: list[dict[str, Any]], correction: str, confidence: float, checks: Sequence[str] = ()) -> list[str]:
    """What ``compare`` prints: the preconditions (``checks``: :func:`preconditions`' summary), a
    header, then two lines per claim."""
    how = {"holm": "Holm-stepped", "bonferroni": "Bonferroni", "none": "unadjusted"}[correction]
    out = ["preconditions:", *checks] if checks else []
    out.append(f"contrasts ({len(rows)} claims; effect = A - B; {how} intervals, {confidence:.0%} family-wise):")
    for r in rows:
        n = f"{r['n_pairs']} paired seeds" if r["n_pairs"] != "" else f"{r['n_a']} + {r['n_b']} runs"
        published = r["direction"] + (f" {r['published_effect']:g}" if r["published_effect"] != "" else "") + (
            f" (margin {r['margin']:g})" if r["margin"] != "" else "")
        out.append(f"  {r['name']}: {r['metric']} at iteration {r['iteration']}, A = {r['a_cells']}, "
                   f"B = {r['b_cells']}")
        out.append(f"    effect {_num(r['effect'])}, {_pct(r['ci_confidence'])} interval [{_num(r['ci_low'])}, "
                   f"{_num(r['ci_high'])}], {n}, {r['method'].split(' (')[0]}, p = {_num(r['p'])} "
                   f"(adjusted {_num(r['p_adj'])}); published: {published} -> {r['verdict'].upper()} "
                   f"({r['why']})")
    return out


def _num(value: float) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.4g}"


def _pct(value: float) -> str:
    return "no" if not math.isfinite(value) else f"{100 * value:.4g}%"
