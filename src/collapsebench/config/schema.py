"""The experiment schema: one pydantic tree, :class:`Config`, with a section per part of the loop.

Every place where a plug-in is chosen is a :class:`Spec`: a bare name or ``{name: ..., <kwargs>}``.
Unknown keys are errors that name the key and suggest the closest one. Over 300 lines because it
is the whole schema in one place, section after section in the order of the loop: each field's
description is what ``collapsebench schema`` and the editor completion show.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from collapsebench.config.contrasts import ContrastsConfig
from collapsebench.config.reading import short
from collapsebench.errors import UserError

PHASES = ("curate", "train", "generate", "evaluate")


class Strict(BaseModel):
    # every number of a config is finite: a nan or inf is a typo, never a setting
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)


class Spec(BaseModel):
    """A plug-in choice: ``name`` plus keyword arguments passed to the plug-in."""

    model_config = ConfigDict(extra="allow")
    name: str

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        return value

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def dump(self) -> dict[str, Any]:
        return {"name": self.name, **self.kwargs}


class DataSize(Strict):
    """The real data's size, as its publisher states it: what ``plan`` counts with when the data
    source cannot tell (a hub dataset is not downloaded to plan). Never read by a run."""

    documents: int = Field(gt=0, le=10**13, description="documents (rows) of data.source")
    tokens: float | None = Field(None, gt=0, le=1e15, description="tokens of all of them (or give tokens_per_document)")
    tokens_per_document: float | None = Field(None, gt=0, le=1e9, description="mean tokens a document (or give tokens)")
    cite: str = Field("", description="where the figures come from, e.g. the paper's sentence that states them")

    @model_validator(mode="after")
    def _one_token_figure(self) -> DataSize:
        if self.tokens is not None and self.tokens_per_document is not None:
            raise ValueError("give tokens or tokens_per_document, not both")
        return self

    @property
    def per_document(self) -> float | None:
        """Mean tokens a document (None: not stated)."""
        if self.tokens is not None:
            return self.tokens / self.documents
        return self.tokens_per_document


class DataConfig(Strict):
    source: Spec = Field(default_factory=lambda: Spec(name="ground_truth_language"),
                         description="where the real data comes from (data_sources registry)")
    text_field: str = Field("text", description="column holding the text")
    holdout: float | None = Field(None, ge=0, le=1e12, description="held-out real data: a fraction (<1) or a number "
                                  "of rows of data.source; default 0.1, or nothing with data.evaluation")
    evaluation: Spec | None = Field(None, description="a separate evaluation source (data_sources registry), e.g. "
                                    "the corpus's own test split: every evaluation reads it instead of a held-out "
                                    "fraction of data.source, which is then trained on whole")
    max_documents: int | None = Field(None, gt=0, le=10**12, description="cap on real documents (train + holdout)")
    preprocess: list[Spec] = Field(default_factory=list, description="one-time preprocessing of the real data")
    size: DataSize | None = Field(None, description="the size of data.source as published (documents, tokens), for "
                                  "`collapsebench plan` where the source cannot count it; changes no result")

    @field_validator("holdout")
    @classmethod
    def _holdout(cls, value: float | None) -> float | None:
        if value is not None and value >= 1 and value != int(value):
            raise ValueError("a number of held-out rows (>= 1) must be whole; a fraction must be below 1")
        return value

    @model_validator(mode="after")
    def _one_evaluation_set(self) -> DataConfig:
        if self.evaluation is not None and self.holdout:
            raise ValueError("data.holdout: with data.evaluation the evaluations read the evaluation source; "
                             "hold nothing out of data.source (leave data.holdout unset)")
        if self.evaluation is None and self.holdout == 0:
            raise ValueError("data.holdout: 0 leaves nothing to evaluate on; hold out a fraction or rows of "
                             "data.source, or give data.evaluation")
        return self

    @property
    def held_out(self) -> float:
        """The holdout in force: ``data.holdout`` (a fraction below 1, else a number of rows), 0.1 when
        unset, 0 with ``data.evaluation`` (nothing of data.source is held out then)."""
        if self.evaluation is not None:
            return 0.0
        return 0.1 if self.holdout is None else self.holdout

    def holdout_rows(self, n: int) -> int:
        """Rows of data.source held out for evaluation, of ``n``."""
        holdout = self.held_out
        return int(round(holdout * n)) if holdout < 1 else int(holdout)


class TokenizerConfig(Strict):
    path: str | None = Field(None, description="tokenizer folder or hub name; default: the base model's, "
                             "or a byte-level BPE trained on the real training split")
    vocab_size: int = Field(1024, ge=260, le=1_000_000, description="vocabulary size of a tokenizer trained from scratch")


class ModelConfig(Strict):
    init: Literal["scratch", "base", "previous"] = Field(
        "previous",
        description="where each iteration's model starts: 'scratch' (fresh random init every iteration), "
        "'base' (the base model every iteration), 'previous' (iteration k-1's model; iteration 1 starts "
        "from the base model, or from scratch when there is none)",
    )
    base: str | None = Field(None, description="base model: a local folder or a hub name")
    gguf_file: str | None = Field(None, description="GGUF file name inside the base model folder")
    architecture: dict[str, Any] = Field(
        default_factory=lambda: {"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 64},
        description="transformers config for models built from scratch (model_type + AutoConfig kwargs)",
    )
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)

    @model_validator(mode="after")
    def _base_needed(self) -> ModelConfig:
        if self.init == "base" and not self.base:
            raise ValueError("model.init is 'base' but model.base is not set")
        return self


class CurateConfig(Strict):
    regime: Spec = Field(default_factory=lambda: Spec(name="replace", alpha=1.0),
                         description="how D(k+1) is made from the real data and S(1..k) (regimes registry)")
    preprocess: list[Spec] = Field(default_factory=list, description="preprocessing of each curated dataset")


class StageData(Strict):
    """Which rows a training stage sees (see docs/training.md)."""

    source: Literal["curated", "real", "samples"] = Field(
        "curated", description="'curated': D(k); 'real': the real training split; 'samples': S(k-1)")
    part: tuple[int, int] | None = Field(None, description="[i, n]: the i-th of n equal contiguous parts of the "
                                         "source (and, with a regime, of each synthetic dataset)")
    origin: Literal["real", "synthetic"] | None = Field(None, description="keep only rows of this origin")
    regime: Spec | None = Field(None, description="a regime applied to the part of the real data and the same "
                                "part of S(1..k-1) (regimes registry); replaces 'source'")

    @field_validator("part")
    @classmethod
    def _part(cls, value: Any) -> Any:
        if value is not None and not 0 <= value[0] < value[1]:
            raise ValueError(f"part [i, n] needs 0 <= i < n, got {list(value)}")
        return value


class StageConfig(Strict):
    name: str | None = Field(None, description="stage name (default: stage<i>)")
    data: StageData = Field(default_factory=StageData)
    trainer: Spec | None = Field(None, description="trainer of this stage (default: train.trainer)")
    args: dict[str, Any] = Field(default_factory=dict, description="trainer arguments merged over the trainer's args")

    def trainer_spec(self, default: Spec) -> Spec:
        """The stage's trainer (default: train.trainer) with the stage's ``args`` merged over its own."""
        spec = self.trainer or default
        if not self.args:
            return spec
        kwargs = spec.kwargs
        base = kwargs.get("args") or {}
        if not isinstance(base, dict):
            raise UserError(f"train.trainer.args must be a mapping of trainer arguments, got {short(base)}")
        kwargs["args"] = {**base, **self.args}
        return Spec(name=spec.name, **kwargs)


class TrainConfig(Strict):
    trainer: Spec = Field(default_factory=lambda: Spec(name="causal_lm"), description="trainers registry")
    stages: list[StageConfig] = Field(default_factory=list, description="multi-stage training within one "
                                      "iteration, in order, each stage starting from the previous stage's model")
    launcher: Spec | None = Field(None, description="run the train phase as a distributed job (launchers registry): "
                                  "{name: torchrun, nproc_per_node: N} or {name: accelerate, config_file: ...}; "
                                  "in no fingerprint: the global batch is kept, so the data and steps do not change")

    @property
    def trainers(self) -> list[Spec]:
        """Every trainer the run uses: ``trainer`` and each stage's own."""
        return [self.trainer, *(stage.trainer for stage in self.stages if stage.trainer)]


class GenerateConfig(Strict):
    generator: Spec = Field(default_factory=lambda: Spec(name="transformers"), description="generators registry")
    prompts: Spec = Field(default_factory=lambda: Spec(name="unconditional"), description="prompt_sources registry")
    num_samples: int | None = Field(None, gt=0, le=10**12, description="accepted samples per iteration; default: the "
                                    "prompt source's own count x samples per prompt for finite sources "
                                    "(real_blocks, prompt_dataset), else the number of real training documents")
    shard_size: int = Field(256, gt=0, le=10**9, description="samples per output shard (the unit of resumption); a shard "
                            "holds shard_size // samples-per-prompt prompts (at least one)")
    validators: list[Spec] = Field(default_factory=list, description="validators registry: a chain, each sees "
                                   "what the previous ones kept")
    oversample: float = Field(1.0, ge=1, le=1000, description="candidates drawn per missing sample in the first round "
                              "(later rounds: at least 1 / acceptance so far); e.g. 3 for perplexity_tier")
    max_attempts: float = Field(10.0, ge=1, le=10**6, description="cap on candidates drawn, as a multiple of the target "
                                "number of samples; past it (or when the acceptance rate says it will be passed) "
                                "generation stops with an error naming the strictest validator")
    first_from: Literal["trained", "base"] = Field(
        "trained", description="the model iteration 1 generates with: its trained model, or the untrained "
        "model.base (self-consuming setups that start from a pretrained model); later iterations use their own")


class PhaseResources(Strict):
    """What one job of a phase asks of a scheduler (SLURM, Ray); unset fields take the executor's values."""

    nodes: int | None = Field(None, ge=1, description="nodes per job")
    gpus_per_node: int | None = Field(None, ge=0, description="GPUs per node (Ray: per actor or task)")
    cpus_per_task: int | None = Field(None, ge=1, description="CPUs per task (Ray: per actor or task)")
    mem_gb: float | None = Field(None, gt=0, description="memory per node, GB")
    timeout_min: int | None = Field(None, ge=1, description="wall-time limit of one job, minutes")
    partition: str | None = Field(None, description="SLURM partition")
    account: str | None = Field(None, description="SLURM account")
    constraint: str | None = Field(None, description="SLURM node constraint (e.g. a GPU type)")
    extra: dict[str, Any] = Field(default_factory=dict, description="more scheduler parameters (submitit's slurm_* "
                                  "names without the prefix, e.g. qos, exclusive, gres; Ray: resources)")


class EvaluateConfig(Strict):
    evaluations: list[Spec] = Field(default_factory=lambda: [Spec(name="perplexity"), Spec(name="sample_stats")],
                                    description="evaluations registry; each returns a dict of numbers")


class FailureRule(Strict):
    """When a run counts as failed: the first iteration at which ``metric`` crosses a threshold.

    The same rule is a run's time-to-failure (recorded in ``state.json``, shown by ``status`` and
    the report) and, with ``stop: true``, a reason to end the run early; see
    :mod:`collapsebench.failure` for how it is evaluated."""

    metric: str = Field(..., description="a metric of metrics.jsonl, e.g. holdout_perplexity")
    above: float | None = Field(None, description="failed once the value (or its ratio) is above this")
    below: float | None = Field(None, description="failed once the value (or its ratio) is below this")
    relative_to: Literal["absolute", "first", "metric", "run"] = Field(
        "absolute", description="compare the value itself ('absolute'), or its ratio to the metric's value at the "
        "first evaluated iteration ('first'), to another metric of the same iteration ('metric', e.g. the real "
        "data's real_distinct_2) or to the same metric of another run at the same iteration ('run', e.g. the clean "
        "baseline)")
    reference: str | None = Field(None, description="the metric (relative_to: metric) or run directory "
                                  "(relative_to: run, relative to the config file) the ratio is taken to")
    stop: bool = Field(True, description="end the run after the evaluation that crosses it (false: only record "
                       "the time to failure)")
    name: str | None = Field(None, description="a name for status and the report (default: the rule in words)")

    @model_validator(mode="after")
    def _one_threshold(self) -> FailureRule:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of 'above' and 'below'")
        if (self.relative_to in ("metric", "run")) != (self.reference is not None):
            raise ValueError("'reference' is needed with relative_to 'metric' or 'run', and only there")
        return self


class SweepConfig(Strict):
    """A grid of runs over config keys (``collapsebench sweep``; see docs/sweeps.md)."""

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.\-]+$",
                             description="sweep directory runs/<name> (default: <config name>-sweep)")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="key -> values; the cells are the "
                                       "Cartesian product of the axes (keys may be list indices and whole blocks)")
    zip: dict[str, list[Any]] | list[dict[str, list[Any]]] = Field(
        default_factory=dict, description="keys stepped together (equal-length lists): one axis per mapping")
    exclude: list[dict[str, Any]] = Field(default_factory=list, description="combinations to leave out: a cell "
                                          "whose config matches every key = value of one entry is dropped")
    baselines: Literal["clean"] | None = Field(None, description="'clean': add the real-only run of (1 - alpha) "
                                               "of the data for every replace(alpha) cell with 0 < alpha < 1")
    executor: Spec = Field(default_factory=lambda: Spec(name="subprocess", workers=2, logs=True),
                           description="where cells run (executors registry); each cell is one task")
    share: bool = Field(True, description="compute the steps several cells have in common (same fingerprint) "
                        "once and hard-link them into the others")


class PrepareStep(Strict):
    """A folder a run needs before its first step (a stand-in base model, a classifier), built by the
    framework the first time and kept: ``run`` runs another config and copies ``take`` out of its
    run directory; ``call`` runs ``function(output, config_dir, **kwargs)`` from a ``.py`` file
    beside the config (or an importable module)."""

    output: str = Field(..., min_length=1, description="the folder it makes, relative to the config file")
    run: str | None = Field(None, description="a collapsebench config (relative to this one) run into <output>.run/")
    take: str | None = Field(None, description="with run: what to copy out of that run directory (default: the "
                             "last iteration's train/model)")
    call: str | None = Field(None, description="'file.py:function' (relative to this config) or 'module:function'")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="with call: keyword arguments of the function")

    @model_validator(mode="after")
    def _one_way(self) -> PrepareStep:
        if (self.run is None) == (self.call is None):
            raise ValueError("give exactly one of run (a config to run) or call (a function that builds the folder)")
        if self.take is not None and self.run is None:
            raise ValueError("take goes with run")
        if self.kwargs and self.call is None:
            raise ValueError("kwargs go with call")
        return self


class Config(Strict):
    name: str = Field(..., pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}$",
                      description="experiment name (letters, digits, _ . -; not starting with . or -)")
    output_dir: str | None = Field(None, description="run directory; default runs/<name> under the working dir")
    seed: int = Field(0, ge=0, lt=2**63, description="experiment seed; per-(iteration, phase) seeds derive from it")
    iterations: int = Field(..., ge=1, le=100_000, description="number of train/generate/evaluate/curate rounds")
    plugins: list[str] = Field(default_factory=list, description="user plug-ins: .py paths (relative to the "
                               "config file) or importable modules")
    config_dir: str | None = Field(None, description="folder that relative paths resolve against "
                                   "(set to the config file's folder when loaded)")
    prepare: list[PrepareStep] = Field(default_factory=list, description="folders the run needs, built once before "
                                       "its first step and kept (stand-in models, classifiers): see docs/training.md")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    curate: CurateConfig = Field(default_factory=CurateConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    tracking: list[Spec] = Field(default_factory=list, description="trackers registry: mirror the config, "
                                 "each iteration's metrics and sample tables (e.g. {name: wandb, mode: offline}); "
                                 "the run directory stays the source of truth")
    executor: Spec | dict[str, Spec] = Field(
        default_factory=lambda: Spec(name="inline"),
        description="where phases run (executors registry): one spec, or a mapping phase -> spec",
    )
    stop_when: list[FailureRule] = Field(default_factory=list, description="failure rules: each run records "
                                         "the first iteration that crosses each one (its time to failure); rules "
                                         "with stop: true end the run there")
    sweep: SweepConfig | None = Field(None, description="the grid `collapsebench sweep` runs from this config")
    contrasts: ContrastsConfig | None = Field(None, description="the claims `collapsebench compare` tests (docs/sweeps.md)")
    resources: dict[str, PhaseResources] = Field(
        default_factory=dict, description="per-phase requests of the scheduling executors (slurm, ray), over the "
        "executor's own settings: {train: {nodes, gpus_per_node, cpus_per_task, mem_gb, timeout_min, partition, "
        "account, constraint}, generate: {...}, ...}")

    @field_validator("resources", mode="before")
    @classmethod
    def _resources(cls, value: Any) -> Any:
        if isinstance(value, dict):
            unknown = [k for k in value if k not in PHASES]
            if unknown:
                raise ValueError(f"resources keys must be phases {PHASES}, got {unknown}")
        return value

    @field_validator("executor", mode="before")
    @classmethod
    def _executor(cls, value: Any) -> Any:
        if isinstance(value, dict) and "name" not in value:
            unknown = [k for k in value if k not in PHASES]
            if unknown:
                raise ValueError(f"executor mapping keys must be phases {PHASES}, got {unknown}")
        if isinstance(value, dict) and "name" in value:  # one spec: {name: slurm, partition: debug} is no phase map
            return Spec.model_validate(value)
        return value

    @model_validator(mode="after")
    def _first_from_base(self) -> Config:
        if self.generate.first_from == "base" and not self.model.base:
            raise ValueError("generate.first_from is 'base' but model.base is not set")
        return self

    def executor_for(self, phase: str) -> Spec:
        if isinstance(self.executor, Spec):
            return self.executor
        return self.executor.get(phase, Spec(name="inline"))

    def run_dir(self) -> Path:
        return Path(self.output_dir or Path("runs") / self.name).resolve()

    def resolve_path(self, path: str | Path) -> Path:
        """A path from the config, relative to the config file's folder."""
        p = Path(path).expanduser()
        if p.is_absolute() or self.config_dir is None:
            return p
        return Path(self.config_dir) / p

    def prepared(self, path: str | Path) -> bool:
        """Whether ``path`` (from the config) lies in a folder that a ``prepare`` step makes."""
        target = self.resolve_path(path).resolve()
        return any(target.is_relative_to(self.resolve_path(step.output).resolve()) for step in self.prepare)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def json_schema() -> dict[str, Any]:
    return Config.model_json_schema()
