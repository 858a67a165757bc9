"""Which generated texts an audit scores: ``on: all | accepted | rejected``.

The framework paper audits its filter on fresh samples of each model: "For each model, we generate
1000 samples [...] Then, we score each sample using the classifier used to filter data" (App. C).
Scoring only the samples a classifier let through shows that classifier satisfied by construction.
So the audits (``classifier_score``, ``judge_quality``) read the generate phase's ``candidates/``
(every candidate the model made, :mod:`collapsebench.generators.outputs`) and draw their
subsample from

* ``all`` (default): every candidate, as App. C does; the metrics are reported for all of them
  (suffix ``_all``) and, split by the validators' decision, for the ``_accepted`` and ``_rejected``
  ones of the same subsample;
* ``accepted``: the candidates the validators accepted (``samples/`` and the last round's surplus);
* ``rejected``: the ones they rejected.

A generator that commits no ``candidates/`` (a plug-in's, or a run generated before the folder
existed) can be audited ``on: accepted`` only, from ``samples/``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np

from collapsebench.api import Dataset, PhaseContext
from collapsebench.errors import UserError

On = Literal["all", "accepted", "rejected"]
SETS = ("all", "accepted", "rejected")


def audit_rows(ctx: PhaseContext, on: str, n: int, rng: np.random.Generator, key: str) -> tuple[Dataset, np.ndarray]:
    """A seeded subsample of ``n`` generated texts of the set ``on`` (in generation order) and, for
    each, whether the validators accepted it."""
    if on not in SETS:
        raise UserError(f"{key}.on must be one of {', '.join(SETS)}, got {on!r}")
    folder = ctx.phase_dir(ctx.iteration, "generate") / "candidates"
    if not folder.exists():
        if on != "accepted":
            raise UserError(f"{key}.on: {on} needs every candidate, but {folder} does not exist (the generator keeps "
                            "only the accepted samples); audit them with on: accepted")
        pool, passed = ctx.samples(), None
    else:
        pool = ctx.load(folder)
        status = np.asarray(pool["status"])
        passed = status != "rejected"
        if on != "all":
            rows = np.flatnonzero(passed if on == "accepted" else ~passed)
            pool, passed = pool.select(rows), passed[rows]
    picked = np.sort(rng.choice(len(pool), size=min(n, len(pool)), replace=False))
    flags = np.ones(len(picked), dtype=bool) if passed is None else passed[picked]
    return pool.select(picked), flags


def per_set(on: str, accepted: np.ndarray, measure: Callable[[np.ndarray], dict[str, float]]) -> dict[str, float]:
    """``measure(mask)`` of the audited rows, its keys suffixed with the set: ``_<on>``, and with
    ``on: all`` also ``_accepted`` and ``_rejected`` (the rows of the subsample in each)."""
    masks = {on: np.ones(len(accepted), dtype=bool)}
    if on == "all":
        masks.update(accepted=accepted, rejected=~accepted)
    return {f"{k}_{name}": v for name, mask in masks.items() for k, v in measure(mask).items()}
