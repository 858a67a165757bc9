"""Recipes sft-regimes (with stage placement), opt-wikitext-replication and pythia-mixing-calibration.

Every paper-scale config validates without network, its hub models and datasets reported as
downloads, and every cell of its sweep is checked. Under ``slow``, each CPU twin runs end to end as
its README says, its direction is asserted on the seeds fixed in its config (3-5, as its README
reports), ``compare``'s verdicts on its declared claims are asserted, and its headline numbers
are compared with the values recorded in ``tests/golden/recipes_a.json``;
re-record them after an intended change with
``COLLAPSEBENCH_RECORD_GOLDEN=1 python -m pytest tests/test_recipes_a.py -m slow`` and say why in
the commit. The twins run on 2 local workers; the runs are deterministic on the CPU with one thread
per process, and the tolerance (relative 1e-4) only absorbs float formatting.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from collapsebench.config import load_config
from collapsebench.layout import SweepLayout
from collapsebench.sweep.runner import create, run_sweep
from collapsebench.validate import check_backends, validate_config
from conftest import REPO, SHARED_DATA, declared_claims, golden_entry

RECIPES = REPO / "recipes"
GOLDEN = Path(__file__).parent / "golden" / "recipes_a.json"
RELATIVE = 1e-4

HELPSTEER = {"nvidia/HelpSteer2", "google/gemma-2-2b"}
PAPERS = {
    "sft-regimes/paper.yaml": HELPSTEER,
    "sft-regimes/paper_stage_placement.yaml": HELPSTEER,
    "opt-wikitext-replication/paper.yaml": {"Salesforce/wikitext", "facebook/opt-125m"},
    "pythia-mixing-calibration/paper.yaml": {"openai/gsm8k", "EleutherAI/pythia-6.9b"},
    "pythia-mixing-calibration/paper_commonsenseqa.yaml": {"tau/commonsense_qa", "EleutherAI/pythia-6.9b"},
}


@pytest.mark.parametrize("name", sorted(PAPERS))
def test_paper_config_validates_without_network(name, tmp_path):
    path = RECIPES / name
    assert path.read_text().startswith(f"# collapsebench sweep recipes/{name}") or \
        path.read_text().startswith(f"# collapsebench run recipes/{name}")
    config = load_config(path)
    report = validate_config(config)
    assert set(report.downloads) == PAPERS[name]  # reported as downloads, not failed
    check_backends(config)
    if config.sweep is not None:  # every cell of the paper's grid is a valid config
        sweep = create(path, [f"output_dir={tmp_path / 'sweep'}"])
        assert len(sweep.cells()) > 1


# ------------------------------------------------------------------------------------ the twins


def sweep_metrics(path: Path, tmp_path: Path, name: str, *overrides: str) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """Run a twin's sweep in tmp_path; its cells' metrics by (label, seed)."""
    sweep = create(path, [f"output_dir={tmp_path / name}", *overrides])
    statuses = run_sweep(sweep.path, poll=1.0, report=False)
    assert all(s.state == "done" for s in statuses.values()), {k: s.state for k, s in statuses.items()}
    return {(c["label"], c["seed"]): sweep.run(c).read_metrics() for c in SweepLayout(sweep.path).cells()}


def headline(runs: dict[tuple[str, int], list[dict[str, Any]]], keys: tuple[str, ...]) -> dict[str, Any]:
    return {f"{label} seed {seed}": [{k: row[k] for k in ("iteration", *keys) if k in row} for row in rows]
            for (label, seed), rows in sorted(runs.items(), key=lambda kv: (kv[0][0], kv[0][1]))}


def check_recorded(twin: str, values: dict[str, Any]) -> None:
    want = golden_entry(GOLDEN, twin, values)
    if want is None:
        return
    assert sorted(values) == sorted(want)
    for run, rows in want.items():
        assert len(values[run]) == len(rows), run
        for got, expected in zip(values[run], rows):
            for key, value in expected.items():
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    assert got[key] is None or math.isnan(got[key]), (run, key)
                else:
                    assert got[key] == pytest.approx(value, rel=RELATIVE, abs=1e-9), (run, got["iteration"], key)


def last(rows: list[dict[str, Any]], key: str) -> float:
    return float(rows[-1][key])


def first(rows: list[dict[str, Any]], key: str) -> float:
    return float(rows[0][key])


# The verdicts `collapsebench compare` printed on the twins' final sweeps (recipes/sft-regimes/README.md).
SFT_REGIMES_VERDICTS = {"replace_raises_cross_entropy": "reproduced", "replace_above_accumulate": "reproduced",
                        "subsample_below_replace": "reproduced"}
SFT_STAGE_VERDICTS = {"stage0_contamination_costs_more": "reversed", "stage1_contamination_below_replace": "inconclusive"}


def sft_twin(config: str, tmp_path: Path, name: str) -> tuple[dict[tuple[str, int], list[dict[str, Any]]], dict[str, Any]]:
    """An SFT twin's sweep run as its README says, and its declared claims as ``compare`` writes them
    (contrasts.json), by name."""
    runs = sweep_metrics(RECIPES / "sft-regimes" / config, tmp_path, name)
    return runs, declared_claims(tmp_path / name)


@pytest.mark.slow
def test_sft_regimes_twin_replace_degrades_and_accumulate_does_not(tmp_path):
    runs, claims = sft_twin("cpu.yaml", tmp_path, "regimes")
    for seed in range(4):
        replace, accumulate = runs[("replace alpha=1", seed)], runs[("accumulate", seed)]
        subsample = runs[("accumulate_subsample", seed)]
        assert len(replace) == len(accumulate) == len(subsample) == 3
        assert last(replace, "holdout_cross_entropy") > first(replace, "holdout_cross_entropy")
        assert last(accumulate, "holdout_cross_entropy") < first(accumulate, "holdout_cross_entropy")
        for rows in (replace, accumulate, subsample):  # the template validator kept most samples, never all by default
            assert all(0.5 < row["generate/acceptance"] <= 1.0 for row in rows)
    assert {name: claim["verdict"] for name, claim in claims.items()} == SFT_REGIMES_VERDICTS
    assert all(claim["n_pairs"] == 4 and claim["preconditions"] for claim in claims.values())
    check_recorded("sft_regimes", headline(runs, ("holdout_cross_entropy", "generate/acceptance")))


STAGE_ARMS = {"stage0": "0.data.regime.alpha=1 1.data.regime.alpha=0", "stage1": "0.data.regime.alpha=0 1.data.regime.alpha=1",
              "uniform50": "0.data.regime.alpha=0.5 1.data.regime.alpha=0.5",
              "uniform100": "0.data.regime.alpha=1 1.data.regime.alpha=1"}


@pytest.mark.slow
def test_sft_stage_placement_twin_verdicts_on_the_published_order(tmp_path):
    runs, claims = sft_twin("cpu_stage_placement.yaml", tmp_path, "stage")
    for seed in range(5):
        ce = {arm: [row["holdout_cross_entropy"] for row in runs[(label, seed)]] for arm, label in STAGE_ARMS.items()}
        start = ce["uniform100"][0]
        assert all(values[0] == pytest.approx(start) for values in ce.values())  # iteration 1: real data everywhere
        assert ce["uniform100"][-1] > start  # alpha = 100% degrades
    assert {name: claim["verdict"] for name, claim in claims.items()} == SFT_STAGE_VERDICTS
    assert all(claim["n_pairs"] == 5 and claim["preconditions"] for claim in claims.values())
    check_recorded("sft_stage_placement", headline(runs, ("holdout_cross_entropy",)))


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "wikitext-2" / "valid.txt").exists(), reason="WikiText-2 not beside the repository")
def test_opt_wikitext_twin_generations_repeat_and_lose_the_real_data(tmp_path):
    runs = sweep_metrics(RECIPES / "opt-wikitext-replication" / "cpu.yaml", tmp_path, "opt")
    opt_checks(runs, tmp_path / "opt")


OPT_VERDICTS = {"perplexity_shifts_up": "inconclusive", "repetition_appears": "reproduced"}


def opt_checks(runs: dict[tuple[str, int], list[dict[str, Any]]], sweep: Path) -> None:
    """Every generation fine-tunes the stand-in base on the previous generation's beam-search text:
    the model gets worse on real text and its text repeats more, in every seed; compare's verdicts
    on the declared claims (recipes/opt-wikitext-replication/README.md)."""
    for seed in (0, 1, 2):
        rows = next(r for (_, s), r in runs.items() if s == seed)
        assert [row["iteration"] for row in rows] == [1, 2, 3, 4]
        assert last(rows, "holdout_cross_entropy") > 1.1 * first(rows, "holdout_cross_entropy")
        later = [row["distinct_2"] for row in rows[1:] if row["distinct_2"] is not None]
        assert later and later[0] < 0.8 * first(rows, "distinct_2")  # repetition from generation 1 on
        assert all(row["qualitative_prompts"] == 7 for row in rows)
    assert {name: claim["verdict"] for name, claim in declared_claims(sweep).items()} == OPT_VERDICTS
    check_recorded("opt_wikitext", headline(runs, ("holdout_cross_entropy", "ref_logppl_mean", "ref_logppl_median",
                                                   "distinct_2", "self_bleu")))


# compare's verdicts on the Pythia twin's declared claims (cpu.yaml's contrasts:, README.md's table)
PYTHIA_VERDICTS = {"accuracy_falls_iteration1": "reproduced", "ece_rises_iteration1": "not shown",
                   "overconfidence_rises_iteration1": "not shown", "accuracy_falls_iteration2": "reproduced",
                   "ece_rises_iteration2": "not shown"}


@pytest.mark.slow
def test_pythia_calibration_twin_verdicts_on_the_declared_claims(tmp_path):
    runs = sweep_metrics(RECIPES / "pythia-mixing-calibration" / "cpu.yaml", tmp_path, "pythia")
    for seed in range(5):
        clean, mixed = runs[("alpha=0", seed)], runs[("alpha=0.5", seed)]
        assert len(clean) == len(mixed) == 3
        # Phase 0 (real data only, shared by both arms) learnt the rule well above chance (4 choices)
        assert first(mixed, "calibration_accuracy") == first(clean, "calibration_accuracy") > 0.5
    claims = declared_claims(tmp_path / "pythia")
    assert {name: r["verdict"] for name, r in claims.items()} == PYTHIA_VERDICTS
    assert all(r["n_pairs"] == 5 for r in claims.values())
    keys = ("calibration_accuracy", "calibration_ece", "calibration_overconfidence", "calibration_confidence")
    check_recorded("pythia_calibration", headline(runs, keys))


@pytest.mark.slow
def test_best_by_holdout_keeps_the_epoch_with_the_lowest_held_out_loss(tmp_path):
    """``causal_lm``'s ``best_by_holdout`` (the OPT recipe's "best checkpoint by validation loss"):
    the saved model is the checkpoint whose epoch-end held-out loss was lowest, not the last one."""
    from collapsebench.config import config_from_dict
    from collapsebench.loop import run_experiment
    from conftest import tiny_config, write_corpus

    raw = tiny_config(tmp_path, iterations=1)
    # 30 training documents and many epochs: the model learns them by heart and its held-out loss
    # falls, then rises again (overfitting), so the best epoch is not the last
    write_corpus(tmp_path / "corpus.txt", n=70)
    raw["train"]["trainer"].update(best_by_holdout=True)
    raw["train"]["trainer"]["args"].update(num_train_epochs=30, learning_rate=1.0e-2)
    raw["generate"].update(num_samples=8)
    raw["generate"]["generator"].update(max_new_tokens=8)
    raw["evaluate"] = {"evaluations": ["perplexity"]}
    run_experiment(config_from_dict(raw), quiet=True)
    stats = json.loads((tmp_path / "run" / "iter_001" / "train" / "stats.json").read_text())
    evals = [(row["step"], row["eval_loss"]) for row in stats["log_history"] if "eval_loss" in row]
    assert len(evals) == 30  # one evaluation an epoch
    step, best = min(evals, key=lambda e: e[1])
    assert stats["best_checkpoint"] == f"checkpoint-{step}"
    assert step != evals[-1][0], evals  # the last epoch was not the best: the choice mattered
    assert stats["metrics"]["best_eval_loss"] == pytest.approx(best)
    metrics = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert metrics["train/best_eval_loss"] == pytest.approx(best)


def test_opt_prompts_hold_the_prompt_002_prints_among_its_seven():
    lines = (RECIPES / "opt-wikitext-replication" / "prompts.txt").read_text().splitlines()
    assert len(lines) == 7  # 002 §4: "seven selected prompts"
    assert lines[0] == "The secret to eternal life lies hidden within"  # 002 Table 1


def test_the_token_cut_of_data_preprocess_applies_to_the_validation_split_too(make_ctx, tmp_path):
    """000 B.1: the validation split "has undergone the same initial preprocessing and
    tokenization": the SFT paper configs cut rows over 512 tokens in data.preprocess, which
    prepares data.source and data.evaluation alike (here: a cut at 14 tokens)."""
    import yaml

    from collapsebench.data import read_saved
    from collapsebench.phases.curate import prepare
    from evalhelpers import tiny_causal_lm

    rows = [{"prompt": f"what is {i} plus {i}", "response": "it is " + " ".join(["very"] * (i % 4) * 3) + " easy"}
            for i in range(40)]
    for name, part in (("train.jsonl", rows[:30]), ("valid.jsonl", rows[30:])):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in part))
    texts = [f"user: {r['prompt']}\nassistant: {r['response']}" for r in rows]
    tokenizer = tiny_causal_lm(tmp_path / "tok", texts)
    paper = yaml.safe_load((RECIPES / "sft-regimes" / "paper.yaml").read_text())
    assert {"name": "length_filter", "max_tokens": 512} in paper["data"]["preprocess"]
    ctx = make_ctx(iteration=0, data={"source": {"name": "local", "path": str(tmp_path / "train.jsonl")},
                                      "evaluation": {"name": "local", "path": str(tmp_path / "valid.jsonl")},
                                      "preprocess": [paper["data"]["preprocess"][0],
                                                     {"name": "length_filter", "max_tokens": 14}]},
                   model={"init": "scratch", "tokenizer": {"path": str(tokenizer)}})
    prepare(ctx)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer))
    for split, total in (("real", 30), ("holdout", 10)):
        kept = [str(t) for t in read_saved(ctx.out_dir / split).table.column("text").to_pylist()]
        lengths = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in kept]
        assert 0 < len(kept) < total and max(lengths) <= 14, (split, lengths)
