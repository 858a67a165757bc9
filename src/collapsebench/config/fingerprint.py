"""Fingerprints of a run's steps, chained along the data flow, and the identity of a run's results.

``k.curate`` hashes the ``curate`` section, ``0.curate`` and ``(k-1).generate``; at k = 1 it leaves
out the regime's ``mix_args``: the arguments that only say how synthetic data is mixed in, of which
there is none before iteration 1 has generated, so a sweep over them shares its first iteration.
What a regime declares is registered with it, a layer above this one, so :func:`chain` takes the
declaration (and the digests of user plug-in code) as arguments; callers use
:func:`collapsebench.registry.fingerprints`, which reads both from the registries.
"""

from __future__ import annotations

from typing import Any

from collapsebench.config.schema import Config
from collapsebench.io import digest

# What each step depends on directly; the fingerprint also folds in the steps it reads from.
_SECTIONS = {
    "prepare": ("seed", "plugins", "data", "model.tokenizer", "model.init", "model.base"),
    "curate": ("curate",),
    "train": ("model", "train"),
    "generate": ("generate",),
    "evaluate": ("evaluate",),
}


def _computing(config: Config) -> dict[str, Any]:
    """The config less what decides no result of a step: where training runs (the launcher, like
    the executor) and the data's published size (``data.size``, read by ``plan`` alone)."""
    dumped = config.dump()
    dumped["train"].pop("launcher", None)
    dumped["data"].pop("size", None)
    return dumped


def _pick(dumped: dict[str, Any], dotted: str) -> Any:
    node: Any = dumped
    for part in dotted.split("."):
        node = node[part]
    return node


def _first_curate(dumped: dict[str, Any], code: str | None, mix_args: tuple[str, ...]) -> str:
    """Iteration 1's curate section without the regime's ``mix_args`` (``alpha``, the synthetic
    share, for replace): there are no synthetic data before iteration 1 generates them, so D(1),
    M(1) and S(1) are the same for every value of them (a sweep over alpha shares them), and S(1)
    too when ``generate.num_samples`` is set (:func:`_first_target`)."""
    curate = dict(dumped["curate"])
    curate["regime"] = {k: v for k, v in curate["regime"].items() if k not in mix_args}
    return digest({"curate": curate, **({"code": code} if code else {})})


def _first_target(dumped: dict[str, Any], mix_args: tuple[str, ...]) -> Any:
    """What iteration 1's generation takes from the ``mix_args`` that D(1) does not: with
    ``generate.num_samples`` unset, its default target is what the regime will draw from S(1)
    (its ``needs``, alpha x the real data's tokens for replace). So S(1) is shared across their
    values only when ``generate.num_samples`` fixes it. One argument folds in as its value, more
    as the list of their values, none as None."""
    values = [dumped["curate"]["regime"].get(a) for a in mix_args]
    return values[0] if len(values) == 1 else (values or None)


def chain(config: Config, *, mix_args: tuple[str, ...], code: dict[str, str], iterations: int | None = None,
          ) -> dict[str, str]:
    """Fingerprint of every step (``"k.phase"``): its config sections (plus ``code``, a digest of the
    user plug-in code each part runs) and the fingerprints of its inputs, chained along the data
    flow, so a change marks exactly the steps downstream of it. ``mix_args``: the regime's arguments
    left out at iteration 1 (see the module docstring)."""
    dumped = _computing(config)
    own = {}
    for name, secs in _SECTIONS.items():
        parts: dict[str, Any] = {s: _pick(dumped, s) for s in secs}
        if code and code.get(name):  # only runs with user plug-ins: built-in runs keep their fingerprints
            parts["code"] = code[name]
        own[name] = digest(parts)
    out: dict[str, str] = {"0.curate": own["prepare"]}
    for k in range(1, (iterations or config.iterations) + 1):
        upstream = out["0.curate"] if k == 1 else out[f"{k - 1}.generate"]
        curate = own["curate"] if k > 1 else _first_curate(dumped, code.get("curate"), mix_args)
        out[f"{k}.curate"] = digest([curate, out["0.curate"], upstream])
        out[f"{k}.train"] = digest([own["train"], out[f"{k}.curate"]])
        generate = own["generate"]
        if k == 1 and dumped["generate"].get("num_samples") is None:
            generate = digest([generate, _first_target(dumped, mix_args)])
        out[f"{k}.generate"] = digest([generate, out[f"{k}.train"]])
        out[f"{k}.evaluate"] = digest([own["evaluate"], out[f"{k}.generate"]])
    return out


# Keys that decide where and how far a run goes, or what watches it, but not its results.
NOT_RESULTS = ("name", "output_dir", "config_dir", "iterations", "executor", "resources", "tracking", "stop_when",
               "sweep", "prepare", "contrasts")


def identity(config: Config, *, without: tuple[str, ...] = ()) -> str:
    """A digest of everything in the config that decides a run's results (not its name, place,
    length, executor, trackers or failure rules), less the top-level keys ``without`` (e.g.
    ``("seed",)``: runs that differ only in their seed are replicates of one cell)."""
    dumped = _computing(config)
    return digest({k: v for k, v in dumped.items() if k not in NOT_RESULTS and k not in without})
