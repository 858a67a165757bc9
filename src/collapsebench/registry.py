"""One generic registry, :class:`Registry`, and the registries of collapsebench.

Entries are added with a decorator (``@trainers.register("name")``) or lazily as a
``"module:attr"`` string, so heavy backends are imported only when chosen; anywhere a name is
accepted, ``module:function`` works too. Each entry carries metadata: a one-line summary and its
arguments (read from the source without importing it, so ``collapsebench ls`` stays light),
whether it needs torch or a GPU, and an optional ``check``: a ``"module:function"`` that builds the
backend's own argument objects (``TrainingArguments``, ``GenerationConfig``) for ``validate``. A
validator whose decision needs every candidate of a round (a ranking) names its ``pool``
selector: it scores shard by shard, and the selector decides once over the round's scores.

Arguments are bound and type-checked against the plug-in's signature (annotations through
pydantic; ``Annotated[float, Field(ge=0, le=1)]`` declares a domain), once, by :meth:`Registry.call`
and :meth:`Registry.check_kwargs`: ``validate`` and ``run`` share that path. The protocols each
registry holds are in :mod:`collapsebench.api`.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import importlib.util
import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from pydantic import ConfigDict, TypeAdapter, ValidationError

from collapsebench.config import Config, Spec
from collapsebench.errors import UserError, did_you_mean
from collapsebench.io import digest
from collapsebench.plugins import import_object

if TYPE_CHECKING:
    from collapsebench.api import (
        DataSource,
        Evaluation,
        ExecutorFactory,
        Generator,
        ItemBuilder,
        Launcher,
        Loss,
        Preprocessor,
        PromptSource,
        Regime,
        TrackerFactory,
        Trainer,
        Validator,
    )

T = TypeVar("T")

_ADAPTER_CONFIG = ConfigDict(allow_inf_nan=False, arbitrary_types_allowed=True)


@dataclass
class Entry(Generic[T]):
    """A registered plug-in and what is known about it without running it."""

    name: str
    target: str | T  # "module:attr" until first use, then the object
    torch: bool = False  # imports torch when called
    gpu: bool = False  # needs a CUDA device
    check: str | None = None  # "module:function(config, kwargs)" building the backend's argument objects
    preflight: str | None = None  # "module:function(config, kwargs) -> [names to download]": inputs, no torch
    finite: bool = False  # prompt sources: a fixed set of prompts (their count is the default target)
    data: str | None = None  # "text" or "vector": the data it works on (None: any)
    model: str | None = None  # trainers: the kind of model made; others: the kind needed (None: any)
    pool: str | None = None  # validators: "module:function(ctx, scores, **kw)" deciding over a round's pool
    batched: bool = False  # works on in-memory ArrowRows: a run of such plug-ins may be batched (collapsebench.batch)
    builtin: bool = False

    @property
    def location(self) -> str:
        if isinstance(self.target, str):
            return self.target
        return f"{getattr(self.target, '__module__', '?')}:{getattr(self.target, '__qualname__', self.name)}"


@dataclass(frozen=True)
class Argument:
    name: str
    annotation: str
    default: str | None  # None: required


@dataclass(frozen=True)
class Description:
    summary: str
    arguments: tuple[Argument, ...] = field(default_factory=tuple)


class Registry(Generic[T]):
    """Named plug-ins of one kind. ``skip``: positional arguments each plug-in receives before its
    keyword arguments (the phase context, datasets, ...), left out of argument checks."""

    def __init__(self, kind: str, *, skip: int):
        self.kind = kind
        self.skip = skip
        self._entries: dict[str, Entry[T]] = {}

    # ------------------------------------------------------------------------------ registration
    def register(self, name: str | None = None, *, override: bool = False, torch: bool = False, gpu: bool = False,
                 check: str | None = None, preflight: str | None = None, finite: bool = False,
                 data: str | None = None, model: str | None = None, pool: str | None = None,
                 batched: bool = False) -> Callable[[T], T]:
        """Decorator: ``@registry.register("name")`` (default: the function's name).

        A name that is taken (a built-in included) is refused unless ``override=True``."""

        def deco(obj: T) -> T:
            key = name or getattr(obj, "__name__", None)
            if not key:
                raise ValueError(f"{self.kind}: give a name to register {obj!r}")
            self._add(Entry(key, obj, torch=torch, gpu=gpu, check=check, preflight=preflight, finite=finite,
                            data=data, model=model, pool=pool, batched=batched), override)
            return obj

        return deco

    def lazy(self, name: str, target: str, *, torch: bool = False, gpu: bool = False, check: str | None = None,
             preflight: str | None = None, finite: bool = False, data: str | None = None,
             model: str | None = None, pool: str | None = None, batched: bool = False) -> None:
        """Register ``"module:attr"`` under ``name`` without importing it (the built-ins)."""
        self._add(Entry(name, target, torch=torch, gpu=gpu, check=check, preflight=preflight, finite=finite,
                        data=data, model=model, pool=pool, batched=batched, builtin=True), False)

    def _add(self, entry: Entry[T], override: bool) -> None:
        old = self._entries.get(entry.name)
        if old is not None and not override and old.location != entry.location:
            origin = "a built-in" if old.builtin else "already registered"
            raise UserError(f"{self.kind} '{entry.name}' is {origin} ({old.location}); register yours under "
                            f"another name, or with override=True to replace it")
        self._entries[entry.name] = entry

    # ------------------------------------------------------------------------------ lookup
    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries or ":" in name

    def entry(self, name: str, *, key: str | None = None) -> Entry[T]:
        if name in self._entries:
            return self._entries[name]
        if ":" in name:
            return Entry(name, name)
        where = f" at '{key}'" if key else ""
        raise UserError(f"unknown {self.kind} '{name}'{where}{did_you_mean(name, self._entries)}; "
                        f"known: {', '.join(self.names()) or 'none'}")

    def target(self, name: str) -> str:
        """Where an entry lives, as ``module:attr`` (without importing lazy entries)."""
        return self.entry(name).location

    def get(self, name: str, *, key: str | None = None) -> T:
        """Resolve a name (or ``module:function``) to the plug-in. ``key`` names the config key."""
        entry = self.entry(name, key=key)
        where = f" at '{key}'" if key else ""
        if isinstance(entry.target, str):
            obj = import_object(entry.target, what=f"{self.kind} '{name}'{where}")
            if name in self._entries:
                entry.target = obj
        else:
            obj = entry.target
        if not callable(obj):
            raise UserError(f"{self.kind} '{name}'{where} is not callable")
        return cast(T, obj)

    # ------------------------------------------------------------------------------ arguments
    def _parameters(self, name: str, key: str) -> tuple[Any, list[inspect.Parameter]]:
        fn: Callable[..., Any] = cast(Callable[..., Any], self.get(name, key=key))
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):
            raise UserError(f"{key}: {self.kind} '{name}' has no signature to check its arguments against") from None
        params = [p for p in signature.parameters.values() if p.name != "self"]
        return fn, params[self.skip:]

    def check_kwargs(self, name: str, kwargs: dict[str, Any], *, key: str) -> dict[str, Any]:
        """Bind ``kwargs`` to the plug-in's keyword parameters and validate them against their
        annotations; return them as the plug-in will receive them. Raise a UserError naming ``key``."""
        fn, params = self._parameters(name, key)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            accepted = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
            for arg in kwargs:
                if arg not in accepted:
                    raise UserError(f"{key}: {self.kind} '{name}' takes no argument '{arg}'"
                                    f"{did_you_mean(arg, accepted)}; it takes: {', '.join(accepted) or 'none'}")
        missing = [p.name for p in params if p.default is p.empty
                   and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in kwargs]
        if missing:
            raise UserError(f"{key}: {self.kind} '{name}' needs argument(s): {', '.join(missing)}")
        by_name = {p.name: p for p in params}
        out = dict(kwargs)
        for arg, value in kwargs.items():
            param = by_name.get(arg)
            adapter = _adapter(fn, param) if param is not None else None
            if adapter is None:
                continue
            try:
                out[arg] = adapter.validate_python(value)
            except ValidationError as exc:
                problem = "; ".join(e["msg"] for e in exc.errors()[:3])
                raise UserError(f"{key}.{arg}: {problem} (got {_short(value)})") from None
        return out

    def call(self, name: str, *args: Any, key: str, kwargs: dict[str, Any]) -> Any:
        """Call the plug-in with its positional arguments and its checked keyword arguments."""
        checked = self.check_kwargs(name, kwargs, key=key)
        return cast(Callable[..., Any], self.get(name, key=key))(*args, **checked)

    # ------------------------------------------------------------------------------ description
    def describe(self, name: str) -> Description:
        """Summary and arguments, read from the source when the entry is not imported yet."""
        entry = self.entry(name)
        if isinstance(entry.target, str):
            described = _describe_source(entry.target, self.skip)
            if described is not None:
                return described
        obj = cast(Callable[..., Any], self.get(name))
        doc = inspect.getdoc(obj) or ""
        try:
            params = [p for p in inspect.signature(obj).parameters.values() if p.name != "self"][self.skip:]
        except (TypeError, ValueError):
            params = []
        args = tuple(Argument(p.name, str(p.annotation) if p.annotation is not p.empty else "",
                              None if p.default is p.empty else repr(p.default))
                     for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        return Description(_first_sentence(doc), args)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@functools.lru_cache(maxsize=1024)
def _adapter(fn: Any, param: inspect.Parameter) -> TypeAdapter[Any] | None:
    """A pydantic adapter for a parameter's annotation (string annotations evaluated in the
    plug-in's module); None when there is none or it names something only a type checker sees.
    Built once per plug-in parameter: building one costs about a millisecond, a toy step less."""
    annotation = param.annotation
    if annotation is param.empty:
        return None
    if isinstance(annotation, str):
        namespace = getattr(inspect.unwrap(fn), "__globals__", None)
        if namespace is None:  # a class: its __init__'s module
            namespace = getattr(getattr(fn, "__init__", None), "__globals__", {})
        try:
            annotation = eval(annotation, dict(namespace))  # noqa: S307 - the plug-in's own annotation
        except Exception:  # a name imported only under TYPE_CHECKING: nothing to check against
            return None
    try:
        return TypeAdapter(annotation, config=_ADAPTER_CONFIG)
    except Exception:  # a type pydantic cannot build a schema for (an arbitrary class)
        return None


def _first_sentence(doc: str) -> str:
    first = doc.strip().split("\n\n")[0].replace("\n", " ")
    return re.split(r"(?<=[a-z)`])\.\s+(?=[A-Z])", first)[0].rstrip(".") if first else ""


def _describe_source(target: str, skip: int) -> Description | None:
    """Parse the module's source (no import) and describe ``attr``: a function or a class."""
    module_name, _, attr = target.partition(":")
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    with open(spec.origin, encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    node = next((n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == attr), None)
    if node is None:
        return None
    doc = ast.get_docstring(node) or ""
    fn = node
    if isinstance(node, ast.ClassDef):
        init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
        if init is None:
            return Description(_first_sentence(doc))
        fn = init
    assert isinstance(fn, ast.FunctionDef)
    a = fn.args
    positional = [*a.posonlyargs, *a.args]
    if positional and positional[0].arg == "self":
        positional = positional[1:]
    defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    pairs = list(zip(positional, defaults))[skip:] + list(zip(a.kwonlyargs, a.kw_defaults))
    args = tuple(Argument(arg.arg, ast.unparse(arg.annotation) if arg.annotation else "",
                          None if default is None else ast.unparse(default)) for arg, default in pairs)
    return Description(_first_sentence(doc), args)


def choices(config: Config) -> Iterator[tuple[str, Registry[Any], Spec]]:
    """Every plug-in choice of the config: (config key, registry, spec), the key starting with the
    config section that chose it."""
    yield "data.source", data_sources, config.data.source
    if config.data.evaluation is not None:
        yield "data.evaluation", data_sources, config.data.evaluation
    for i, s in enumerate(config.data.preprocess):
        yield f"data.preprocess[{i}]", preprocessors, s
    yield "curate.regime", regimes, config.curate.regime
    for i, s in enumerate(config.curate.preprocess):
        yield f"curate.preprocess[{i}]", preprocessors, s
    yield "train.trainer", trainers, config.train.trainer
    yield from _loss("train.trainer", config.train.trainer)
    for i, stage in enumerate(config.train.stages):
        yield f"train.stages[{i}].trainer", trainers, stage.trainer_spec(config.train.trainer)
        yield from _loss(f"train.stages[{i}].trainer", stage.trainer_spec(config.train.trainer))
        if stage.data.regime is not None:
            yield f"train.stages[{i}].data.regime", regimes, stage.data.regime
    if config.train.launcher is not None:
        yield "train.launcher", launchers, config.train.launcher
    yield "generate.generator", generators, config.generate.generator
    yield "generate.prompts", prompt_sources, config.generate.prompts
    for i, s in enumerate(config.generate.validators):
        yield f"generate.validators[{i}]", validators, s
    for i, s in enumerate(config.evaluate.evaluations):
        yield f"evaluate.evaluations[{i}]", evaluations, s
        if s.name == "knowledge" and s.kwargs.get("items") is not None:  # a plug-in choice of its own
            yield f"evaluate.evaluations[{i}].items", item_builders, _spec(f"evaluate.evaluations[{i}].items",
                                                                            s.kwargs["items"])
    for i, s in enumerate(config.tracking):
        yield f"tracking[{i}]", trackers, s
    if isinstance(config.executor, Spec):
        yield "executor", executors, config.executor
    else:
        for phase, s in config.executor.items():
            yield f"executor.{phase}", executors, s


def _spec(key: str, value: Any) -> Spec:
    try:
        return Spec.model_validate(value)
    except ValueError:
        raise UserError(f"{key} must be a name or {{name: ..., <kwargs>}}, got {value!r}") from None


def _loss(key: str, trainer: Spec) -> Iterator[tuple[str, Registry[Any], Spec]]:
    """A trainer's ``loss`` argument is a plug-in choice of its own (losses registry)."""
    loss = trainer.kwargs.get("loss")
    if loss is not None:
        yield f"{key}.loss", losses, _spec(f"{key}.loss", loss)



PARTS = {"data": "prepare", "curate": "curate", "train": "train", "generate": "generate", "evaluate": "evaluate"}


def code_digests(config: Config) -> dict[str, str]:
    """Per part of the loop (the fingerprint sections of ``config.fingerprints``), a digest of the
    source files of the user plug-ins it runs, so editing a plug-in's code marks the steps that ran
    it as stale. Built-in plug-ins are the framework's: they are versioned with it, not hashed."""
    files: dict[str, set[str]] = {}
    for key, reg, spec in choices(config):
        part = PARTS.get(key.split(".")[0].split("[")[0])
        location = reg.entry(spec.name, key=key).location
        if part is None or location.startswith("collapsebench."):
            continue
        module = importlib.import_module(location.partition(":")[0])
        source = getattr(module, "__file__", None)
        if source:
            files.setdefault(part, set()).add(source)
    return {part: digest(sorted((Path(f).name, hashlib.sha256(Path(f).read_bytes()).hexdigest()) for f in found))
            for part, found in files.items()}


# ------------------------------------------------------------------------------------ the registries
# skip = positional arguments before the keyword arguments (see collapsebench.api for each protocol)
data_sources: Registry[DataSource] = Registry("data source", skip=1)  # (ctx)
regimes: Registry[Regime] = Registry("curation regime", skip=3)  # (ctx, real, synthetic)
preprocessors: Registry[Preprocessor] = Registry("preprocessor", skip=2)  # (ctx, dataset)
prompt_sources: Registry[PromptSource] = Registry("prompt source", skip=3)  # (ctx, n, tokenizer)
validators: Registry[Validator] = Registry("validator", skip=2)  # (ctx, batch)
losses: Registry[Loss] = Registry("loss", skip=2)  # (logits, labels)
trainers: Registry[Trainer] = Registry("trainer", skip=2)  # (ctx, dataset)
generators: Registry[Generator] = Registry("generator", skip=1)  # (ctx)
evaluations: Registry[Evaluation] = Registry("evaluation", skip=1)  # (ctx)
item_builders: Registry[ItemBuilder] = Registry("item builder", skip=1)  # (ctx)
executors: Registry[ExecutorFactory] = Registry("executor", skip=0)  # (**kwargs) -> Executor
launchers: Registry[Launcher] = Registry("launcher", skip=1)  # (ctx) -> Launch
trackers: Registry[TrackerFactory] = Registry("tracker", skip=2)  # (config, run_dir) -> Tracker

ALL: dict[str, Registry[Any]] = {
    "data_sources": data_sources,
    "regimes": regimes,
    "preprocessors": preprocessors,
    "prompt_sources": prompt_sources,
    "validators": validators,
    "losses": losses,
    "trainers": trainers,
    "generators": generators,
    "evaluations": evaluations,
    "item_builders": item_builders,
    "executors": executors,
    "launchers": launchers,
    "trackers": trackers,
}

# Built-in entries, lazy so that `collapsebench ls` and `validate` import no heavy library.
# data: the data a plug-in works on; model: the model a trainer makes or a plug-in needs; batched: it works on
# in-memory ArrowRows, so a run made of such plug-ins may be batched (collapsebench.batch).
_B = "collapsebench"
TEXT, VECTOR = "text", "vector"
data_sources.lazy("local", f"{_B}.sources.files:local_source", data=TEXT, preflight=f"{_B}.sources.files:preflight_local")
data_sources.lazy("hub", f"{_B}.sources.files:hub_source", data=TEXT, preflight=f"{_B}.sources.files:preflight_hub")
data_sources.lazy("ground_truth_language", f"{_B}.sources.language:ground_truth_language_source", data=TEXT)
data_sources.lazy("gaussian", f"{_B}.toy.gaussian:gaussian_source", data=VECTOR,
                  preflight=f"{_B}.toy.gaussian:preflight_source", batched=True)
data_sources.lazy("gaussian_mixture", f"{_B}.toy.mixture:gaussian_mixture_source", data=VECTOR,
                  preflight=f"{_B}.toy.mixture:preflight_source", batched=True)
data_sources.lazy("digits", f"{_B}.toy.vae:digits_source", data=VECTOR)

regimes.lazy("replace", f"{_B}.regimes.mixing:replace", preflight=f"{_B}.regimes.mixing:preflight_replace",
              batched=True)
regimes.lazy("accumulate", f"{_B}.regimes.mixing:accumulate", batched=True)
regimes.lazy("accumulate_subsample", f"{_B}.regimes.mixing:accumulate_subsample", batched=True)
regimes.lazy("grow", f"{_B}.regimes.mixing:grow", batched=True)
regimes.lazy("clean_fraction", f"{_B}.regimes.mixing:clean_fraction", batched=True)
regimes.lazy("fresh_real", f"{_B}.regimes.parts:fresh_real", data=TEXT)

preprocessors.lazy("template", f"{_B}.preprocessors.text:template", data=TEXT)
preprocessors.lazy("length_filter", f"{_B}.preprocessors.text:length_filter", data=TEXT)
preprocessors.lazy("dedup", f"{_B}.preprocessors.text:dedup", data=TEXT)
preprocessors.lazy("tokenize", f"{_B}.preprocessors.text:tokenize", data=TEXT)
preprocessors.lazy("truncate_likely", f"{_B}.toy.truncation:truncate_likely", data=VECTOR, batched=True)

prompt_sources.lazy("unconditional", f"{_B}.prompts.builtin:unconditional")  # the default: any data
prompt_sources.lazy("real_prefix", f"{_B}.prompts.builtin:real_prefix", data=TEXT)
prompt_sources.lazy("real_blocks", f"{_B}.prompts.builtin:real_blocks", finite=True, data=TEXT)
prompt_sources.lazy("prompt_dataset", f"{_B}.prompts.builtin:prompt_dataset", finite=True, data=TEXT,
                    preflight=f"{_B}.prompts.builtin:preflight_prompt_dataset")
prompt_sources.lazy("real_parts", f"{_B}.prompts.builtin:real_parts", data=TEXT)

validators.lazy("jinja", f"{_B}.validators.builtin:jinja", check=f"{_B}.validators.builtin:check_jinja", data=TEXT)
validators.lazy("classifier", f"{_B}.validators.builtin:classifier", torch=True, data=TEXT,
                preflight=f"{_B}.validators.builtin:preflight_classifier")
validators.lazy("perplexity_tier", f"{_B}.validators.builtin:perplexity_tier", torch=True, data=TEXT, model="lm",
                pool=f"{_B}.validators.builtin:select_tier")

losses.lazy("cross_entropy", f"{_B}.losses.builtin:cross_entropy", torch=True)
losses.lazy("truncated_cross_entropy", f"{_B}.losses.builtin:truncated_cross_entropy", torch=True)
losses.lazy("tce", f"{_B}.losses.builtin:truncated_cross_entropy", torch=True)
losses.lazy("focal", f"{_B}.losses.builtin:focal", torch=True)

trainers.lazy("causal_lm", f"{_B}.trainers.causal_lm:train_causal_lm", torch=True, data=TEXT, model="lm",
              check=f"{_B}.trainers.causal_lm:check_config")
trainers.lazy("sft", f"{_B}.trainers.sft:train_sft", torch=True, data=TEXT, model="lm",
              check=f"{_B}.trainers.sft:check_config")
trainers.lazy("gaussian_mle", f"{_B}.toy.gaussian:gaussian_mle", data=VECTOR, model="gaussian", batched=True)
trainers.lazy("gmm", f"{_B}.toy.mixture:gmm", data=VECTOR, model="gmm", batched=True)
trainers.lazy("kde", f"{_B}.toy.mixture:kde", data=VECTOR, model="kde", batched=True)
trainers.lazy("vae", f"{_B}.toy.vae:vae", torch=True, data=VECTOR, model="vae")

generators.lazy("transformers", f"{_B}.generators.hf:generate", torch=True, data=TEXT, model="lm",
                check=f"{_B}.generators.hf:check_config")
generators.lazy("vllm", f"{_B}.generators.vllm_engine:generate", torch=True, gpu=True, data=TEXT, model="lm",
                check=f"{_B}.generators.vllm_engine:check_config")
generators.lazy("vllm_ray", f"{_B}.generators.vllm_ray:generate", torch=True, gpu=True, data=TEXT, model="lm",
                check=f"{_B}.generators.vllm_ray:check_config")
generators.lazy("gaussian", f"{_B}.toy.gaussian:gaussian_generator", data=VECTOR, model="gaussian", batched=True)
generators.lazy("gmm", f"{_B}.toy.mixture:gmm_generator", data=VECTOR, model="gmm", batched=True)
generators.lazy("kde", f"{_B}.toy.mixture:kde_generator", data=VECTOR, model="kde", batched=True)
generators.lazy("vae", f"{_B}.toy.vae:vae_generator", torch=True, data=VECTOR, model="vae")

evaluations.lazy("perplexity", f"{_B}.evaluations.perplexity:perplexity", torch=True, data=TEXT, model="lm")
evaluations.lazy("reference_perplexity", f"{_B}.evaluations.perplexity:reference_perplexity", torch=True, data=TEXT,
                 model="lm")
evaluations.lazy("sample_stats", f"{_B}.evaluations.samples:sample_stats", data=TEXT)
evaluations.lazy("language_kl", f"{_B}.evaluations.language:language_kl", torch=True, data=TEXT, model="lm")
evaluations.lazy("language_tails", f"{_B}.evaluations.language:language_tails", torch=True, data=TEXT, model="lm")
evaluations.lazy("calibration", f"{_B}.evaluations.calibration:calibration", torch=True, data=TEXT, model="lm",
                 preflight=f"{_B}.evaluations.common:preflight_item_file")
evaluations.lazy("knowledge", f"{_B}.evaluations.knowledge:knowledge", torch=True, data=TEXT, model="lm",
                 preflight=f"{_B}.evaluations.common:preflight_item_file")
evaluations.lazy("diversity", f"{_B}.evaluations.diversity:diversity", data=TEXT)
evaluations.lazy("unigram_kl", f"{_B}.evaluations.shift:unigram_kl_evaluation", data=TEXT)
evaluations.lazy("lm_eval", f"{_B}.evaluations.lm_eval:lm_eval", torch=True, data=TEXT, model="lm")
evaluations.lazy("judge_quality", f"{_B}.evaluations.judges:judge_quality", data=TEXT)
evaluations.lazy("judge_pairwise", f"{_B}.evaluations.judges:judge_pairwise", data=TEXT)
evaluations.lazy("classifier_score", f"{_B}.evaluations.classifier_audit:classifier_score", torch=True, data=TEXT,
                 preflight=f"{_B}.evaluations.classifier_audit:preflight")
evaluations.lazy("qualitative", f"{_B}.evaluations.qualitative:qualitative", torch=True, data=TEXT, model="lm")
evaluations.lazy("toy_stats", f"{_B}.toy.evaluate:toy_stats", data=VECTOR, batched=True)

item_builders.lazy("facts", f"{_B}.evaluations.knowledge_items:facts")
item_builders.lazy("cloze", f"{_B}.evaluations.knowledge_items:cloze")

executors.lazy("inline", f"{_B}.executors.local:InlineExecutor")
executors.lazy("subprocess", f"{_B}.executors.local:SubprocessExecutor")
executors.lazy("slurm", f"{_B}.executors.slurm:SlurmExecutor")
executors.lazy("ray", f"{_B}.executors.ray:RayExecutor")

launchers.lazy("torchrun", f"{_B}.executors.launch:torchrun")
launchers.lazy("accelerate", f"{_B}.executors.launch:accelerate", check=f"{_B}.trainers.distributed:check_accelerate")

trackers.lazy("wandb", f"{_B}.trackers.wandb:WandbTracker")
