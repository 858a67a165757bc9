"""Training losses against collapse: ``fn(logits, labels, **kw) -> scalar tensor``.

Every loss receives the model's logits ``[batch, seq, vocab]`` and the *unshifted* labels
``[batch, seq]`` (as the model's ``labels`` argument); like `transformers`, it predicts token
``t+1`` from position ``t`` and skips labels equal to ``-100`` (``IGNORE_INDEX``).

Normalisation: every built-in loss is a mean over the *valid* (not ignored) label tokens of the
batch. In truncated cross-entropy the masked tokens stay in the denominator by default
(``normalize="all"``) so that each kept token's gradient equals its cross-entropy gradient;
``normalize="kept"`` divides by the number of kept tokens instead.

:func:`compute_loss_func` turns a ``train.trainer.loss`` spec into the callable that
``transformers.Trainer`` / ``trl.SFTTrainer`` accept as ``compute_loss_func``, including the
rescaling to ``num_items_in_batch`` that gradient accumulation needs.

Losses say what they did: a loss may call :func:`report` with a statistic summed over the valid
tokens of its batch (truncated cross-entropy: the tokens it masked, ``tce_masked_fraction``; focal:
the weights it gave, ``focal_mean_weight``). :func:`loss_reporting` collects them: every logged
step of the Trainer gets the token-weighted mean over its window (and ``loss_tokens``, the
window's valid tokens) in the log history, and :func:`phase_report` gives the means over the
whole training (the trainers put them in the train stats' metrics). A statistic of a loss that
changed nothing (TCE that masked no token trains exactly as cross-entropy) is warned about.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from typing import Any

from collapsebench.api import Tensor
from collapsebench.errors import UserError

IGNORE_INDEX = -100
_COLLECTOR: contextvars.ContextVar[dict[str, list[float]] | None] = contextvars.ContextVar("loss_report", default=None)


def report(name: str, total: Any, tokens: Any) -> None:
    """Record a statistic of the current batch: ``total`` summed over its ``tokens`` valid tokens
    (tensors or numbers); ignored outside :func:`loss_reporting`."""
    collector = _COLLECTOR.get()
    if collector is not None:
        acc = collector.setdefault(name, [0.0, 0.0])
        acc[0] += float(total)
        acc[1] += float(tokens)


def shift(logits: Tensor, labels: Tensor) -> tuple[Any, Any]:
    """Align position t's logits with label t+1; flatten; labels padded with ``IGNORE_INDEX``."""
    import torch.nn.functional as F

    labels = F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:]
    return logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1).to(logits.device)


def _token_terms(logits: Tensor, labels: Tensor) -> tuple[Any, Any, Any]:
    """Per-token negative log-likelihood, probability of the correct token, valid mask."""
    import torch

    flat_logits, flat_labels = shift(logits, labels)
    valid = flat_labels != IGNORE_INDEX
    safe = torch.where(valid, flat_labels, torch.zeros_like(flat_labels))
    logp = torch.log_softmax(flat_logits, dim=-1).gather(-1, safe[:, None]).squeeze(-1)
    return -logp, logp.exp(), valid


def _mean(per_token: Any, weight: Any) -> Any:
    """Sum of ``per_token`` over ``weight`` (a 0/1 mask) divided by the mask's count (at least 1)."""
    return (per_token * weight).sum() / weight.sum().clamp(min=1)


def cross_entropy(logits: Tensor, labels: Tensor) -> Any:
    """Mean next-token cross-entropy over the valid label tokens (what `transformers` computes)."""
    nll, _, valid = _token_terms(logits, labels)
    return _mean(nll, valid.float())


def truncated_cross_entropy(logits: Tensor, labels: Tensor, gamma: float = 0.9, normalize: str = "all") -> Any:
    """TCE(γ): cross-entropy with the tokens the model already predicts with probability > ``gamma``
    masked out (no loss, no gradient). ``normalize``: divide by all valid tokens (``"all"``, default)
    or by the kept ones (``"kept"``). γ = 1 is cross-entropy."""
    if normalize not in ("all", "kept"):
        raise ValueError(f"normalize must be 'all' or 'kept', got {normalize!r}")
    nll, p, valid = _token_terms(logits, labels)
    kept = valid & (p.detach() <= gamma)
    report("tce_masked_fraction", (valid & ~kept).sum(), valid.sum())
    total = (nll * kept.float()).sum()
    denom = (kept if normalize == "kept" else valid).float().sum().clamp(min=1)
    return total / denom


def focal(logits: Tensor, labels: Tensor, gamma: float = 2.0) -> Any:
    """Focal loss: each token's cross-entropy weighted by (1 - p_t)^γ (γ = 0 is cross-entropy)."""
    nll, p, valid = _token_terms(logits, labels)
    weight = (1.0 - p) ** gamma
    report("focal_mean_weight", (weight.detach() * valid).sum(), valid.sum())
    return _mean(nll * weight, valid.float())


def resolve(spec: Any, key: str = "train.trainer.loss") -> tuple[Any, dict[str, Any], str]:
    """The loss function, its checked kwargs and its name from a ``{name: ..., **kw}`` mapping or a name."""
    from collapsebench.config import Spec
    from collapsebench.registry import losses

    try:
        parsed = Spec.model_validate(spec if spec is not None else "cross_entropy")
    except ValueError:
        raise UserError(f"{key} must be a name or {{name: ..., <kwargs>}}, got {spec!r}") from None
    kwargs = losses.check_kwargs(parsed.name, parsed.kwargs, key=key)
    return losses.get(parsed.name, key=key), kwargs, parsed.name


def compute_loss_func(spec: Any, sums: LossReport | None = None) -> Any:
    """A ``compute_loss_func(outputs, labels, num_items_in_batch=None)`` for the Trainer; what the
    loss reports (:func:`report`) is added to ``sums``.

    The loss is a per-batch mean over valid tokens; with gradient accumulation the Trainer passes
    the number of valid tokens of the whole accumulated batch, and the mean is rescaled to it.

    The Trainer also calls it for ``eval_loss``, under ``torch.no_grad``: there it is plain
    cross-entropy, whatever the training loss, and reports nothing. A held-out loss that masks the
    tokens the model is sure of (TCE) or down-weights them (focal) would reward a model for being
    confident, so the checkpoint kept by ``eval_loss`` (``best_by_holdout``) and the logged
    ``eval_loss`` are the held-out cross-entropy, comparable across losses."""
    import torch

    fn, kwargs, _ = resolve(spec)

    def loss_func(outputs: Any, labels: Tensor, num_items_in_batch: Any = None) -> Any:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
        if not torch.is_grad_enabled():  # an evaluation pass: the held-out cross-entropy
            return cross_entropy(logits, labels)
        collected: dict[str, list[float]] = {}
        token = _COLLECTOR.set(collected if sums is not None else None)
        try:
            loss = fn(logits, labels, **kwargs)
        finally:
            _COLLECTOR.reset(token)
        if sums is not None:
            sums.add(collected)
        if num_items_in_batch is not None:
            n_valid = (labels[..., 1:] != IGNORE_INDEX).sum()
            loss = loss * n_valid / max(float(num_items_in_batch), 1.0)
        return loss

    return loss_func


class LossReport:
    """What a loss reported since the last log: per statistic, (sum, valid tokens)."""

    def __init__(self) -> None:
        self.window: dict[str, list[float]] = {}

    def add(self, collected: dict[str, list[float]]) -> None:
        for name, (total, tokens) in collected.items():
            acc = self.window.setdefault(name, [0.0, 0.0])
            acc[0] += total
            acc[1] += tokens

    def flush(self) -> dict[str, float]:
        """The window's means (and ``loss_tokens``); the window starts anew."""
        out: dict[str, float] = {name: total / max(tokens, 1.0) for name, (total, tokens) in self.window.items()}
        if self.window:
            out["loss_tokens"] = max(tokens for _, tokens in self.window.values())
        self.window = {}
        return out


def loss_reporting(spec: Any) -> tuple[Callable[..., Any], Any]:
    """(``compute_loss_func``, a Trainer callback): the callback adds what the loss reported to
    every logged training step of the log history (see the module docstring); its ``report`` holds
    the steps not logged yet."""
    from transformers import TrainerCallback

    sums = LossReport()

    class ReportLoss(TrainerCallback):
        report = sums

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if logs and "loss" in logs and state.log_history and sums.window:
                state.log_history[-1].update(sums.flush())

    return compute_loss_func(spec, sums), ReportLoss()


def phase_report(log_history: list[dict[str, Any]], callback: Any) -> dict[str, float]:
    """Token-weighted means of what the loss reported over the whole training: the logged windows
    (a resumed run's log history holds those before its checkpoint) and the steps not logged yet."""
    totals: dict[str, list[float]] = {}
    windows = [row for row in log_history if "loss_tokens" in row] + [callback.report.flush()]
    for row in windows:
        for name, value in row.items():
            if name != "loss_tokens" and name in _STATISTICS:
                acc = totals.setdefault(name, [0.0, 0.0])
                acc[0] += value * row["loss_tokens"]
                acc[1] += row["loss_tokens"]
    out = {name: total / max(tokens, 1.0) for name, (total, tokens) in totals.items()}
    if out.get("tce_masked_fraction") == 0.0:
        logging.getLogger("collapsebench.losses").warning(
            "truncated cross-entropy masked no token in the whole training: it trained exactly as cross-entropy "
            "(a lower train.trainer.loss.gamma masks the tokens predicted with a lower probability)")
    return out


_STATISTICS = ("tce_masked_fraction", "focal_mean_weight")
