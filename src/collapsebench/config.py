"""The experiment schema: load one YAML file, apply ``a.b=value`` overrides, fingerprint sections.

Every place where a plug-in is chosen is a :class:`Spec`: a bare name or ``{name: ..., <kwargs>}``.
Unknown keys are errors that name the key and suggest the closest one.
"""

from __future__ import annotations

import re
import reprlib
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from collapsebench.contrasts_schema import ContrastsConfig
from collapsebench.errors import UserError, did_you_mean
from collapsebench.io import digest

PHASES = ("curate", "train", "generate", "evaluate")


class YamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML that also reads ``1e-3`` as a float (YAML 1.2), as users write learning rates."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+|\.[0-9_]+(?:[eE][-+]?[0-9]+)?)$"),
    list("-+0123456789."),
)


MAX_CONFIG_BYTES = 1 << 20  # a config is a page of YAML; a megabyte is a mistake or an attack
MAX_CONFIG_NODES = 100_000  # values after expanding YAML aliases (an "alias bomb" expands exponentially)


def read_yaml(text: str, source: str = "config") -> Any:
    """Parse YAML text safely: size-bounded, aliases counted every time they are used."""
    if len(text) > MAX_CONFIG_BYTES:
        raise UserError(f"{source}: {len(text)} characters; a config holds at most {MAX_CONFIG_BYTES}")
    try:
        data = yaml.load(text, Loader=YamlLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise UserError(f"{source}: not valid YAML: {exc}") from None
    nodes = expanded_size(data)
    if nodes > MAX_CONFIG_NODES:
        raise UserError(f"{source}: the YAML expands to over {MAX_CONFIG_NODES} values (aliases repeat what they "
                        "point to); write the values out or use fewer aliases")
    return data


def expanded_size(data: Any, limit: int = MAX_CONFIG_NODES) -> int:
    """Values in ``data`` with shared (aliased) objects counted at every use, stopping past ``limit``."""
    sizes: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        node, expanded = stack.pop()
        children = list(node.items()) if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None or id(node) in sizes:
            continue
        flat = [c for pair in children for c in pair] if isinstance(node, dict) else children
        if expanded:
            sizes[id(node)] = min(limit + 1, 1 + sum(sizes.get(id(c), 1) for c in flat))
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in flat if isinstance(c, (dict, list)))
    return sizes.get(id(data), 1)


def short(value: Any, limit: int = 120) -> str:
    """``repr(value)`` cut to ``limit`` characters: messages quote user input, never all of it."""
    cut = reprlib.Repr()
    cut.maxstring, cut.maxother, cut.maxlist, cut.maxdict, cut.maxlevel = limit, limit, 8, 8, 3
    text = cut.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# --------------------------------------------------------------------------------------- loading


def _default_at(keys: list[str]) -> Any:
    """The schema's default value at a dotted path (as plain data), or {} when there is none.
    A numeric key steps into the item type of a list field (``train.stages.0.data``)."""
    model: Any = Config
    value: Any = {}
    for key in keys:
        if key.isdigit() and get_origin(model) is list:
            model, value = get_args(model)[0], {}
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or key not in model.model_fields:
            return {}
        field = model.model_fields[key]
        default = field.get_default(call_default_factory=True)
        value = default.dump() if isinstance(default, Spec) else (
            default.model_dump(mode="json") if isinstance(default, BaseModel) else default)
        model = field.annotation
    return value if isinstance(value, (dict, list)) else {}


def _list_index(node: list[Any], key: str, where: str, dotted: str, *, append: bool) -> int:
    """The position ``key`` names in a list (``append``: one past the end adds an item)."""
    if not key.isdigit():
        raise UserError(f"override '{dotted}': '{where}' is a list; name an item by its index, "
                        f"e.g. '{where}.0'")
    index = int(key)
    if index > len(node) or (index == len(node) and not append):
        raise UserError(f"override '{dotted}': '{where}' has {len(node)} item(s); index {index} is out of range")
    return index


def set_value(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` (mapping keys and list indices, e.g. ``train.stages.0.args.num_train_epochs``) to
    an already-parsed value in a raw config tree; missing mappings are filled from the schema's
    defaults, and a bare plug-in name on the way becomes ``{name: ...}``."""
    keys = dotted.split(".")
    node: Any = tree
    for i, key in enumerate(keys):
        where = ".".join(keys[: i + 1])
        parent = ".".join(keys[:i]) or "<top level>"
        if isinstance(node, list):
            slot: Any = _list_index(node, key, parent, dotted, append=i == len(keys) - 1)
        elif isinstance(node, dict):
            slot = key
        else:
            raise UserError(f"override '{dotted}': '{parent}' is not a mapping")
        if i == len(keys) - 1:
            if isinstance(node, list) and slot == len(node):
                node.append(value)
            else:
                node[slot] = value
            return
        child = node[slot] if isinstance(node, list) else node.get(slot)
        if child is None:
            child = node[slot] = _default_at(keys[: i + 1])
        elif isinstance(child, str):  # a bare plug-in name gaining kwargs
            child = node[slot] = {"name": child}
        elif not isinstance(child, (dict, list)):
            raise UserError(f"override '{dotted}': '{where}' is not a mapping")
        node = child


def _set_override(tree: dict[str, Any], dotted: str, raw: str) -> None:
    set_value(tree, dotted, read_yaml(raw, f"override '{dotted}'"))


def parse_overrides(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        try:
            item.encode("utf-8")
        except UnicodeEncodeError as exc:  # undecodable bytes in the command line arrive as surrogates
            raise UserError(f"override {short(item)}: not UTF-8 text (character {exc.start})") from None
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"override '{item}' is not of the form key.sub=value")
        out.append((key.strip(), value))
    return out


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the sub-model at ``loc`` (for did-you-mean on unknown keys)."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return []
        ann = current.model_fields[part].annotation
        current = ann if isinstance(ann, type) else None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "Spec"))))
        key = ".".join(str(p) for p in loc) or "<top level>"
        if err["type"] == "extra_forbidden":
            hint = did_you_mean(str(loc[-1]), _fields_at(Config, loc[:-1]))
            lines.append(f"unknown key '{key}'{hint}")
        elif err["type"] == "missing":
            lines.append(f"missing key '{key}'")
        else:
            lines.append(f"'{key}': {err['msg']} (got {short(err.get('input'))})")
    return f"{source}: invalid config\n  " + "\n  ".join(dict.fromkeys(lines))


def config_from_dict(raw: dict[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, source)) from None


def load_raw(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """The YAML file as plain data with the overrides applied (``a.b=value``, values parsed as
    YAML) and ``config_dir`` set, before validation."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    raw = read_yaml(read_text(path), str(path)) or {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: the top level must be a mapping of keys")
    for key, value in parse_overrides(overrides or []):
        _set_override(raw, key, value)
    raw.setdefault("config_dir", str(path.resolve().parent))
    return raw


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML file, apply overrides (``a.b=value``, values parsed as YAML), validate."""
    return config_from_dict(load_raw(path, overrides), str(path))


def read_text(path: Path) -> str:
    """A text file as UTF-8; a file that is not names the byte where it stops being so."""
    data = path.read_bytes()
    if len(data) > MAX_CONFIG_BYTES:
        raise UserError(f"{path}: {len(data)} bytes; a config holds at most {MAX_CONFIG_BYTES}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r})") from None


def json_schema() -> dict[str, Any]:
    return Config.model_json_schema()



# ----------------------------------------------------------------------------------- fingerprints

# What each step depends on directly; the fingerprint also folds in the steps it reads from.
_SECTIONS = {
    "prepare": ("seed", "plugins", "data", "model.tokenizer", "model.init", "model.base"),
    "curate": ("curate",),
    "train": ("model", "train"),
    "generate": ("generate",),
    "evaluate": ("evaluate",),
}


def _pick(dumped: dict[str, Any], dotted: str) -> Any:
    node: Any = dumped
    for part in dotted.split("."):
        node = node[part]
    return node


def _first_curate(dumped: dict[str, Any], code: str | None) -> str:
    """Iteration 1's curate section without the regime's ``alpha``: alpha is the synthetic share, and
    there are no synthetic data before iteration 1 generates them, so D(1), M(1) and S(1) are the
    same for every alpha (a sweep over alpha shares them), and S(1) too when ``generate.num_samples``
    is set (:func:`_first_target`). A plug-in regime must therefore not use an argument called
    ``alpha`` at iteration 1."""
    curate = dict(dumped["curate"])
    curate["regime"] = {k: v for k, v in curate["regime"].items() if k != "alpha"}
    return digest({"curate": curate, **({"code": code} if code else {})})


def _first_target(dumped: dict[str, Any]) -> Any:
    """What iteration 1's generation takes from the regime's ``alpha`` that D(1) does not: with
    ``generate.num_samples`` unset, its default target is the tokens (or rows) the regime will
    draw from S(1), alpha x the real data's for replace. So S(1) is shared across alphas only when
    ``generate.num_samples`` fixes it."""
    return dumped["curate"]["regime"].get("alpha")


def fingerprints(config: Config, iterations: int | None = None, code: dict[str, str] | None = None) -> dict[str, str]:
    """Fingerprint of every step (``"k.phase"``): its config sections (plus ``code``, a digest of the
    user plug-in code each part runs, see ``registry.code_digests``) and the fingerprints of its
    inputs, chained along the data flow, so a change marks exactly the steps downstream of it."""
    dumped = config.dump()
    dumped["train"].pop("launcher", None)  # where training runs, like the executor: not what it computes
    own = {}
    for name, secs in _SECTIONS.items():
        parts: dict[str, Any] = {s: _pick(dumped, s) for s in secs}
        if code and code.get(name):  # only runs with user plug-ins: built-in runs keep their fingerprints
            parts["code"] = code[name]
        own[name] = digest(parts)
    out: dict[str, str] = {"0.curate": own["prepare"]}
    for k in range(1, (iterations or config.iterations) + 1):
        upstream = out["0.curate"] if k == 1 else out[f"{k - 1}.generate"]
        curate = own["curate"] if k > 1 else _first_curate(dumped, (code or {}).get("curate"))
        out[f"{k}.curate"] = digest([curate, out["0.curate"], upstream])
        out[f"{k}.train"] = digest([own["train"], out[f"{k}.curate"]])
        generate = own["generate"]
        if k == 1 and dumped["generate"].get("num_samples") is None:
            generate = digest([generate, _first_target(dumped)])
        out[f"{k}.generate"] = digest([generate, out[f"{k}.train"]])
        out[f"{k}.evaluate"] = digest([own["evaluate"], out[f"{k}.generate"]])
    return out


# Keys that decide where and how far a run goes, or what watches it, but not its results.
NOT_RESULTS = ("name", "output_dir", "config_dir", "iterations", "executor", "resources", "tracking", "stop_when",
               "sweep", "contrasts")


def identity(config: Config, *, without: tuple[str, ...] = ()) -> str:
    """A digest of everything in the config that decides a run's results (not its name, place,
    length, executor, trackers or failure rules), less the top-level keys ``without`` (e.g.
    ``("seed",)``: runs that differ only in their seed are replicates of one cell)."""
    dumped = config.dump()
    dumped["train"].pop("launcher", None)  # where training runs: not what it computes
    return digest({k: v for k, v in dumped.items() if k not in NOT_RESULTS and k not in without})
