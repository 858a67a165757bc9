"""The ``contrasts:`` block of a config: the claims a sweep is run to test, declared before the runs.

A claim compares two arms (sets of runs picked by their config values, or by their run folders)
on one metric at one iteration, and states what was published: the direction of the effect
``a - b`` (``increase``, ``decrease``, or ``none`` for a null claim such as "up to 20% has minimal
effect"), optionally its size, and for a null claim the equivalence margin that "no effect" means.
Declaring them in the config, before anything has run, is the point: the family that the
correction covers is fixed in advance, not chosen after looking at the results.
``collapsebench compare`` evaluates them (:mod:`collapsebench.analysis.contrasts`); the rules of
the verdicts are in docs/metrics.md.

This module imports only :mod:`.reading` of the project, so the schema (:mod:`.schema`) can import it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from collapsebench.config.reading import value_at


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)


class Arm(_Strict):
    """The runs of one arm: those whose resolved config has every ``key: value`` of ``where`` (dotted
    keys, list indices included: ``{curate.regime.alpha: 0.2}``), or the run folders ``runs``
    (relative to the config file). A plain mapping is a ``where``: ``a: {curate.regime.alpha: 0.2}``.
    An arm may be read at its own ``iteration``: a claim about a change over rounds ("perplexity rises
    every round") compares the same runs at two iterations, paired by seed."""

    where: dict[str, Any] = Field(default_factory=dict, description="config key -> value every run of the arm has")
    runs: list[str] = Field(default_factory=list, description="run directories (relative to the config file)")
    iteration: Annotated[int, Field(ge=1)] | Literal["last"] | None = Field(
        None, description="read this arm at this iteration instead of the claim's: the same runs at iteration 4 "
        "against iteration 1 (a change over rounds, paired by seed)")

    @model_validator(mode="before")
    @classmethod
    def _plain_mapping(cls, value: Any) -> Any:
        if isinstance(value, dict) and value and not set(value) & {"where", "runs", "iteration"}:
            return {"where": value}
        return value

    @model_validator(mode="after")
    def _one_way(self) -> Arm:
        if bool(self.where) == bool(self.runs):
            raise ValueError("an arm is either config values ({key: value, ...} or where: {...}) or runs: [dirs]")
        return self

    def matches(self, dumped: dict[str, Any]) -> bool:
        """Whether a resolved config (``Config.dump()``) has every ``key: value`` of ``where``."""
        for dotted, wanted in self.where.items():
            try:
                if value_at(dumped, dotted) != wanted:
                    return False
            except KeyError:
                return False
        return True

    def describe(self) -> str:
        which = ("runs " + ", ".join(self.runs)) if self.runs else " ".join(f"{k}={v}" for k, v in self.where.items())
        return which + (f" at iteration {self.iteration}" if self.iteration is not None else "")


class Contrast(_Strict):
    """One declared claim: ``a - b`` of ``metric`` at ``iteration``, and what was published about it."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.\-]+$", description="the claim's name in compare's output")
    a: Arm = Field(..., description="arm A (the effect is A - B)")
    b: Arm = Field(..., description="arm B, the reference")
    metric: str = Field(..., description="a metric of metrics.jsonl, e.g. fitted_var or knowledge_accuracy")
    iteration: Annotated[int, Field(ge=1)] | Literal["last"] = Field(
        "last", description="the iteration compared; 'last': the last one every run of both arms evaluated")
    direction: Literal["increase", "decrease", "none"] = Field(
        ..., description="the published direction of A - B; 'none' for a null claim (needs margin)")
    effect: float | None = Field(None, description="the published effect A - B, in the metric's units")
    margin: float | None = Field(None, gt=0, description="null claims: |A - B| below this counts as no effect")
    level: Literal["auto", "run", "item"] = Field(
        "auto", description="'run': one number per run (t-interval over seeds); 'item': the evaluation's "
        "per-item values (<prefix>_items.jsonl, lm_eval_samples_<task>.jsonl; hierarchical bootstrap over seeds "
        "and items); 'auto': item where every run has them, else run")

    @model_validator(mode="after")
    def _consistent(self) -> Contrast:
        if self.direction == "none" and self.margin is None:
            raise ValueError("a null claim (direction: none) needs an equivalence margin (margin: ...)")
        if self.direction != "none" and self.margin is not None:
            raise ValueError("margin is for null claims (direction: none) only")
        sign = {"increase": 1.0, "decrease": -1.0}.get(self.direction)
        if sign is not None and self.effect is not None and self.effect * sign <= 0:
            raise ValueError(f"effect {self.effect} does not have the sign of direction '{self.direction}'")
        return self


class Precondition(_Strict):
    """What every compared run (or those matching ``where``) must show before a claim about them means
    anything: "the facts are learned before forgetting is measured", "the reference model is
    calibrated". Declared with the claims, before the runs, so a twin that cannot show the mechanism
    says so (verdict ``not testable``) instead of giving a verdict on an experiment that did not happen."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.\-]+$", description="the precondition's name in compare's output")
    metric: str = Field(..., description="a metric of metrics.jsonl")
    iteration: Annotated[int, Field(ge=1)] | Literal["last"] = Field(
        1, description="the iteration it is read at; 'last': each run's last iteration with the metric")
    at_least: float | None = Field(None, description="the metric must be >= this")
    at_most: float | None = Field(None, description="the metric must be <= this")
    where: dict[str, Any] = Field(default_factory=dict,
                                  description="config key -> value: only the runs that have them (default: every run)")

    @model_validator(mode="after")
    def _bounded(self) -> Precondition:
        if self.at_least is None and self.at_most is None:
            raise ValueError("a precondition needs at_least or at_most (or both)")
        if self.at_least is not None and self.at_most is not None and self.at_least > self.at_most:
            raise ValueError(f"at_least {self.at_least} is above at_most {self.at_most}")
        return self

    @property
    def runs(self) -> Arm | None:
        """The ``where`` as an arm (None: every run)."""
        return Arm(where=self.where) if self.where else None

    def describe(self) -> str:
        bounds = []
        if self.at_least is not None:
            bounds.append(f">= {self.at_least:g}")
        if self.at_most is not None:
            bounds.append(f"<= {self.at_most:g}")
        return f"{self.metric} {' and '.join(bounds)} at iteration {self.iteration}"


class ContrastsConfig(_Strict):
    """The declared claims (one correction family) and how their intervals are adjusted."""

    correction: Literal["holm", "bonferroni", "none"] = Field(
        "holm", description="family-wise correction over the claims: 'holm' (step-down), 'bonferroni', or "
        "'none' (each interval at the nominal confidence)")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="family-wise confidence of the intervals")
    n_resamples: int = Field(4000, ge=1000, le=1_000_000, description="resamples of the item-level bootstrap")
    claims: list[Contrast] = Field(..., min_length=1, description="the contrasts, each one published claim")
    preconditions: list[Precondition] = Field(
        default_factory=list, description="conditions the compared runs must meet; a claim with a run that fails "
        "one is 'not testable'")

    @model_validator(mode="after")
    def _unique_names(self) -> ContrastsConfig:
        names = [c.name for c in self.claims]
        checks = [c.name for c in self.preconditions]
        twice_checks = sorted({n for n in checks if checks.count(n) > 1})
        if twice_checks:
            raise ValueError(f"precondition names must be unique; repeated: {', '.join(twice_checks)}")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"claim names must be unique; repeated: {', '.join(twice)}")
        return self
