"""What a built-in does, a user's plug-in can declare: verbatim copies of ``replace`` and
``causal_lm``, registered under other names with the declarations a user passes to ``register``,
behave exactly as the built-ins in ``run`` (same metrics, the token cache filled), in the
fingerprints and a sweep's sharing across alpha, in ``plan`` and in generation's default target.
A copy registered without the declarations does not share, so the declaration is what is read."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from collapsebench.analysis.plan import make_plan
from collapsebench.config import config_from_dict
from collapsebench.loop import run_experiment
from collapsebench.regimes.mixing import replace
from collapsebench.registry import evaluations, fingerprints, headline_metrics, regimes, synthetic_need, trainers
from collapsebench.sweep.grid import cell_raw, expand, spec_from_options
from collapsebench.trainers.causal_lm import train_causal_lm
from conftest import tiny_config

B = "collapsebench"
# what a user writes: the same function objects, the same declarations, other names
COPIES: list[tuple[Any, str, Any, dict[str, Any]]] = [
    (regimes, "my_replace", replace, dict(preflight=f"{B}.regimes.mixing:preflight_replace",
                                          needs=f"{B}.regimes.sizes:replace_need", mix_args=("alpha",),
                                          plan=f"{B}.regimes.sizes:replace_plan",
                                          baseline=f"{B}.regimes.sizes:replace_baseline", batched=True)),
    (regimes, "bare_replace", replace, {}),  # the same code, nothing declared
    (trainers, "my_causal_lm", train_causal_lm, dict(torch=True, data="text", model="lm",
                                                     check=f"{B}.trainers.causal_lm:check_config",
                                                     token_ids=f"{B}.trainers.causal_lm:encode_documents")),
]


@pytest.fixture(scope="module", autouse=True)
def copies():
    for registry, name, fn, declared in COPIES:
        registry.register(name, **declared)(fn)
    yield
    for registry, name, _, _ in COPIES:
        registry._entries.pop(name)


def declarations(entry: Any) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(entry).items() if k not in ("name", "target", "builtin")}


def config(tmp_path: Path, regime: str = "replace", trainer: str = "causal_lm", **regime_args: Any) -> Any:
    tmp_path.mkdir(parents=True, exist_ok=True)
    raw = tiny_config(tmp_path)
    raw["curate"]["regime"] = {"name": regime, "alpha": 0.5, **regime_args}
    raw["train"]["trainer"]["name"] = trainer
    raw["generate"]["generator"]["max_new_tokens"] = 16
    raw["evaluate"]["evaluations"] = ["perplexity", "sample_stats"]
    return config_from_dict(raw)


def numbers(run_dir: Path) -> list[dict[str, float]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if isinstance(v, (int, float)) and "second" not in k} for r in rows]


def test_the_copies_declare_what_the_builtins_declare():
    assert declarations(regimes.entry("my_replace")) == declarations(regimes.entry("replace"))
    assert declarations(trainers.entry("my_causal_lm")) == declarations(trainers.entry("causal_lm"))
    assert declarations(regimes.entry("bare_replace")) != declarations(regimes.entry("replace"))


def test_a_run_of_the_copies_matches_the_builtins(tmp_path, monkeypatch):
    builtin = config(tmp_path / "a")
    copy = config(tmp_path / "b", "my_replace", "my_causal_lm")
    assert builtin.generate.num_samples is None  # iteration 1's target comes from the regime's need
    run_experiment(builtin, quiet=True)
    monkeypatch.setenv("COLLAPSEBENCH_CACHE", str(tmp_path / "cache"))  # the copy's token cache, of its own
    run_experiment(copy, quiet=True)
    assert numbers(tmp_path / "b" / "run") == numbers(tmp_path / "a" / "run")
    assert any(p.is_file() for p in (tmp_path / "cache").rglob("*"))  # curate filled the copy's token cache


def test_generation_default_target_follows_the_declared_need(tmp_path):
    for rows, tokens in ((200, 3000), (200, None)):
        want = synthetic_need(config(tmp_path).curate.regime, rows, tokens, 2)
        assert want is not None and want[1] > 0
        assert synthetic_need(config(tmp_path, "my_replace").curate.regime, rows, tokens, 2) == want
        assert synthetic_need(config(tmp_path, "bare_replace").curate.regime, rows, tokens, 2) is None


def shared_first_steps(tmp_path: Path, regime: str, num_samples: int | None) -> list[str]:
    """The steps two cells of a sweep over alpha share (equal fingerprints)."""
    raw = tiny_config(tmp_path)
    raw["curate"]["regime"] = {"name": regime, "alpha": 0.5}
    raw["generate"]["num_samples"] = num_samples
    cells, _ = expand(raw, spec_from_options(None, ["curate.regime.alpha=[0.25, 0.75]"], [], [], None, None))
    a, b = (fingerprints(config_from_dict(cell_raw(raw, c.values))) for c in cells)
    return [k for k in a if a[k] == b[k]]


@pytest.mark.parametrize("num_samples", [50, None])
def test_sweep_sharing_and_fingerprints_follow_the_declared_mix_args(tmp_path, num_samples):
    want = shared_first_steps(tmp_path, "replace", num_samples)
    assert want[:3] == ["0.curate", "1.curate", "1.train"]
    assert shared_first_steps(tmp_path, "my_replace", num_samples) == want
    assert shared_first_steps(tmp_path, "bare_replace", num_samples) == ["0.curate"]  # alpha counts from iteration 1


def test_clean_baselines_follow_the_declared_baseline(tmp_path):
    def baselines(regime: str) -> list[str]:
        raw = tiny_config(tmp_path)
        raw["curate"]["regime"] = {"name": regime, "alpha": 0.5}
        cells, _ = expand(raw, spec_from_options(None, ["curate.regime.alpha=[0, 0.5, 1.0]"], [], [], "clean", None))
        return [c.label for c in cells if c.baseline_of]

    assert baselines("replace") == ["alpha=0.5 [clean]"]
    assert baselines("my_replace") == baselines("replace")
    assert baselines("bare_replace") == []


def test_plan_estimates_the_copies_as_the_builtins(tmp_path):
    builtin = make_plan(config(tmp_path, size_policy="real_plus_synthetic")).as_dict()
    copy = make_plan(config(tmp_path, "my_replace", "my_causal_lm", size_policy="real_plus_synthetic")).as_dict()
    assert copy == builtin
    curated = builtin["phases"][0]["tokens"]
    assert curated[1] == pytest.approx(1.5 * curated[0])  # the plan hook read alpha and the size policy


def test_headline_metrics_come_from_the_evaluations_declarations(tmp_path):
    evaluations.register("my_perplexity", headline=("my_metric",))(lambda ctx: {"my_metric": 1.0})
    try:
        raw = tiny_config(tmp_path)
        raw["evaluate"]["evaluations"] = ["sample_stats", "my_perplexity", "perplexity"]
        assert headline_metrics(config_from_dict(raw)) == ["my_metric", "holdout_perplexity"]
        from collapsebench.summary import iteration_line

        rows = [{"iteration": 1, "a": 1.0, "b": 2.0, "holdout_perplexity": 3.0, "my_metric": 4.0}]
        line = iteration_line(rows, config_from_dict(raw), 1)  # what the console prints after an iteration
        assert "my_metric" in line and line.index("my_metric") < line.index("holdout_perplexity") and " a " not in line
    finally:
        evaluations._entries.pop("my_perplexity")
