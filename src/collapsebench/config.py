"""The experiment schema: load one YAML file, apply ``a.b=value`` overrides, fingerprint sections.

Every place where a plug-in is chosen is a :class:`Spec`: a bare name or ``{name: ..., <kwargs>}``.
Unknown keys are errors that name the key and suggest the closest one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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


def read_yaml(text: str) -> Any:
    return yaml.load(text, Loader=YamlLoader)  # noqa: S506 - a SafeLoader subclass


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


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
    holdout: float = Field(0.1, gt=0, description="held-out real data: a fraction (<1) or a number of rows")
    max_documents: int | None = Field(None, gt=0, description="cap on real documents (train + holdout)")
    preprocess: list[Spec] = Field(default_factory=list, description="one-time preprocessing of the real data")


class TokenizerConfig(Strict):
    path: str | None = Field(None, description="tokenizer folder or hub name; default: the base model's, "
                             "or a byte-level BPE trained on the real training split")
    vocab_size: int = Field(1024, ge=260, description="vocabulary size of a tokenizer trained from scratch")


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
        kwargs["args"] = {**(kwargs.get("args") or {}), **self.args}
        return Spec(name=spec.name, **kwargs)


class TrainConfig(Strict):
    trainer: Spec = Field(default_factory=lambda: Spec(name="causal_lm"), description="trainers registry")
    stages: list[StageConfig] = Field(default_factory=list, description="multi-stage training within one "
                                      "iteration, in order, each stage starting from the previous stage's model")
    launcher: Spec | None = Field(None, description="run the train phase as a distributed job (launchers registry): "
                                  "{name: torchrun, nproc_per_node: N} or {name: accelerate, config_file: ...}; "
                                  "in no fingerprint: the global batch is kept, so the data and steps do not change")


class GenerateConfig(Strict):
    generator: Spec = Field(default_factory=lambda: Spec(name="transformers"), description="generators registry")
    prompts: Spec = Field(default_factory=lambda: Spec(name="unconditional"), description="prompt_sources registry")
    num_samples: int | None = Field(None, gt=0, description="accepted samples per iteration; default: the "
                                    "prompt source's own count x samples per prompt for finite sources "
                                    "(real_blocks, prompt_dataset), else the number of real training documents")
    shard_size: int = Field(256, gt=0, description="samples per output shard (the unit of resumption); a shard "
                            "holds shard_size // samples-per-prompt prompts (at least one)")
    validators: list[Spec] = Field(default_factory=list, description="validators registry: a chain, each sees "
                                   "what the previous ones kept")
    oversample: float = Field(1.0, ge=1, description="candidates drawn per missing sample in the first round "
                              "(later rounds: at least 1 / acceptance so far); e.g. 3 for perplexity_tier")
    max_attempts: float = Field(10.0, ge=1, description="cap on candidates drawn, as a multiple of the target "
                                "number of samples; past it (or when the acceptance rate says it will be passed) "
                                "generation stops with an error naming the strictest validator")


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


class Config(Strict):
    name: str = Field(..., pattern=r"^[A-Za-z0-9_.\-]+$", description="experiment name")
    output_dir: str | None = Field(None, description="run directory; default runs/<name> under the working dir")
    seed: int = Field(0, description="experiment seed; per-(iteration, phase) seeds derive from it")
    iterations: int = Field(..., ge=1, description="number of train/generate/evaluate/curate rounds")
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
    """The schema's default value at a dotted path (as plain data), or {} when there is none."""
    model: Any = Config
    value: Any = {}
    for key in keys:
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or key not in model.model_fields:
            return {}
        field = model.model_fields[key]
        default = field.get_default(call_default_factory=True)
        value = default.dump() if isinstance(default, Spec) else (
            default.model_dump(mode="json") if isinstance(default, BaseModel) else default)
        model = field.annotation
    return value if isinstance(value, dict) else {}


def _set_override(tree: dict[str, Any], dotted: str, raw: str) -> None:
    keys = dotted.split(".")
    node: Any = tree
    for i, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = _default_at(keys[: i + 1])
        elif isinstance(child, str):  # a bare plug-in name gaining kwargs
            child = node[key] = {"name": child}
        elif not isinstance(child, dict):
            raise UserError(f"override '{dotted}': '{'.'.join(keys[: i + 1])}' is not a mapping")
        node = child
    try:
        node[keys[-1]] = read_yaml(raw)
    except yaml.YAMLError as exc:
        raise UserError(f"override '{dotted}={raw}': value is not valid YAML: {exc}") from None


def parse_overrides(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
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
            lines.append(f"'{key}': {err['msg']} (got {err.get('input')!r})")
    return f"{source}: invalid config\n  " + "\n  ".join(dict.fromkeys(lines))


def config_from_dict(raw: dict[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, source)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML file, apply overrides (``a.b=value``, values parsed as YAML), validate."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        raw = read_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: the top level must be a mapping of keys")
    for key, value in parse_overrides(overrides or []):
        _set_override(raw, key, value)
    raw.setdefault("config_dir", str(path.resolve().parent))
    return config_from_dict(raw, str(path))


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


def fingerprints(config: Config, iterations: int | None = None) -> dict[str, str]:
    """Fingerprint of every step (``"k.phase"``): its config sections plus the fingerprints of its
    inputs, chained along the data flow, so a change marks exactly the steps downstream of it."""
    dumped = config.dump()
    dumped["train"].pop("launcher", None)  # where training runs, like the executor: not what it computes
    own = {name: digest({s: _pick(dumped, s) for s in secs}) for name, secs in _SECTIONS.items()}
    out: dict[str, str] = {"0.curate": own["prepare"]}
    for k in range(1, (iterations or config.iterations) + 1):
        upstream = out["0.curate"] if k == 1 else out[f"{k - 1}.generate"]
        out[f"{k}.curate"] = digest([own["curate"], out["0.curate"], upstream])
        out[f"{k}.train"] = digest([own["train"], out[f"{k}.curate"]])
        out[f"{k}.generate"] = digest([own["generate"], out[f"{k}.train"]])
        out[f"{k}.evaluate"] = digest([own["evaluate"], out[f"{k}.generate"]])
    return out
