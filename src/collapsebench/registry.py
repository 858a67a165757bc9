"""One generic registry class and the registries of collapsebench.

Entries are added with a decorator (``@trainers.register("name")``) or lazily as a
``"module:attr"`` string, so heavy backends are imported only when chosen. Anywhere a name is
accepted, ``module:function`` works too. Unknown names raise a :class:`UserError` with a
did-you-mean suggestion.

Call conventions (every plug-in takes the phase context first, then its keyword arguments):

==================  ===========================================================================
registry            signature
==================  ===========================================================================
data_sources        ``fn(ctx, **kw) -> datasets.Dataset``   real data (a ``text`` column, or any
                    columns a toy trainer understands)
regimes             ``fn(ctx, real, synthetic, **kw) -> datasets.Dataset``  ``synthetic`` is the
                    list of generated datasets of iterations 1..k-1, oldest first
preprocessors       ``fn(ctx, dataset, **kw) -> datasets.Dataset``
prompt_sources      ``fn(ctx, **kw) -> datasets.Dataset``    rows with ``prompt`` and ``parent``
validators          ``fn(ctx, batch, **kw) -> list[Verdict]``
losses              ``fn(logits, labels, **kw) -> torch.Tensor``  (scalar)
trainers            ``fn(ctx, dataset, **kw) -> dict``      writes ``ctx.out_dir / "model"``
generators          ``fn(ctx, **kw) -> dict``               writes ``ctx.out_dir / "samples"``
evaluations         ``fn(ctx, **kw) -> dict[str, float]``
executors           ``fn(run_dir, iteration, phase, **kw) -> None``
trackers            ``fn(config, **kw) -> Tracker``
==================  ===========================================================================
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from collapsebench.errors import UserError, did_you_mean


def import_object(target: str, *, what: str = "plug-in") -> Any:
    """Import ``"package.module:attr"`` and return the attribute."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise UserError(f"{what} '{target}' is not of the form 'module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UserError(f"{what} '{target}': module '{module_name}' not found") from None
        raise
    try:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise UserError(f"{what} '{target}': module '{module_name}' has no attribute '{attr}'") from None
    return obj


class Registry:
    """Named plug-ins of one kind (trainers, regimes, ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable[..., Any] | str] = {}

    def register(self, name: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: ``@registry.register("name")`` (defaults to the function's name)."""

        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            self._entries[name or fn.__name__] = fn
            return fn

        return deco

    def lazy(self, name: str, target: str) -> None:
        """Register ``"module:attr"`` under ``name`` without importing it."""
        self._entries[name] = target

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries or ":" in name

    def target(self, name: str) -> str:
        """Where an entry lives, as ``module:attr`` (without importing lazy entries)."""
        entry = self._entries.get(name, name)
        if isinstance(entry, str):
            return entry
        return f"{entry.__module__}:{entry.__qualname__}"

    def get(self, name: str, *, key: str | None = None) -> Callable[..., Any]:
        """Resolve a name (or ``module:function``) to the callable. ``key`` names the config key."""
        where = f" at '{key}'" if key else ""
        if name in self._entries:
            entry = self._entries[name]
        elif ":" in name:
            entry = name
        else:
            raise UserError(
                f"unknown {self.kind} '{name}'{where}{did_you_mean(name, self._entries)}; "
                f"known: {', '.join(self.names()) or 'none'}"
            )
        if isinstance(entry, str):
            entry = import_object(entry, what=f"{self.kind} '{name}'{where}")
            if name in self._entries:
                self._entries[name] = entry
        if not callable(entry):
            raise UserError(f"{self.kind} '{name}'{where} is not callable")
        return entry

    def check_kwargs(self, name: str, kwargs: dict[str, Any], *, key: str, skip: int = 1) -> None:
        """Raise if ``kwargs`` do not fit the plug-in's signature (after its ``skip`` positional args)."""
        fn = self.get(name, key=key)
        params = list(inspect.signature(fn).parameters.values())[skip:]
        if any(p.kind is p.VAR_KEYWORD for p in params):
            return
        accepted = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        for arg in kwargs:
            if arg not in accepted:
                raise UserError(
                    f"{key}: {self.kind} '{name}' takes no argument '{arg}'{did_you_mean(arg, accepted)}; "
                    f"it takes: {', '.join(accepted) or 'none'}"
                )
        missing = [
            p.name
            for p in params
            if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in kwargs
        ]
        if missing:
            raise UserError(f"{key}: {self.kind} '{name}' needs argument(s): {', '.join(missing)}")


data_sources = Registry("data source")
regimes = Registry("curation regime")
preprocessors = Registry("preprocessor")
prompt_sources = Registry("prompt source")
validators = Registry("validator")
losses = Registry("loss")
trainers = Registry("trainer")
generators = Registry("generator")
evaluations = Registry("evaluation")
executors = Registry("executor")
trackers = Registry("tracker")

ALL: dict[str, Registry] = {
    "data_sources": data_sources,
    "regimes": regimes,
    "preprocessors": preprocessors,
    "prompt_sources": prompt_sources,
    "validators": validators,
    "losses": losses,
    "trainers": trainers,
    "generators": generators,
    "evaluations": evaluations,
    "executors": executors,
    "trackers": trackers,
}

# Built-in entries, lazy so that `collapsebench ls` and `validate` import no heavy library.
_B = "collapsebench"
data_sources.lazy("local", f"{_B}.data:local_source")
data_sources.lazy("hub", f"{_B}.data:hub_source")
data_sources.lazy("ground_truth_language", f"{_B}.toy.language:ground_truth_language_source")
regimes.lazy("replace", f"{_B}.curation.regimes:replace")
regimes.lazy("accumulate", f"{_B}.curation.regimes:accumulate")
regimes.lazy("accumulate_subsample", f"{_B}.curation.regimes:accumulate_subsample")
prompt_sources.lazy("unconditional", f"{_B}.generation.prompts:unconditional")
prompt_sources.lazy("real_prefix", f"{_B}.generation.prompts:real_prefix")
losses.lazy("cross_entropy", f"{_B}.backends.losses:cross_entropy")
trainers.lazy("causal_lm", f"{_B}.backends.hf_train:train_causal_lm")
generators.lazy("transformers", f"{_B}.backends.hf_generate:generate")
evaluations.lazy("perplexity", f"{_B}.backends.hf_evaluate:perplexity")
evaluations.lazy("sample_stats", f"{_B}.evaluation.samples:sample_stats")
executors.lazy("inline", f"{_B}.executors:inline")
executors.lazy("subprocess", f"{_B}.executors:subprocess")

# Ground-truth language (toy): exact metrics against the known distribution.
evaluations.lazy("language_kl", f"{_B}.toy.language_metrics:language_kl")
evaluations.lazy("language_tails", f"{_B}.toy.language_metrics:language_tails")

# Evaluation suite: calibration, knowledge retention, diversity, distribution shift, lm-eval, judges.
evaluations.lazy("calibration", f"{_B}.evaluation.calibration:calibration")
evaluations.lazy("knowledge", f"{_B}.evaluation.knowledge:knowledge")
evaluations.lazy("diversity", f"{_B}.evaluation.diversity:diversity")
evaluations.lazy("reference_perplexity", f"{_B}.evaluation.shift:reference_perplexity")
evaluations.lazy("unigram_kl", f"{_B}.evaluation.shift:unigram_kl_evaluation")
evaluations.lazy("lm_eval", f"{_B}.evaluation.lm_eval:lm_eval")
evaluations.lazy("judge_quality", f"{_B}.evaluation.judges:judge_quality")
evaluations.lazy("judge_pairwise", f"{_B}.evaluation.judges:judge_pairwise")
evaluations.lazy("qualitative", f"{_B}.evaluation.qualitative:qualitative")
trackers.lazy("wandb", f"{_B}.tracking:WandbTracker")

# Toy settings (Gaussian, Gaussian mixture / KDE, VAE on digits) and the truncation mitigation.
data_sources.lazy("gaussian", f"{_B}.toy.gaussian:gaussian_source")
data_sources.lazy("gaussian_mixture", f"{_B}.toy.mixture:gaussian_mixture_source")
data_sources.lazy("digits", f"{_B}.toy.vae:digits_source")
trainers.lazy("gaussian_mle", f"{_B}.toy.gaussian:gaussian_mle")
trainers.lazy("gmm", f"{_B}.toy.mixture:gmm")
trainers.lazy("kde", f"{_B}.toy.mixture:kde")
trainers.lazy("vae", f"{_B}.toy.vae:vae")
generators.lazy("gaussian", f"{_B}.toy.gaussian:gaussian_generator")
generators.lazy("gmm", f"{_B}.toy.mixture:gmm_generator")
generators.lazy("kde", f"{_B}.toy.mixture:kde_generator")
generators.lazy("vae", f"{_B}.toy.vae:vae_generator")
evaluations.lazy("toy_stats", f"{_B}.toy.evaluate:toy_stats")
preprocessors.lazy("truncate_likely", f"{_B}.toy.truncation:truncate_likely")

# Generation: prompt sources, validators, the vLLM generator.
prompt_sources.lazy("real_blocks", f"{_B}.generation.prompts:real_blocks")
prompt_sources.lazy("prompt_dataset", f"{_B}.generation.prompts:prompt_dataset")
validators.lazy("jinja", f"{_B}.generation.validators:jinja")
validators.lazy("classifier", f"{_B}.generation.validators:classifier")
validators.lazy("perplexity_tier", f"{_B}.generation.validators:perplexity_tier")
generators.lazy("vllm", f"{_B}.backends.vllm_generate:generate")

# Training and curation: losses, SFT, regimes, preprocessors, regeneration prompts.
losses.lazy("truncated_cross_entropy", f"{_B}.backends.losses:truncated_cross_entropy")
losses.lazy("tce", f"{_B}.backends.losses:truncated_cross_entropy")
losses.lazy("focal", f"{_B}.backends.losses:focal")
trainers.lazy("sft", f"{_B}.backends.sft:train_sft")
regimes.lazy("grow", f"{_B}.curation.regimes:grow")
regimes.lazy("fresh_real", f"{_B}.curation.parts:fresh_real")
regimes.lazy("clean_fraction", f"{_B}.curation.regimes:clean_fraction")
preprocessors.lazy("template", f"{_B}.curation.preprocess:template")
preprocessors.lazy("length_filter", f"{_B}.curation.preprocess:length_filter")
preprocessors.lazy("dedup", f"{_B}.curation.preprocess:dedup")
preprocessors.lazy("tokenize", f"{_B}.curation.preprocess:tokenize")
prompt_sources.lazy("real_parts", f"{_B}.generation.prompts:real_parts")
