"""The sizes of the built-in regimes, as plain arithmetic: what each draws from the samples (its
``needs`` hook, generation's default target) and how large D(k) grows (its ``plan`` hook). Both
are declared at registration (:mod:`collapsebench.registry.builtins`) and receive the regime's
bound arguments (the config's over the signature's defaults), so no default is repeated here; this
module imports nothing heavy, so ``plan`` reads it without the data libraries.

``needs(kwargs, real_rows, real_tokens, k) -> (unit, amount) | None``: the rows or tokens the
regime draws from S(k-1) at iteration k (``real_tokens`` is None when the real rows carry no token
counts). ``plan(kwargs, real, samples, k) -> rows of D(k)``, from ``real`` training rows and
``samples`` rows generated per iteration.
"""

from __future__ import annotations

from typing import Any

from collapsebench.errors import UserError

SIZE_POLICIES = ("constant", "real_plus_synthetic")


def replace_sizes(n: int, alpha: float, size_policy: str) -> tuple[int, int]:
    """(real amount, synthetic amount) of the replace regime for a base size ``n`` (rows or tokens)."""
    if size_policy not in SIZE_POLICIES:
        raise UserError(f"curate.regime.size_policy must be one of {', '.join(SIZE_POLICIES)}, got {size_policy!r}")
    if size_policy == "constant":
        if not 0.0 <= alpha <= 1.0:
            raise UserError(f"curate.regime.alpha must be in [0, 1], got {alpha}")
        n_syn = int(round(alpha * n))
        return n - n_syn, n_syn
    if alpha < 0:
        raise UserError(f"curate.regime.alpha must be >= 0 with size_policy real_plus_synthetic, got {alpha}")
    return n, int(round(alpha * n))


def _unit(kwargs: dict[str, Any], real_tokens: int | None) -> str:
    """The regime's ``unit``, or its default: tokens when the real rows carry token counts."""
    return kwargs.get("unit") or ("tokens" if real_tokens is not None else "rows")


def _whole(unit: str, real_rows: int, real_tokens: int | None) -> int:
    return real_rows if unit == "rows" else int(real_tokens or 0)


def replace_need(kwargs: dict[str, Any], real_rows: int, real_tokens: int | None, k: int) -> tuple[str, int]:
    """alpha x the base size (``size_tokens`` tokens or ``size`` rows, default the real data's)."""
    unit = _unit(kwargs, real_tokens)
    whole = _whole(unit, real_rows, real_tokens)
    base = kwargs.get("size_tokens") if unit == "tokens" else None
    if base is None:
        size = kwargs.get("size")
        base = whole if size is None else (size if unit == "rows" else round(size * whole / max(real_rows, 1)))
    return unit, replace_sizes(int(base), float(kwargs["alpha"]), kwargs["size_policy"])[1]


def real_size_need(kwargs: dict[str, Any], real_rows: int, real_tokens: int | None, k: int) -> tuple[str, int]:
    """As much as the real data (accumulate, accumulate_subsample, clean_fraction)."""
    unit = _unit(kwargs, real_tokens)
    return unit, _whole(unit, real_rows, real_tokens)


def grow_need(kwargs: dict[str, Any], real_rows: int, real_tokens: int | None, k: int) -> tuple[str, int]:
    """``rows`` rows, or else ``fraction`` of the real data in its unit."""
    if kwargs.get("rows") is not None:
        return "rows", int(kwargs["rows"])
    unit = _unit(kwargs, real_tokens)
    return unit, int(round(float(kwargs["fraction"]) * _whole(unit, real_rows, real_tokens)))


def replace_baseline(kwargs: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """replace's declared ``baseline`` hook (``sweep --baselines clean``): the same cell with
    clean_fraction, which trains on the real rows replace draws without its synthetic ones; none
    at alpha = 0 (the cell is its own) or alpha = 1 (no real rows are left)."""
    alpha = float(kwargs["alpha"])
    if alpha <= 0:
        return None, None
    if alpha >= 1:
        return None, "alpha=1 has no clean baseline (no real rows are left; the papers use the base model)"
    return {"curate.regime.name": "clean_fraction"}, None


def replace_plan(kwargs: dict[str, Any], real: int, samples: int, k: int) -> float:
    """The base size; with ``real_plus_synthetic``, (1 + alpha) x it from iteration 2 on."""
    size = kwargs.get("size") or real
    if k > 1 and kwargs["size_policy"] == "real_plus_synthetic":
        return size * (1 + float(kwargs["alpha"]))
    return size


def accumulate_plan(kwargs: dict[str, Any], real: int, samples: int, k: int) -> float:
    """The real data and every sample so far."""
    return real + (k - 1) * samples


def grow_plan(kwargs: dict[str, Any], real: int, samples: int, k: int) -> float:
    """The real data (``keep_real``) and ``rows`` (or ``fraction`` of the real data) per earlier round."""
    amount = kwargs.get("rows") or float(kwargs["fraction"]) * real
    return real * bool(kwargs["keep_real"]) + (k - 1) * amount


def size_plan(kwargs: dict[str, Any], real: int, samples: int, k: int) -> float:
    """The base size ``size`` (default: the real data's)."""
    return float(kwargs.get("size") or real)
